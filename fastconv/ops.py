"""Public dense ops for the layers' hot path: ReLU, linear (fully connected), softmax cross-entropy."""

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from . import _compat
from ._backend import dask as _dask
from ._typing import Array
from ._validation import NEEDS, as_activation, as_needs, as_real
from ._validation import arrays as _arrays


def relu(x: Array) -> Array:
    """max(x, 0) elementwise; any shape; the dtype rule applies (float32/float64 result)."""
    x = _arrays.as_array(x, "x")
    dtype = _arrays.compute_dtype(x=x)
    xp = _compat.array_module(x)
    return _arrays.elementwise_result(xp.maximum(x.astype(dtype, copy=False), 0))


def relu_backward(grad_out: Array, y: Array) -> Array:
    """Gradient of relu (or of a fused activation='relu'): grad_out where y > 0, else 0.

    grad_out and y (the ReLU's output) have the same shape; returns grad_input of that shape."""
    be = _arrays.backend(grad_out=grad_out, y=y)
    grad_out = _arrays.as_array(grad_out, "grad_out")
    y = _arrays.as_array(y, "y")
    if tuple(grad_out.shape) != tuple(y.shape):
        raise ValueError(
            f"grad_out must have y's shape {tuple(y.shape)}, got {tuple(grad_out.shape)}"
        )
    dtype = _arrays.compute_dtype(grad_out=grad_out, y=y)
    if _dask.is_dask(grad_out, y):
        return _dask.elementwise(relu_backward, grad_out, y, dtype=dtype)
    grad_x = _arrays.empty(grad_out, grad_out.shape, dtype)
    if grad_x.size:
        be.relu_backward(_arrays.contiguous(grad_out, dtype), _arrays.contiguous(y, dtype), grad_x)
    return grad_x


def _linear_inputs(x, weight):
    x = _arrays.as_array(x, "x", 2)
    weight = _arrays.as_array(weight, "weight", 2)
    if x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"x has {x.shape[1]} features but weight expects weight.shape[1] = {weight.shape[1]}"
        )
    return x, weight


def linear(
    x: Array, weight: Array, bias: Optional[Array] = None, *, activation: Optional[str] = None
) -> Array:
    """Fully connected layer: x (N, IN), weight (OUT, IN), bias (OUT,) -> x @ weight.T + bias
    (N, OUT); activation None or 'relu' (fused)."""
    be = _arrays.backend(x=x, weight=weight, bias=bias)
    x, weight = _linear_inputs(x, weight)
    if bias is not None:
        bias = _arrays.as_array(bias, "bias", 1)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    activation = as_activation(activation)
    dtype = _arrays.compute_dtype(x=x, weight=weight, bias=bias)
    if _dask.is_dask(x, weight, bias):
        return _dask.rows(
            linear, x, weight, bias, out_cols=weight.shape[0], dtype=dtype, activation=activation
        )
    y = _arrays.empty(x, (x.shape[0], weight.shape[0]), dtype)
    if y.size == 0:
        return y
    if x.shape[1] == 0:
        y[...] = 0 if bias is None else bias
        return relu(y) if activation == "relu" else y
    be.linear_forward(
        _arrays.contiguous(x, dtype),
        _arrays.contiguous(weight, dtype),
        None if bias is None else _arrays.contiguous(bias, dtype),
        y,
        activation == "relu",
    )
    return y


def linear_backward(
    grad_out: Array, x: Array, weight: Array, *, needs: Union[str, Sequence[str]] = NEEDS
) -> Tuple[Optional[Array], Optional[Array], Optional[Array]]:
    """Gradients of linear: grad_out (N, OUT), x (N, IN), weight (OUT, IN) ->
    (grad_input (N, IN), grad_weight (OUT, IN), grad_bias (OUT,)), None where not in `needs`."""
    needs = as_needs(needs)
    be = _arrays.backend(grad_out=grad_out, x=x, weight=weight)
    x, weight = _linear_inputs(x, weight)
    grad_out = _arrays.as_array(grad_out, "grad_out", 2)
    if tuple(grad_out.shape) != (x.shape[0], weight.shape[0]):
        raise ValueError(
            f"grad_out must have shape {(x.shape[0], weight.shape[0])}, got {tuple(grad_out.shape)}"
        )
    if _dask.is_dask(grad_out, x, weight):
        return _dask.linear_backward(grad_out, x, weight, needs)
    dtype = _arrays.compute_dtype(grad_out=grad_out, x=x, weight=weight)
    grads = {
        "input": _arrays.empty(x, x.shape, dtype) if "input" in needs else None,
        "weight": _arrays.empty(x, weight.shape, dtype) if "weight" in needs else None,
        "bias": _arrays.empty(x, (weight.shape[0],), dtype) if "bias" in needs else None,
    }
    if grad_out.size == 0 or x.shape[1] == 0:
        for g in grads.values():
            if g is not None:
                g[...] = 0
        if grad_out.size == 0 or grads["bias"] is None:
            return grads["input"], grads["weight"], grads["bias"]
    be.linear_backward(
        _arrays.contiguous(grad_out, dtype),
        _arrays.contiguous(x, dtype),
        _arrays.contiguous(weight, dtype),
        grads["input"],
        grads["weight"],
        grads["bias"],
    )
    return grads["input"], grads["weight"], grads["bias"]


def _labels(labels, n, k):
    labels = _arrays.as_array(labels, "labels", 1)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer array, got {labels.dtype}")
    if labels.shape[0] != n:
        raise ValueError(
            f"labels must have shape ({n},) (one per row of logits), got {tuple(labels.shape)}"
        )
    if _dask.is_dask(labels):
        return labels  # checked block by block when computed
    # Not on the GPU: reading labels back would synchronise every training step; there a label
    # outside [0, K) gives a NaN loss instead (README, GPU backend).
    if (
        n
        and not _compat.is_cupy_array(labels)
        and (int(labels.min()) < 0 or int(labels.max()) >= k)
    ):
        raise ValueError(f"labels must lie in [0, {k}) (the number of classes)")
    return _arrays.contiguous(labels, np.int64)


def softmax_cross_entropy(logits: Array, labels: Array) -> Tuple[Array, Array]:
    """Mean cross-entropy of softmax(logits) against integer labels, computed stably.

    logits (N, K), labels (N,) ints in [0, K) -> (loss, log_probs): loss is a 0-d array (the mean
    over the batch), log_probs (N, K) is what softmax_cross_entropy_backward needs."""
    be = _arrays.backend(logits=logits, labels=labels)
    logits = _arrays.as_array(logits, "logits", 2)
    N, K = logits.shape
    if K < 1 or N < 1:
        raise ValueError(f"logits must have at least one row and one class, got {(N, K)}")
    labels = _labels(labels, N, K)
    dtype = _arrays.compute_dtype(logits=logits)
    if _dask.is_dask(logits, labels):
        return _dask.softmax_cross_entropy(softmax_cross_entropy, logits, labels, dtype)
    log_probs = _arrays.empty(logits, (N, K), dtype)
    losses = _arrays.empty(logits, (N,), dtype)
    be.softmax_cross_entropy_forward(_arrays.contiguous(logits, dtype), labels, log_probs, losses)
    return losses.mean(), log_probs


def softmax_cross_entropy_backward(
    log_probs: Array, labels: Array, grad_loss: float = 1.0
) -> Array:
    """Gradient of the mean softmax cross-entropy with respect to the logits:
    log_probs (N, K) from softmax_cross_entropy -> grad_logits (N, K) =
    (softmax - onehot(labels)) * grad_loss / N."""
    grad_loss = as_real(grad_loss, "grad_loss")
    be = _arrays.backend(log_probs=log_probs, labels=labels)
    log_probs = _arrays.as_array(log_probs, "log_probs", 2)
    N, K = log_probs.shape
    if K < 1 or N < 1:
        raise ValueError(f"log_probs must have at least one row and one class, got {(N, K)}")
    labels = _labels(labels, N, K)
    dtype = _arrays.compute_dtype(log_probs=log_probs)
    if _dask.is_dask(log_probs, labels):
        return _dask.softmax_cross_entropy_backward(
            softmax_cross_entropy_backward, log_probs, labels, grad_loss, dtype
        )
    grad = _arrays.empty(log_probs, (N, K), dtype)
    be.softmax_cross_entropy_backward(
        _arrays.contiguous(log_probs, dtype), labels, grad, grad_loss / N
    )
    return grad
