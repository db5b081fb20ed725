"""Public elementwise activations sigmoid and tanh and their gradients, any shape, NumPy or CuPy.

Both gradients take the activation's *output* y (what a layer caches): sigmoid' = y (1 - y),
tanh' = 1 - y^2. Computed with the array module's ufuncs (elementwise, so the same numbers for
any thread count); the dtype rule of the other ops applies (float32/float64 results).
"""

import numpy as np

from . import _compat
from ._typing import Array
from ._validation import arrays as _arrays

__all__ = ["sigmoid", "sigmoid_backward", "tanh", "tanh_backward"]


def _input(x, name="x"):
    x = _arrays.as_array(x, name)
    dtype = _arrays.compute_dtype(**{name: x})
    return x.astype(dtype, copy=False), _compat.array_module(x)


def sigmoid(x: Array) -> Array:
    """1 / (1 + exp(-x)) elementwise, without overflow for any x.

    Computed from z = exp(-|x|) in (0, 1]: 1 / (1 + z) for x >= 0, z / (1 + z) for x < 0, so no
    exp overflows and the small values of the negative tail keep their relative precision
    (sigmoid(-100) = 3.7e-44 in float64, where (1 + tanh(x / 2)) / 2 gives 0). NaN stays NaN.

    x : ndarray, any shape (0-d too) -> y : ndarray, same shape, float32 or float64.
    """
    x, xp = _input(x)
    # exp(-|x|) underflows to 0 for large |x|: the right limit, not worth a warning (or an
    # exception under np.errstate(all="raise"))
    with np.errstate(under="ignore"):
        z = _arrays.elementwise_result(xp.abs(x))  # an array: the ufuncs below write into it
        xp.negative(z, out=z)
        xp.exp(z, out=z)
        numerator = xp.where(x >= 0, xp.ones_like(z), z)
        z += 1
        numerator /= z
    return numerator


def tanh(x: Array) -> Array:
    """tanh(x) elementwise (the array module's, which saturates to +-1 without overflow).

    x : ndarray, any shape (0-d too) -> y : ndarray, same shape, float32 or float64."""
    x, xp = _input(x)
    return _arrays.elementwise_result(xp.tanh(x))


def _grad_inputs(grad_out, y):
    _arrays.backend(grad_out=grad_out, y=y)
    grad_out = _arrays.as_array(grad_out, "grad_out")
    y = _arrays.as_array(y, "y")
    if tuple(grad_out.shape) != tuple(y.shape):
        raise ValueError(
            f"grad_out must have y's shape {tuple(y.shape)}, got {tuple(grad_out.shape)}"
        )
    dtype = _arrays.compute_dtype(grad_out=grad_out, y=y)
    return grad_out.astype(dtype, copy=False), y.astype(dtype, copy=False)


def sigmoid_backward(grad_out: Array, y: Array) -> Array:
    """Gradient of sigmoid: grad_out * y * (1 - y), with y = sigmoid(x) (same shape as grad_out).
    Returns grad_input of that shape."""
    grad_out, y = _grad_inputs(grad_out, y)
    return _arrays.elementwise_result(grad_out * y * (1 - y))


def tanh_backward(grad_out: Array, y: Array) -> Array:
    """Gradient of tanh: grad_out * (1 - y^2), with y = tanh(x) (same shape as grad_out).
    Returns grad_input of that shape."""
    grad_out, y = _grad_inputs(grad_out, y)
    return _arrays.elementwise_result(grad_out * (1 - y * y))
