"""GlobalAvgPool2D, AdaptiveAvgPool2D and AdaptiveMaxPool2D: pooling to a fixed output size
(NCHW, torch's windows)."""

from typing import Optional, Tuple

from .. import functional as F
from .._typing import Array, IntPair
from .pooling import _MaxPool, _Pool

__all__ = ["GlobalAvgPool2D", "AdaptiveAvgPool2D", "AdaptiveMaxPool2D"]


class GlobalAvgPool2D(_Pool):
    """Mean over each plane: x (N, C, H, W) -> y (N, C, 1, 1) (follow with Flatten for (N, C)).

    Only the input shape is cached for backward.
    """

    def _pool(self, x: Array) -> Tuple[Array, Optional[Array]]:
        return F.global_avg_pool2d(x), None

    def _pool_backward(
        self, grad: Array, indices: Optional[Array], input_shape: Tuple[int, ...]
    ) -> Array:
        return F.global_avg_pool2d_backward(grad, input_shape)


class AdaptiveAvgPool2D(_Pool):
    """Average pooling to a fixed output size, whatever the input size (torch's windows).

    Parameters
    ----------
    output_size : int or (OH, OW) (an entry None keeps the input's size)

    Shapes
    ------
    x (N, C, H, W) -> y (N, C, OH, OW); only the input shape is cached.
    """

    def __init__(self, output_size: IntPair) -> None:
        super().__init__()
        self.output_size = output_size

    def _pool(self, x: Array) -> Tuple[Array, Optional[Array]]:
        return F.adaptive_avg_pool2d(x, self.output_size), None

    def _pool_backward(
        self, grad: Array, indices: Optional[Array], input_shape: Tuple[int, ...]
    ) -> Array:
        return F.adaptive_avg_pool2d_backward(grad, input_shape)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size!r}"


class AdaptiveMaxPool2D(_MaxPool):
    """Max pooling to a fixed output size, whatever the input size (torch's windows, as
    :func:`fastconv.functional.adaptive_max_pool2d`).

    Parameters
    ----------
    output_size : int or (OH, OW) (an entry None keeps the input's size)
    return_indices : bool, default False
        forward returns (y, indices), torch's form (indices: ih * W + iw of each max within its
        plane); backward still takes the gradient of y alone.

    Shapes
    ------
    x (N, C, H, W) -> y (N, C, OH, OW). The forward caches the int64 argmax indices
    (N, C, OH, OW), which is all its backward needs.
    """

    def __init__(self, output_size: IntPair, return_indices: bool = False) -> None:
        super().__init__()
        self.output_size = output_size
        self.return_indices = bool(return_indices)

    def _pool(self, x: Array) -> Tuple[Array, Optional[Array]]:
        if not (self.training or self.return_indices):  # nothing to cache or return
            return F.adaptive_max_pool2d(x, self.output_size), None
        return F.adaptive_max_pool2d(x, self.output_size, return_indices=True)

    def forward(self, x: Array) -> Array:
        """x (N, C, H, W) -> y (N, C, OH, OW), or (y, indices) with return_indices."""
        y, indices = self._forward(x)
        return (y, indices) if self.return_indices else y

    def extra_repr(self) -> str:
        indices = ", return_indices=True" if self.return_indices else ""
        return f"output_size={self.output_size!r}{indices}"
