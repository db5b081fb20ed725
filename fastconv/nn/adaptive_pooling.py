"""GlobalAvgPool2D and AdaptiveAvgPool2D: average pooling to a fixed output size (NCHW)."""

from typing import Optional, Tuple

from .. import functional as F
from .._typing import Array, IntPair
from .layer import Layer

__all__ = ["GlobalAvgPool2D", "AdaptiveAvgPool2D"]


class GlobalAvgPool2D(Layer):
    """Mean over each plane: x (N, C, H, W) -> y (N, C, 1, 1) (follow with Flatten for (N, C)).

    Only the input shape is cached for backward.
    """

    _input_shape: Optional[Tuple[int, ...]]

    def __init__(self) -> None:
        super().__init__()
        self._input_shape = None

    def _clear_cache(self) -> None:
        self._input_shape = None

    def forward(self, x: Array) -> Array:
        """x (N, C, H, W) -> y (N, C, 1, 1)."""
        y = F.global_avg_pool2d(x)
        self._input_shape = tuple(x.shape) if self.training else None
        return y

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """grad (N, C, 1, 1) -> grad wrt x (N, C, H, W)."""
        input_shape = self._cached(self._input_shape)
        if not input_grad:
            return None
        return F.global_avg_pool2d_backward(grad, input_shape)


class AdaptiveAvgPool2D(Layer):
    """Average pooling to a fixed output size, whatever the input size (torch's windows).

    Parameters
    ----------
    output_size : int or (OH, OW) (an entry None keeps the input's size)

    Shapes
    ------
    x (N, C, H, W) -> y (N, C, OH, OW); only the input shape is cached.
    """

    _input_shape: Optional[Tuple[int, ...]]

    def __init__(self, output_size: IntPair) -> None:
        super().__init__()
        self.output_size = output_size
        self._input_shape = None

    def _clear_cache(self) -> None:
        self._input_shape = None

    def forward(self, x: Array) -> Array:
        """x (N, C, H, W) -> y (N, C, OH, OW)."""
        y = F.adaptive_avg_pool2d(x, self.output_size)
        self._input_shape = tuple(x.shape) if self.training else None
        return y

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """grad (N, C, OH, OW) -> grad wrt x (N, C, H, W)."""
        input_shape = self._cached(self._input_shape)
        if not input_grad:
            return None
        return F.adaptive_avg_pool2d_backward(grad, input_shape)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size!r}"
