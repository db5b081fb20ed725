"""MaxPool2D and AvgPool2D: 2-D pooling layers (NCHW, floor or ceil mode, PyTorch's semantics)."""

from typing import Optional, Tuple

from .. import functional as F
from .._typing import Array, IntPair, Padding
from .layer import Layer

__all__ = ["MaxPool2D", "AvgPool2D"]


class MaxPool2D(Layer):
    """Max pooling over KH x KW windows.

    Parameters
    ----------
    kernel_size : int or (KH, KW)
    stride : int or (h, w), default kernel_size
    padding : int or (h, w), default 0 (at most half the kernel; padded cells never win)
    ceil_mode : bool, default False
        Round the output size up (see :func:`fastconv.functional.max_pool2d`).

    Shapes
    ------
    x (N, C, H, W) -> y (N, C, OH, OW). The forward caches the int64 argmax indices
    (N, C, OH, OW), which is all its backward needs.
    """

    _cache: Optional[Tuple[Array, Tuple[int, ...]]]  # (indices, input shape)

    def __init__(
        self,
        kernel_size: IntPair,
        stride: Optional[IntPair] = None,
        padding: Padding = 0,
        *,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.ceil_mode = ceil_mode
        self._cache = None

    def _clear_cache(self) -> None:
        self._cache = None

    def forward(self, x: Array) -> Array:
        """x (N, C, H, W) -> y (N, C, OH, OW)."""
        if not self.training:
            return F.max_pool2d(
                x, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode
            )
        y, indices = F.max_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            return_indices=True,
            ceil_mode=self.ceil_mode,
        )
        self._cache = (indices, tuple(x.shape))
        return y

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """grad (N, C, OH, OW) -> grad wrt x (N, C, H, W): each grad goes to its window's max."""
        indices, input_shape = self._cached(self._cache)
        if not input_grad:
            return None
        return F.max_pool2d_backward(grad, indices, input_shape)

    def extra_repr(self) -> str:
        ceil = ", ceil_mode=True" if self.ceil_mode else ""
        return (
            f"kernel_size={self.kernel_size!r}, stride={self.stride!r}, "
            f"padding={self.padding!r}{ceil}"
        )


class AvgPool2D(Layer):
    """Average pooling over KH x KW windows.

    Parameters
    ----------
    kernel_size : int or (KH, KW)
    stride : int or (h, w), default kernel_size
    padding : int or (h, w), default 0
    count_include_pad : bool, default True
        True divides every window by KH*KW (padded zeros included, PyTorch's default); False by
        the number of cells inside the image.
    ceil_mode : bool, default False
        Round the output size up (see :func:`fastconv.functional.avg_pool2d`).

    Shapes
    ------
    x (N, C, H, W) -> y (N, C, OH, OW); only the input shape is cached.
    """

    _input_shape: Optional[Tuple[int, ...]]

    def __init__(
        self,
        kernel_size: IntPair,
        stride: Optional[IntPair] = None,
        padding: Padding = 0,
        count_include_pad: bool = True,
        *,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.count_include_pad = bool(count_include_pad)
        self.ceil_mode = ceil_mode
        self._input_shape = None

    def _clear_cache(self) -> None:
        self._input_shape = None

    def forward(self, x: Array) -> Array:
        """x (N, C, H, W) -> y (N, C, OH, OW)."""
        y = F.avg_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
        )
        self._input_shape = tuple(x.shape) if self.training else None
        return y

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """grad (N, C, OH, OW) -> grad wrt x (N, C, H, W), spread evenly over each window."""
        input_shape = self._cached(self._input_shape)
        if not input_grad:
            return None
        return F.avg_pool2d_backward(
            grad,
            input_shape,
            self.kernel_size,
            self.stride,
            self.padding,
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
        )

    def extra_repr(self) -> str:
        ceil = ", ceil_mode=True" if self.ceil_mode else ""
        return (
            f"kernel_size={self.kernel_size!r}, stride={self.stride!r}, "
            f"padding={self.padding!r}, count_include_pad={self.count_include_pad}{ceil}"
        )
