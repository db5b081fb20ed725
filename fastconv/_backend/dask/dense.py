"""Dense ops, the elementwise ops and the losses over Dask arrays (cut along N)."""

import numpy as np

from ... import _compat
from .. import losses as _losses
from ._common import (
    _as_dask,
    _concrete,
    _contiguous,
    _eager,
    _import_dask,
    _in_task,
    _meta,
    _tree_sum,
)


def _block_op(block, *operands, op, kwargs):
    blocks = _contiguous(block, *operands)
    return getattr(_eager(block), op)(*blocks, **kwargs)


def rows(op, x, *operands, out_cols, **kwargs):
    """A backend's `op(x_block, *operands, **kwargs)` over row chunks of a 2-D Dask x (features
    in one chunk); operands in memory."""
    x = _as_dask(x).rechunk({1: -1})
    operands = [_concrete(o) for o in operands]
    return x.map_blocks(
        _in_task(_block_op),
        *operands,
        op=op,
        kwargs=kwargs,
        chunks=(x.chunks[0], (out_cols,)),
        dtype=x.dtype,
        meta=_meta(x, x.dtype, 2),
    )


def _linear_t(a, b):
    """a.T @ b for a block pair (a (N, OUT), b (N, IN) -> (OUT, IN)): linear(a.T, b.T)."""
    a_t, b_t = _contiguous(a.T, b.T)
    return _eager(a).linear(a_t, b_t, None, False, None)


def linear_backward(grad_out, x, weight, needs):
    """Lazy linear gradients: grad_input by row chunks, grad_weight and grad_bias as sums."""
    da = _import_dask()
    weight = _concrete(weight)
    x = _as_dask(x).rechunk({1: -1})
    grad_out = _as_dask(grad_out).rechunk((x.chunks[0], -1))
    dtype = grad_out.dtype
    gi = gw = gb = None
    if "input" in needs:  # grad_out @ weight = linear(grad_out, weight.T)
        weight_t = _compat.array_module(weight).ascontiguousarray(weight.T)
        gi = rows("linear", grad_out, weight_t, None, out_cols=x.shape[1], relu=False, out=None)
    if "weight" in needs:
        run = _in_task(_linear_t)
        parts = [
            da.map_blocks(
                run,
                grad_out.blocks[i],
                x.blocks[i],
                chunks=weight.shape,
                dtype=dtype,
                meta=_meta(x, dtype, 2),
            )
            for i in range(len(x.chunks[0]))
        ]
        gw = _tree_sum(parts)
    if "bias" in needs:
        gb = grad_out.sum(axis=0)
    return gi, gw, gb


def elementwise(op, first, *others, **kwargs):
    """A backend's elementwise `op` over aligned blocks of same-shaped arrays."""
    first = _as_dask(first)
    others = [_as_dask(o).rechunk(first.chunks) for o in others]
    return first.map_blocks(
        _in_task(_block_op),
        *others,
        op=op,
        kwargs=kwargs,
        dtype=first.dtype,
        meta=_meta(first, first.dtype, first.ndim),
    )


def _labels_like(labels, rows_of):
    """labels (N,) as an (N, 1) column chunked like the rows of `rows_of` (map_blocks aligns
    the trailing axes of arrays of different ndim, not the rows)."""
    return _as_dask(labels).rechunk((rows_of.chunks[0],))[:, None]


def _log_probs(z, labels):
    z, labels = _contiguous(z, labels[:, 0])
    return _eager(z).softmax_cross_entropy(z, labels, None)[1]


def _row_losses(log_probs, labels):
    xp = _compat.array_module(log_probs)
    return -xp.take_along_axis(log_probs, labels.astype(np.int64), axis=1)[:, 0]


def softmax_cross_entropy(logits, labels):
    """Lazy (mean loss, log_probs) by row chunks."""
    logits = _as_dask(logits).rechunk({1: -1})
    labels = _labels_like(labels, logits)
    dtype = logits.dtype
    log_probs = logits.map_blocks(
        _in_task(_log_probs), labels, dtype=dtype, meta=_meta(logits, dtype, 2)
    )
    losses = log_probs.map_blocks(
        _row_losses, labels, drop_axis=1, dtype=dtype, meta=_meta(logits, dtype, 1)
    )
    return losses.mean(), log_probs


def _scaled_backward(log_probs, labels, grad_loss, N):
    # the backend divides by the block's rows: scale to the batch's N
    log_probs, labels = _contiguous(log_probs, labels[:, 0])
    scale = grad_loss * log_probs.shape[0] / N
    return _eager(log_probs).softmax_cross_entropy_backward(log_probs, labels, scale, None)


def softmax_cross_entropy_backward(log_probs, labels, grad_loss):
    """Lazy grad_logits by row chunks."""
    log_probs = _as_dask(log_probs).rechunk({1: -1})
    labels = _labels_like(labels, log_probs)
    return log_probs.map_blocks(
        _in_task(_scaled_backward),
        labels,
        grad_loss=grad_loss,
        N=log_probs.shape[0],
        dtype=log_probs.dtype,
        meta=_meta(log_probs, log_probs.dtype, 2),
    )


# ---------------------------------------------------------- cross-entropy (torch's options)
def _targets(target, logits, probs):
    """Class indices as an (M, 1) column, probabilities (M, C), chunked like logits' rows."""
    if probs:
        return _as_dask(target).rechunk(logits.chunks)
    return _labels_like(target, logits)


def _block_losses(logits, target, probs, weight, ignore_index, label_smoothing):
    logits, target = _contiguous(logits, target if probs else target[:, 0])
    return _eager(logits).cross_entropy(
        logits, target, weight, ignore_index, "none", label_smoothing
    )


def _block_weights(target, weight, ignore_index, C, weights_dtype):
    target = _contiguous(target[:, 0])[0]
    xp = _compat.array_module(target)
    return _losses.target_weights(xp, target, weight, ignore_index, C, weights_dtype)[2]


def _count(target, probs, weight, ignore_index, C, dtype):
    """The denominator of 'mean' (fastconv._backend.losses.denominator), lazily."""
    if probs:
        return target.shape[0]
    weights = target.map_blocks(
        _block_weights,
        weight=weight,
        ignore_index=ignore_index,
        C=C,
        weights_dtype=dtype,  # (map_blocks takes `dtype` for itself)
        dtype=dtype,
        drop_axis=1,
        meta=_meta(target, dtype, 1),
    )
    return weights.sum()


def cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing):
    """Lazy losses by row chunks; their sum or mean (a tree sum) for the reductions."""
    logits = _as_dask(logits).rechunk({1: -1})
    probs = target.ndim == 2
    target = _targets(target, logits, probs)
    weight = _concrete(weight)
    dtype = logits.dtype
    losses = logits.map_blocks(
        _in_task(_block_losses),
        target,
        probs=probs,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        drop_axis=1,
        dtype=dtype,
        meta=_meta(logits, dtype, 1),
    )
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    count = _count(target, probs, weight, ignore_index, logits.shape[1], dtype)
    return _divide(total, count)


def _ratio(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):  # nothing counted: NaN, as torch
        return a / b


def _divide(a, b):
    """a / b of a 0-d Dask array and a count (0-d Dask or int), lazily, without NumPy's
    warning for 0 / 0."""
    da = _import_dask()
    return da.map_blocks(_ratio, a, b, dtype=a.dtype, meta=_meta(a, a.dtype, 0))


def _block_grad(logits, target, scale, probs, weight, ignore_index, label_smoothing):
    logits, target = _contiguous(logits, target if probs else target[:, 0])
    # a row chunk's multipliers (a column), or the one for all rows (a 0-d block)
    scale = scale[:, 0] if scale.ndim else float(scale)
    return _eager(logits).cross_entropy_backward(
        scale, logits, target, weight, ignore_index, "none", label_smoothing
    )


def cross_entropy_backward(
    grad_out, logits, target, weight, ignore_index, reduction, label_smoothing
):
    """Lazy grad_logits by row chunks; 'mean' divides by its lazy denominator."""
    da = _import_dask()
    logits = _as_dask(logits).rechunk({1: -1})
    probs = target.ndim == 2
    target = _targets(target, logits, probs)
    weight = _concrete(weight)
    dtype = logits.dtype
    if reduction == "none":
        scale = _labels_like(grad_out, logits)
    else:
        scale = grad_out if _compat.is_dask_array(grad_out) else da.asarray(grad_out, dtype=dtype)
        if reduction == "mean":
            scale = _divide(
                scale, _count(target, probs, weight, ignore_index, logits.shape[1], dtype)
            )
    return logits.map_blocks(
        _in_task(_block_grad),
        target,
        scale,
        probs=probs,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        dtype=dtype,
        meta=_meta(logits, dtype, 2),
    )
