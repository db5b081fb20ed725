"""Flatten: (N, d1, d2, ...) -> (N, d1 * d2 * ...), a view whenever the input is contiguous."""

from typing import Optional, Tuple

from .._typing import Array
from .layer import Layer

__all__ = ["Flatten"]


class Flatten(Layer):
    """Collapse every axis after the first: x (N, C, H, W) -> (N, C*H*W).

    A reshape, so no data is copied for a C-contiguous input (what every fastconv op returns);
    backward reshapes the gradient back.
    """

    _CACHE = "_input_shape"
    _input_shape: Optional[Tuple[int, ...]]

    def forward(self, x: Array) -> Array:
        """x (N, ...) -> (N, prod(...))."""
        if x.ndim < 1:
            raise ValueError("Flatten needs an input with a batch axis, got a 0-d array")
        if self.training:
            self._input_shape = tuple(x.shape)
        return x.reshape(x.shape[0], -1)

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """grad (N, prod(...)) -> grad (N, ...) of the last input's shape."""
        input_shape = self._cached(self._input_shape)
        if not input_grad:
            return None
        return grad.reshape(input_shape)
