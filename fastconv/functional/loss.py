"""Public cross-entropy with torch's options (class weights, ignore_index, reduction, label
smoothing, class-probability targets) and its hand-written gradient.

The logits' class axis is moved last and the rest flattened into rows, (M, C) with M = N * d1 *
..., and the backend computes row by row (fastconv._backend.losses has the formulas); the results
are given back in the input's layout. torch's deprecated `size_average` and `reduce` are not
taken (its `reduction` replaces them).
"""

from typing import Optional

import numpy as np

from .. import _compat, _dispatch
from .._typing import Array
from .._validation import arrays as _arrays
from .._validation import as_fraction, as_int, as_real, as_reduction

__all__ = ["cross_entropy", "cross_entropy_backward"]


class _Loss:
    """The validated arguments of a cross-entropy call, as rows."""

    def __init__(self, input, target, weight, ignore_index, reduction, label_smoothing):
        self.reduction = as_reduction(reduction)
        self.label_smoothing = as_fraction(label_smoothing, "label_smoothing")
        self.ignore_index = as_int(ignore_index, "ignore_index")
        input = _arrays.as_array(input, "input")
        if input.ndim == 0:
            raise ValueError(
                "input must be logits (N, C), (N, C, d1, ...) or one sample (C,), got a 0-d array"
            )
        self.shape = tuple(input.shape)
        C = self.shape[0] if input.ndim == 1 else self.shape[1]
        if C < 1:
            raise ValueError(f"input must have at least one class (C >= 1), got shape {self.shape}")
        # the loss per sample: (N, d1, ...), or () for one sample (C,)
        self.loss_shape = () if input.ndim == 1 else self.shape[:1] + self.shape[2:]
        target = _arrays.as_array(target, "target")
        self.probs = (
            tuple(target.shape) == self.shape
        )  # torch's rule: input's shape = probabilities
        self._check_target(target)
        if weight is not None:
            weight = _arrays.as_array(weight, "weight")
            if tuple(weight.shape) != (C,):
                raise ValueError(
                    f"weight must have shape ({C},) (one per class of input), got "
                    f"{tuple(weight.shape)}"
                )
        self.C = C
        self.input, self.target, self.weight = input, target, weight

    def _check_target(self, target):
        if self.probs:
            if target.dtype.kind != "f":
                raise TypeError(
                    f"target of input's shape {self.shape} holds class probabilities and must "
                    f"be floating, got {target.dtype} (class indices have shape "
                    f"{self.loss_shape})"
                )
            if self.ignore_index >= 0:
                raise ValueError(
                    f"ignore_index must be negative (unused) with class-probability targets, as "
                    f"in torch; got {self.ignore_index}"
                )
            return
        if tuple(target.shape) != self.loss_shape:
            raise ValueError(
                f"target must have shape {self.loss_shape} (class indices) or {self.shape} (class "
                f"probabilities), got {tuple(target.shape)}"
            )
        if target.dtype.kind not in "iu":
            raise TypeError(f"target must hold integer class indices, got {target.dtype}")

    def dtype(self, **others):
        target = self.target if self.probs else None
        return _dispatch.dtype(input=self.input, weight=self.weight, target=target, **others)

    def rows(self, dtype):
        """(logits (M, C), target (M,) int64 or (M, C), weight (C,) or None), each C-contiguous
        in the computing dtype (lazy for Dask)."""
        logits = self._rows(self.input)
        target = self._rows(self.target) if self.probs else self.target.reshape(-1)
        logits, weight = _dispatch.inputs(dtype, logits, self.weight)
        (target,) = _dispatch.inputs(dtype if self.probs else np.dtype(np.int64), target)
        return logits, target, weight

    def _rows(self, a):
        """(N, C, d1, ...) -> (N * d1 * ..., C); (C,) -> (1, C)."""
        if a.ndim == 1:
            return a[None]
        if a.ndim > 2:  # the class axis last (a copy, which the contiguous rows need anyway)
            a = a.transpose((0,) + tuple(range(2, a.ndim)) + (1,))
        return a.reshape(-1, self.C)

    def layout(self, grad):
        """grad (M, C) back in the input's layout."""
        if len(self.shape) == 1:
            return grad[0]
        if len(self.shape) == 2:
            return grad
        N, C, *rest = self.shape
        grad = grad.reshape((N, *rest, C)).transpose(
            (0, len(self.shape) - 1) + tuple(range(1, len(self.shape) - 1))
        )
        return _dispatch.inputs(grad.dtype, grad)[0]


def cross_entropy(
    input: Array,
    target: Array,
    weight: Optional[Array] = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Array:
    """Cross-entropy of softmax(input) against class indices or class probabilities, as
    ``torch.nn.functional.cross_entropy`` computes it (stable log-softmax).

    Parameters
    ----------
    input : ndarray (N, C), (N, C, d1, d2, ...) or one sample (C,): logits.
    target : class indices, integers (N,), (N, d1, d2, ...) or () for (C,) input, each in
        [0, C) or equal to ignore_index; or class probabilities, floats of input's shape.
    weight : ndarray (C,) or None: a weight per class.
    ignore_index : int; targets equal to it add nothing, and 'mean' does not count them. Must be
        negative (unused) with probability targets.
    reduction : 'mean' (the default: the sum of the weighted losses divided by the sum of the
        weights of the targets not ignored, or by the number of samples N * d1 * ... for
        probability targets), 'sum' or 'none' (a loss per sample).
    label_smoothing : float in [0, 1]; the target becomes (1 - label_smoothing) times itself plus
        label_smoothing / C on every class (torch's formula, class weights included).

    Returns
    -------
    loss : a 0-d array ('mean', 'sum'; NaN for 'mean' when nothing is counted), or (N, d1, ...)
        ('none'; () for (C,) input); the dtype rule over input, weight and probability targets.
    """
    args = _Loss(input, target, weight, ignore_index, reduction, label_smoothing)
    be = _dispatch.backend(input=args.input, target=args.target, weight=args.weight)
    logits, target, weight = args.rows(args.dtype())
    loss = be.cross_entropy(
        logits, target, weight, args.ignore_index, args.reduction, args.label_smoothing
    )
    return loss.reshape(args.loss_shape) if args.reduction == "none" else loss


def _grad_out(grad_out, args, dtype):
    """grad_out of the loss's shape for 'none' -> (M,); else a real number (a Python float) or
    a 0-d CuPy or Dask array (kept on its device, lazy)."""
    if args.reduction == "none":
        grad_out = _arrays.as_array(grad_out, "grad_out")
        if tuple(grad_out.shape) != args.loss_shape:
            raise ValueError(
                f"grad_out must have the shape of the loss with reduction='none', "
                f"{args.loss_shape}, got {tuple(grad_out.shape)}"
            )
        return _dispatch.inputs(dtype, grad_out.reshape(-1))[0]
    if _compat.is_cupy_array(grad_out) or _compat.is_dask_array(grad_out):
        if grad_out.ndim != 0:
            raise ValueError(
                f"grad_out must be a scalar (the loss with reduction={args.reduction!r} is "
                f"0-d), got shape {tuple(grad_out.shape)}"
            )
        return _dispatch.inputs(dtype, grad_out)[0]
    return as_real(grad_out, "grad_out")


def cross_entropy_backward(
    grad_out: Array,
    input: Array,
    target: Array,
    weight: Optional[Array] = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Array:
    """Gradient of cross_entropy with respect to its input (the logits).

    Parameters
    ----------
    grad_out : the gradient of the final loss with respect to cross_entropy's result: a real
        number or 0-d array for 'mean' and 'sum', an array of the loss's shape (N, d1, ...) for
        'none'.
    input, target, weight, ignore_index, reduction, label_smoothing : as given to
        cross_entropy.

    Returns
    -------
    grad_input : ndarray of input's shape: softmax(input) * sum(q) - q per sample, q the
        (weighted, smoothed) target distribution, times grad_out (and divided by the mean's
        denominator); zero for ignored targets.
    """
    args = _Loss(input, target, weight, ignore_index, reduction, label_smoothing)
    arrays = dict(input=args.input, target=args.target, weight=args.weight)
    if args.reduction == "none":  # an array, computed with like the others
        grad_out = _arrays.as_array(grad_out, "grad_out")
        arrays["grad_out"] = grad_out
    elif _compat.is_cupy_array(grad_out) or _compat.is_dask_array(grad_out):
        arrays["grad_out"] = grad_out  # a 0-d array on the GPU, or lazy: it stays there
    be = _dispatch.backend(**arrays)
    dtype = args.dtype(grad_out=grad_out if args.reduction == "none" else None)
    scale = _grad_out(grad_out, args, dtype)
    logits, target, weight = args.rows(dtype)
    grad = be.cross_entropy_backward(
        scale, logits, target, weight, args.ignore_index, args.reduction, args.label_smoothing
    )
    return args.layout(grad)
