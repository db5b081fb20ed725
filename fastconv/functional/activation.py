"""Public elementwise activations ReLU, sigmoid and tanh and their gradients, any shape.

Both gradients take the activation's *output* y (what a layer caches): sigmoid' = y (1 - y),
tanh' = 1 - y^2. Computed with the array module's ufuncs (elementwise, so the same numbers for
any thread count); the dtype rule of the other ops applies (float32/float64 results).
"""

from typing import Optional

from .. import _dispatch
from .._typing import Array
from .._validation import arrays as _arrays

__all__ = ["relu", "relu_backward", "sigmoid", "sigmoid_backward", "tanh", "tanh_backward"]


# relu_backward's calls validated before, by signature (fastconv._dispatch.signature): the
# backend. Four per LeNet-5 step.
_RELU_BACKWARD_SEEN = _dispatch.Memo()


def _input(x):
    """(backend, x in the computing dtype); elementwise ops take any layout."""
    be = _dispatch.backend(x=x)
    x = _arrays.as_array(x, "x")
    return be, x.astype(_dispatch.dtype(x=x), copy=False)


def _grad_inputs(grad_out, y):
    be = _dispatch.backend(grad_out=grad_out, y=y)
    grad_out = _arrays.as_array(grad_out, "grad_out")
    y = _arrays.as_array(y, "y")
    if tuple(grad_out.shape) != tuple(y.shape):
        raise ValueError(
            f"grad_out must have y's shape {tuple(y.shape)}, got {tuple(grad_out.shape)}"
        )
    dtype = _dispatch.dtype(grad_out=grad_out, y=y)
    return be, grad_out.astype(dtype, copy=False), y.astype(dtype, copy=False)


def relu(x: Array) -> Array:
    """max(x, 0) elementwise; any shape (0-d too); the dtype rule applies (float32/float64
    result)."""
    be, x = _input(x)
    return be.relu(x)


def relu_backward(grad_out: Array, y: Array, *, out: Optional[Array] = None) -> Array:
    """Gradient of relu (or of a fused activation='relu'): grad_out where y > 0, else 0.

    grad_out and y (the ReLU's output) have the same shape; returns grad_input of that shape.
    `out`: an array of that shape and the result dtype, C-contiguous, written and returned; it
    may be grad_out itself (in place, as NumPy's ufuncs allow), but may not otherwise overlap
    grad_out or y."""
    key = _dispatch.signature((grad_out, y), ())
    be = _RELU_BACKWARD_SEEN.get(key)
    if be is not None:  # validated before: C-contiguous NumPy arrays of one shape and dtype
        if out is not None:
            shape = grad_out.shape
            out = _dispatch.output(be, out, shape, y.dtype, grad_out, grad_out=grad_out, y=y)
        return be.relu_backward(grad_out, y, out)
    be, grad_out, y = _grad_inputs(grad_out, y)
    _RELU_BACKWARD_SEEN.remember(key, be)
    original = grad_out
    grad_out, y = _dispatch.inputs(grad_out.dtype, grad_out, y)
    if out is not None:
        # in place only on the caller's own array (not on a contiguous copy made above)
        may_be = grad_out if grad_out is original else None
        out = _dispatch.output(
            be, out, tuple(grad_out.shape), grad_out.dtype, may_be, grad_out=grad_out, y=y
        )
    return be.relu_backward(grad_out, y, out)


def sigmoid(x: Array) -> Array:
    """1 / (1 + exp(-x)) elementwise, without overflow for any x.

    Computed from ``z = exp(-|x|)`` in (0, 1]: 1 / (1 + z) for x >= 0, z / (1 + z) for x < 0, so no
    exp overflows and the small values of the negative tail keep their relative precision
    (sigmoid(-100) = 3.7e-44 in float64, where (1 + tanh(x / 2)) / 2 gives 0). NaN stays NaN.

    x : ndarray, any shape (0-d too) -> y : ndarray, same shape, float32 or float64.
    """
    be, x = _input(x)
    return be.sigmoid(x)


def tanh(x: Array) -> Array:
    """tanh(x) elementwise (the array module's, which saturates to +-1 without overflow).

    x : ndarray, any shape (0-d too) -> y : ndarray, same shape, float32 or float64."""
    be, x = _input(x)
    return be.tanh(x)


def sigmoid_backward(grad_out: Array, y: Array) -> Array:
    """Gradient of sigmoid: grad_out * y * (1 - y), with y = sigmoid(x) (same shape as grad_out).
    Returns grad_input of that shape."""
    be, grad_out, y = _grad_inputs(grad_out, y)
    return be.sigmoid_backward(grad_out, y)


def tanh_backward(grad_out: Array, y: Array) -> Array:
    """Gradient of tanh: grad_out * (1 - y^2), with y = tanh(x) (same shape as grad_out).
    Returns grad_input of that shape."""
    be, grad_out, y = _grad_inputs(grad_out, y)
    return be.tanh_backward(grad_out, y)
