"""Elementwise activations ReLU, Tanh and Sigmoid over the public functions of the same names.

Each caches its *output*, from which its derivative follows: relu' = (y > 0),
tanh' = 1 - y^2, sigmoid' = y (1 - y). Works for NumPy and CuPy arrays alike.
"""

from typing import Optional

from .. import functional as F
from .._typing import Array
from .layer import Layer

__all__ = ["ReLU", "Tanh", "Sigmoid"]


class _Elementwise(Layer):
    """An activation y = f(x) whose backward needs only y."""

    _CACHE = "_output"
    _output: Optional[Array]

    def forward(self, x: Array) -> Array:
        """x (any shape) -> y (same shape)."""
        y = self._apply(x)
        self._output = y if self.training else None
        return y

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """grad (the output's shape) -> grad wrt x (same shape), or None if not input_grad."""
        y = self._cached(self._output)
        if not input_grad:
            return None
        return self._derivative_times(grad, y)

    def _apply(self, x: Array) -> Array:
        raise NotImplementedError

    def _derivative_times(self, grad: Array, y: Array) -> Array:
        raise NotImplementedError


class ReLU(_Elementwise):
    """max(x, 0). (Conv2D and Linear can fuse it: ``activation='relu'``.)"""

    def _apply(self, x: Array) -> Array:
        return F.relu(x)

    def _derivative_times(self, grad: Array, y: Array) -> Array:
        return F.relu_backward(grad, y)

    def _relu_output(self) -> bool:
        return True

    def _backward_masked(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        self._cached(self._output)  # (a forward ran, as backward checks)
        return grad if input_grad else None


class Tanh(_Elementwise):
    """tanh(x)."""

    def _apply(self, x: Array) -> Array:
        return F.tanh(x)

    def _derivative_times(self, grad: Array, y: Array) -> Array:
        return F.tanh_backward(grad, y)


class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)), without overflow for large ``|x|`` (see fastconv.functional.sigmoid)."""

    def _apply(self, x: Array) -> Array:
        return F.sigmoid(x)

    def _derivative_times(self, grad: Array, y: Array) -> Array:
        return F.sigmoid_backward(grad, y)
