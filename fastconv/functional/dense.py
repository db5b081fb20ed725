"""Public dense ops: linear (fully connected) and its gradients, softmax cross-entropy."""

import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .. import _dispatch
from .._typing import Array
from .._validation import NEEDS, as_activation, as_needs, as_real
from .._validation import arrays as _arrays

__all__ = [
    "linear",
    "linear_backward",
    "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
]


# Calls validated before, by signature (fastconv._dispatch.signature), as conv2d keeps them: the
# backend (and linear_backward's needs). Two of each per LeNet-5 step.
_LINEAR_SEEN = _dispatch.Memo()
_LINEAR_BACKWARD_SEEN = _dispatch.Memo()


def _rows(a, name, letter):
    """(*, IN) -> (rows (M, IN), the leading shape *): torch's linear takes any leading axes,
    none included. A reshape: a view of a C-contiguous array (lazy for Dask)."""
    a = _arrays.as_array(a, name)
    if a.ndim == 0:
        raise ValueError(f"{name} must have at least 1 dimension (*, {letter}), got a 0-d array")
    lead = tuple(a.shape[:-1])
    if a.ndim == 2:  # the hot path
        return a, lead
    return a.reshape(math.prod(lead), a.shape[-1]), lead


def _linear_inputs(x, weight):
    """(x as rows (M, IN), x's leading shape, weight (OUT, IN))."""
    x, lead = _rows(x, "x", "IN")
    weight = _arrays.as_array(weight, "weight", 2)
    if x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"x has {x.shape[1]} features (its last axis) but weight expects weight.shape[1] = "
            f"{weight.shape[1]}"
        )
    return x, lead, weight


def linear(
    x: Array,
    weight: Array,
    bias: Optional[Array] = None,
    *,
    activation: Optional[str] = None,
    out: Optional[Array] = None,
) -> Array:
    """Fully connected layer: x ``(*, IN)``, weight (OUT, IN), bias (OUT,) -> x @ weight.T + bias
    ``(*, OUT)``; activation None or 'relu' (fused).

    ``*`` is any number of leading axes, none included (torch's rule): (N, IN) is a batch,
    (IN,) one sample, (B, T, IN) a batch of sequences (run as (B * T, IN) rows, a view).
    `out`: an array ``(*, OUT)`` of the result dtype, C-contiguous, not overlapping an input,
    written and returned.
    """
    key = (
        _dispatch.signature((x, weight, bias), (activation,))
        if type(x) is np.ndarray and x.ndim == 2
        else None
    )
    be = _LINEAR_SEEN.get(key)
    if be is not None:  # validated before: (N, IN) rows, C-contiguous, one native dtype
        if out is not None:
            shape = (x.shape[0], weight.shape[0])
            out = _dispatch.output(be, out, shape, x.dtype, x=x, weight=weight, bias=bias)
        return be.linear(x, weight, bias, activation == "relu", out)
    be = _dispatch.backend(x=x, weight=weight, bias=bias)
    x, lead, weight = _linear_inputs(x, weight)
    if bias is not None:
        bias = _arrays.as_array(bias, "bias", 1)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    activation = as_activation(activation)
    dtype = _dispatch.dtype(x=x, weight=weight, bias=bias)
    _LINEAR_SEEN.remember(key, be)
    given = out
    if out is not None:
        out = _dispatch.output(
            be, out, lead + (weight.shape[0],), dtype, x=x, weight=weight, bias=bias
        )
        out = out.reshape(x.shape[0], weight.shape[0])  # a view: out is C-contiguous
    x, weight, bias = _dispatch.inputs(dtype, x, weight, bias)
    y = be.linear(x, weight, bias, activation == "relu", out)
    if given is not None:
        return given
    return y if len(lead) == 1 else y.reshape(lead + (weight.shape[0],))


def linear_backward(
    grad_out: Array,
    x: Array,
    weight: Array,
    *,
    needs: Union[str, Sequence[str]] = NEEDS,
    out: Optional[Tuple[Optional[Array], Optional[Array], Optional[Array]]] = None,
) -> Tuple[Optional[Array], Optional[Array], Optional[Array]]:
    """Gradients of linear: grad_out ``(*, OUT)``, x ``(*, IN)``, weight (OUT, IN) ->
    (grad_input ``(*, IN)``, grad_weight (OUT, IN), grad_bias (OUT,)), None where not in `needs`;
    grad_weight and grad_bias are sums over all the leading axes ``*``.

    `out`: (grad_input, grad_weight, grad_bias), arrays the gradients are written into (and
    returned), each of its gradient's shape and the result dtype, C-contiguous, not
    overlapping an input or another entry; None entries are allocated, and the entry of a
    gradient not in `needs` must be None."""
    key = (
        _dispatch.signature((grad_out, x, weight), (needs,))
        if type(x) is np.ndarray and x.ndim == 2
        else None
    )
    known = _LINEAR_BACKWARD_SEEN.get(key)
    if known is not None:  # validated before: (N, *) rows, C-contiguous, one native dtype
        be, needs = known
        if out is not None:
            out = _linear_backward_out(be, out, needs, x, weight, x.dtype, grad_out)
        return be.linear_backward(grad_out, x, weight, needs, out)
    needs = as_needs(needs)
    be = _dispatch.backend(grad_out=grad_out, x=x, weight=weight)
    x, lead, weight = _linear_inputs(x, weight)
    grad_out = _arrays.as_array(grad_out, "grad_out")
    if tuple(grad_out.shape) != lead + (weight.shape[0],):
        raise ValueError(
            f"grad_out must have shape {lead + (weight.shape[0],)} (x's leading axes, OUT), "
            f"got {tuple(grad_out.shape)}"
        )
    if len(lead) != 1:
        grad_out = grad_out.reshape(x.shape[0], weight.shape[0])
    dtype = _dispatch.dtype(grad_out=grad_out, x=x, weight=weight)
    given = out
    if out is not None:
        out = _linear_backward_out(be, out, needs, x, weight, dtype, grad_out, lead)
        if out[0] is not None and len(lead) != 1:  # the rows' view (out[0] is C-contiguous)
            out = (out[0].reshape(x.shape), out[1], out[2])
    grad_out, x, weight = _dispatch.inputs(dtype, grad_out, x, weight)
    _LINEAR_BACKWARD_SEEN.remember(key, (be, frozenset(needs)))
    grad_input, grad_weight, grad_bias = be.linear_backward(grad_out, x, weight, needs, out)
    if grad_input is not None and len(lead) != 1:
        grad_input = grad_input.reshape(lead + (weight.shape[1],))
    if given is not None and given[0] is not None:
        grad_input = given[0]  # the caller's array (written through the rows' view)
    return grad_input, grad_weight, grad_bias


def _linear_backward_out(be, out, needs, x, weight, dtype, grad_out, lead=None):
    """linear_backward's out= checked: (grad_input, grad_weight, grad_bias); x as rows (M, IN),
    `lead` x's leading axes (default (M,))."""
    lead = (x.shape[0],) if lead is None else lead
    specs = (
        ("grad_input", lead + (x.shape[1],), dtype) if "input" in needs else None,
        ("grad_weight", tuple(weight.shape), dtype) if "weight" in needs else None,
        ("grad_bias", (weight.shape[0],), dtype) if "bias" in needs else None,
    )
    return _dispatch.outputs(be, out, specs, grad_out=grad_out, x=x, weight=weight)


def _labels(labels, n):
    """labels (n,) of an integer dtype, as int64 (their range is checked by the backend)."""
    labels = _arrays.as_array(labels, "labels", 1)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer array, got {labels.dtype}")
    if labels.shape[0] != n:
        raise ValueError(
            f"labels must have shape ({n},) (one per row of logits), got {tuple(labels.shape)}"
        )
    return _dispatch.inputs(np.dtype(np.int64), labels)[0]


def _rows_and_classes(a, name):
    a = _arrays.as_array(a, name, 2)
    N, K = a.shape
    if K < 1 or N < 1:
        raise ValueError(f"{name} must have at least one row and one class, got {(N, K)}")
    return a


def softmax_cross_entropy(
    logits: Array, labels: Array, *, out: Optional[Array] = None
) -> Tuple[Array, Array]:
    """Mean cross-entropy of softmax(logits) against integer labels, computed stably.

    logits (N, K), labels (N,) ints in [0, K) -> (loss, log_probs): loss is a 0-d array (the mean
    over the batch), log_probs (N, K) is what softmax_cross_entropy_backward needs. `out`: an
    array (N, K) of the result dtype, C-contiguous, not overlapping an input, that log_probs
    is written into (and returned as)."""
    be = _dispatch.backend(logits=logits, labels=labels)
    logits = _rows_and_classes(logits, "logits")
    labels = _labels(labels, logits.shape[0])
    dtype = _dispatch.dtype(logits=logits)
    out = _dispatch.output(be, out, tuple(logits.shape), dtype, logits=logits, labels=labels)
    (logits,) = _dispatch.inputs(dtype, logits)
    return be.softmax_cross_entropy(logits, labels, out)


def softmax_cross_entropy_backward(
    log_probs: Array, labels: Array, grad_loss: float = 1.0, *, out: Optional[Array] = None
) -> Array:
    """Gradient of the mean softmax cross-entropy with respect to the logits:
    log_probs (N, K) from softmax_cross_entropy -> grad_logits (N, K) =
    (softmax - onehot(labels)) * grad_loss / N. `out`: an array (N, K) of the result dtype,
    C-contiguous, not overlapping an input, written and returned."""
    grad_loss = as_real(grad_loss, "grad_loss")
    be = _dispatch.backend(log_probs=log_probs, labels=labels)
    log_probs = _rows_and_classes(log_probs, "log_probs")
    labels = _labels(labels, log_probs.shape[0])
    dtype = _dispatch.dtype(log_probs=log_probs)
    shape = tuple(log_probs.shape)
    out = _dispatch.output(be, out, shape, dtype, log_probs=log_probs, labels=labels)
    (log_probs,) = _dispatch.inputs(dtype, log_probs)
    return be.softmax_cross_entropy_backward(log_probs, labels, grad_loss, out)
