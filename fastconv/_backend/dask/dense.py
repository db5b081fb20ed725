"""Dense ops, the elementwise ops and the loss over Dask arrays (cut along N)."""

import numpy as np

from ... import _compat
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
    return _eager(a).linear(a_t, b_t, None, False)


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
        gi = rows("linear", grad_out, weight_t, None, out_cols=x.shape[1], relu=False)
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


def elementwise(op, first, *others):
    """A backend's elementwise `op` over aligned blocks of same-shaped arrays."""
    first = _as_dask(first)
    others = [_as_dask(o).rechunk(first.chunks) for o in others]
    return first.map_blocks(
        _in_task(_block_op),
        *others,
        op=op,
        kwargs={},
        dtype=first.dtype,
        meta=_meta(first, first.dtype, first.ndim),
    )


def _labels_like(labels, rows_of):
    """labels (N,) as an (N, 1) column chunked like the rows of `rows_of` (map_blocks aligns
    the trailing axes of arrays of different ndim, not the rows)."""
    return _as_dask(labels).rechunk((rows_of.chunks[0],))[:, None]


def _log_probs(z, labels):
    z, labels = _contiguous(z, labels[:, 0])
    return _eager(z).softmax_cross_entropy(z, labels)[1]


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
    return _eager(log_probs).softmax_cross_entropy_backward(log_probs, labels, scale)


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
