"""Elementwise activations ReLU, Tanh and Sigmoid over the public functions of the same names.

Each caches its *output*, from which its derivative follows: relu' = (y > 0),
tanh' = 1 - y^2, sigmoid' = y (1 - y). Works for NumPy and CuPy arrays alike.
"""

from .. import functional as F
from .layer import Layer

__all__ = ["ReLU", "Tanh", "Sigmoid"]


class _Elementwise(Layer):
    """An activation y = f(x) whose backward needs only y."""

    def __init__(self):
        super().__init__()
        self._output = None

    def _clear_cache(self):
        self._output = None

    def forward(self, x):
        """x (any shape) -> y (same shape)."""
        y = self._apply(x)
        self._output = y if self.training else None
        return y

    def backward(self, grad, *, input_grad=True):
        """grad (the output's shape) -> grad wrt x (same shape), or None if not input_grad."""
        y = self._cached(self._output)
        if not input_grad:
            return None
        return self._derivative_times(grad, y)


class ReLU(_Elementwise):
    """max(x, 0). (Conv2D and Linear can fuse it: ``activation='relu'``.)"""

    def _apply(self, x):
        return F.relu(x)

    def _derivative_times(self, grad, y):
        return F.relu_backward(grad, y)


class Tanh(_Elementwise):
    """tanh(x)."""

    def _apply(self, x):
        return F.tanh(x)

    def _derivative_times(self, grad, y):
        return F.tanh_backward(grad, y)


class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)), without overflow for large |x| (see fastconv.functional.sigmoid)."""

    def _apply(self, x):
        return F.sigmoid(x)

    def _derivative_times(self, grad, y):
        return F.sigmoid_backward(grad, y)
