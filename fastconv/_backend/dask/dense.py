"""Dense ops, ReLU's gradient and the loss over Dask arrays (cut along N)."""

import numpy as np

from ... import _compat
from ..._validation import as_needs
from ._common import _as_dask, _concrete, _import_dask, _in_task, _meta, _tree_sum


def rows(fn, x, *operands, out_cols, dtype, **kwargs):
    """`fn(x_block, *operands)` over row chunks of a 2-D Dask x (features in one chunk)."""
    x = _as_dask(x).rechunk({1: -1})
    operands = [_concrete(o) for o in operands]
    return x.map_blocks(
        _in_task(fn),
        *operands,
        chunks=(x.chunks[0], (out_cols,)),
        dtype=dtype,
        meta=_meta(x, dtype, 2),
        **kwargs,
    )


def _linear_t(a, b):
    """a.T @ b for a block pair (a (N, OUT), b (N, IN) -> (OUT, IN)): linear(a.T, b.T)."""
    from ... import ops

    return ops.linear(a.T, b.T)


def linear_backward(grad_out, x, weight, needs):
    """Lazy linear gradients: grad_input by row chunks, grad_weight and grad_bias as sums."""
    da = _import_dask()
    from ... import ops
    from ..._validation import arrays as _arrays

    needs = as_needs(needs)
    weight = _concrete(weight)
    x = _as_dask(x).rechunk({1: -1})
    grad_out = _as_dask(grad_out).rechunk((x.chunks[0], -1))
    dtype = _arrays.compute_dtype(grad_out=grad_out, x=x, weight=weight)
    gi = gw = gb = None
    if "input" in needs:  # grad_out @ weight = linear(grad_out, weight.T)
        gi = rows(ops.linear, grad_out, weight.T, out_cols=x.shape[1], dtype=dtype)
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
        gb = grad_out.astype(dtype).sum(axis=0)
    return gi, gw, gb


def elementwise(fn, first, *others, dtype):
    """`fn` over aligned blocks of same-shaped arrays."""
    first = _as_dask(first)
    others = [_as_dask(o).rechunk(first.chunks) for o in others]
    return first.map_blocks(
        _in_task(fn), *others, dtype=dtype, meta=_meta(first, dtype, first.ndim)
    )


def _labels_like(labels, rows_of):
    """labels (N,) as an (N, 1) column chunked like the rows of `rows_of` (map_blocks aligns
    the trailing axes of arrays of different ndim, not the rows)."""
    return _as_dask(labels).rechunk((rows_of.chunks[0],))[:, None]


def _log_probs(z, labels, fn):
    return fn(z, labels[:, 0])[1]


def _row_losses(log_probs, labels):
    xp = _compat.array_module(log_probs)
    return -xp.take_along_axis(log_probs, labels.astype(np.int64), axis=1)[:, 0]


def softmax_cross_entropy(fn, logits, labels, dtype):
    """Lazy (mean loss, log_probs) of `fn` (softmax_cross_entropy) by row chunks."""
    logits = _as_dask(logits).rechunk({1: -1})
    labels = _labels_like(labels, logits)
    log_probs = logits.map_blocks(
        _in_task(_log_probs), labels, fn=fn, dtype=dtype, meta=_meta(logits, dtype, 2)
    )
    losses = log_probs.map_blocks(
        _row_losses, labels, drop_axis=1, dtype=dtype, meta=_meta(logits, dtype, 1)
    )
    return losses.mean(), log_probs


def _scaled_backward(log_probs, labels, fn, grad_loss, N):
    # fn divides by the block's rows: scale to the batch's N.
    return fn(log_probs, labels[:, 0], grad_loss * log_probs.shape[0] / N)


def softmax_cross_entropy_backward(fn, log_probs, labels, grad_loss, dtype):
    """Lazy grad_logits of `fn` (softmax_cross_entropy_backward) by row chunks."""
    log_probs = _as_dask(log_probs).rechunk({1: -1})
    labels = _labels_like(labels, log_probs)
    return log_probs.map_blocks(
        _in_task(_scaled_backward),
        labels,
        fn=fn,
        grad_loss=grad_loss,
        N=log_probs.shape[0],
        dtype=dtype,
        meta=_meta(log_probs, dtype, 2),
    )
