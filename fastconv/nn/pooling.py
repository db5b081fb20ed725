"""MaxPool2D and AvgPool2D: 2-D pooling layers (NCHW, floor or ceil mode, PyTorch's semantics),
and the base every pooling layer shares (nn.adaptive_pooling's too)."""

from typing import Any, Optional, Tuple

from .. import functional as F
from .._typing import Array, IntPair, Padding
from .layer import Layer

__all__ = ["MaxPool2D", "AvgPool2D"]


class _Pool(Layer):
    """A pooling layer: no parameters; a training-mode forward caches what its backward needs,
    the input shape and, for max pooling, the argmax indices (and the output).

    Subclasses implement ``_pool(x) -> (y, indices or None)`` and
    ``_pool_backward(grad, indices, input_shape) -> grad wrt x``.
    """

    _CACHE = "_cache"
    _cache: Optional[Tuple[Any, Tuple[int, ...], Array]]  # (indices or None, input shape, y)

    def _pool(self, x: Array) -> Tuple[Array, Optional[Array]]:
        raise NotImplementedError

    def _pool_backward(
        self, grad: Array, indices: Optional[Array], input_shape: Tuple[int, ...]
    ) -> Array:
        raise NotImplementedError

    def _forward(self, x: Array) -> Tuple[Array, Optional[Array]]:
        """(y, indices or None), the cache set for backward (training mode) or cleared."""
        y, indices = self._pool(x)
        self._cache = (indices, tuple(x.shape), y) if self.training else None
        return y, indices

    def forward(self, x: Array) -> Array:
        """x (N, C, H, W) -> y (N, C, OH, OW)."""
        return self._forward(x)[0]

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """grad (N, C, OH, OW) -> grad wrt x (N, C, H, W): each output's gradient goes to its
        window's max (max pooling) or is spread over its window (average pooling)."""
        indices, input_shape, _ = self._cached(self._cache)
        if not input_grad:
            return None
        return self._pool_backward(grad, indices, input_shape)


class _MaxPool(_Pool):
    """Max pooling: its backward is the scatter of max_pool2d_backward at the cached indices."""

    def _grad_before_relu(self, grad: Array) -> Optional[Array]:
        # the ReLU's derivative on the pooled output (Layer._grad_before_relu), then backward
        y = self._cached(self._cache)[2]
        key = self._buffer_key("relu grad", grad, y)
        out = self._kept(key)
        masked = F.relu_backward(grad, y, out=out)
        if out is None:
            self._keep(key, masked)
        return self.backward(masked)

    def _pool_backward(
        self, grad: Array, indices: Optional[Array], input_shape: Tuple[int, ...]
    ) -> Array:
        # (the input shape too: inputs of two sizes can pool to one output size)
        key = self._buffer_key(("grad_x", input_shape), grad, indices)
        if key is None:
            return F.max_pool2d_backward(grad, indices, input_shape)
        out = self._kept(key)
        grad_x = F.max_pool2d_backward(grad, indices, input_shape, out=out)
        return grad_x if out is not None else self._keep(key, grad_x)


class MaxPool2D(_MaxPool):
    """Max pooling over KH x KW windows.

    Parameters
    ----------
    kernel_size : int or (KH, KW)
    stride : int or (h, w), default kernel_size
    padding : int or (h, w), default 0 (at most half the kernel; padded cells never win)
    dilation : int or (h, w), default 1
        Spacing of the window's cells (see :func:`fastconv.functional.max_pool2d`).
    ceil_mode : bool, default False
        Round the output size up (see :func:`fastconv.functional.max_pool2d`).

    Shapes
    ------
    x (N, C, H, W) -> y (N, C, OH, OW). The forward caches the int64 argmax indices
    (N, C, OH, OW), which is all its backward needs.
    """

    def __init__(
        self,
        kernel_size: IntPair,
        stride: Optional[IntPair] = None,
        padding: Padding = 0,
        dilation: IntPair = 1,
        *,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.ceil_mode = ceil_mode

    _REUSES_BUFFERS = True  # max_pool2d and max_pool2d_backward take out=

    def _pool(self, x: Array) -> Tuple[Array, Optional[Array]]:
        geometry = (self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        indices = self.training  # else nothing to cache
        key = self._buffer_key("y, indices" if indices else "y", x)
        if key is None:
            if not indices:
                return F.max_pool2d(x, *geometry), None
            return F.max_pool2d(x, *geometry, return_indices=True)
        out = self._kept(key)
        result = F.max_pool2d(x, *geometry, return_indices=indices, out=out)
        if out is None:
            self._keep(key, result)
        return result if indices else (result, None)

    def extra_repr(self) -> str:
        dilation = "" if self.dilation == 1 else f", dilation={self.dilation!r}"
        ceil = ", ceil_mode=True" if self.ceil_mode else ""
        return (
            f"kernel_size={self.kernel_size!r}, stride={self.stride!r}, "
            f"padding={self.padding!r}{dilation}{ceil}"
        )


class AvgPool2D(_Pool):
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
    divisor_override : nonzero int or None, default None
        Divide every window's sum by this instead (PyTorch's divisor_override).

    Shapes
    ------
    x (N, C, H, W) -> y (N, C, OH, OW); only the input shape is cached.
    """

    def __init__(
        self,
        kernel_size: IntPair,
        stride: Optional[IntPair] = None,
        padding: Padding = 0,
        *,
        count_include_pad: bool = True,
        ceil_mode: bool = False,
        divisor_override: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.count_include_pad = bool(count_include_pad)
        self.ceil_mode = ceil_mode
        self.divisor_override = divisor_override

    def _options(self) -> dict:
        return dict(
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
            divisor_override=self.divisor_override,
        )

    def _pool(self, x: Array) -> Tuple[Array, Optional[Array]]:
        geometry = (self.kernel_size, self.stride, self.padding)
        return F.avg_pool2d(x, *geometry, **self._options()), None

    def _pool_backward(
        self, grad: Array, indices: Optional[Array], input_shape: Tuple[int, ...]
    ) -> Array:
        geometry = (self.kernel_size, self.stride, self.padding)
        return F.avg_pool2d_backward(grad, input_shape, *geometry, **self._options())

    def extra_repr(self) -> str:
        ceil = ", ceil_mode=True" if self.ceil_mode else ""
        divisor = (
            "" if self.divisor_override is None else f", divisor_override={self.divisor_override}"
        )
        return (
            f"kernel_size={self.kernel_size!r}, stride={self.stride!r}, "
            f"padding={self.padding!r}, count_include_pad={self.count_include_pad}{ceil}{divisor}"
        )
