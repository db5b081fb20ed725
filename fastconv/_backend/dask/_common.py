"""Shared pieces of the Dask backend: the block backends, threads per task, chunk geometry."""

import os
import threading

import numpy as np

from ... import _compat
from ..._validation import arrays as _arrays
from ..cpu import threads as _threads


def _import_dask():
    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - only a Dask array without dask.array
        raise ImportError(
            'fastconv on Dask arrays needs dask[array]: pip install "fastconv[dask]"'
        ) from exc
    return da


def _eager(block):
    """The in-memory backend that computes a block: CPU for NumPy, GPU for CuPy."""
    from .. import eager

    device = "gpu" if _compat.is_cupy_array(block) else "cpu"
    be = _EAGER.get(device)
    if be is None:
        be = _EAGER[device] = eager.cpu() if device == "cpu" else eager.gpu()
    return be


_EAGER: dict = {}


def _contiguous(*blocks):
    """Blocks (slices of chunks) C-contiguous, as the eager backend takes them; None kept."""
    return tuple(None if b is None else _arrays.contiguous(b, b.dtype) for b in blocks)


def _concrete(a):
    """A small operand (weight, bias, labels) in memory."""
    return a.compute() if _compat.is_dask_array(a) else a


def _meta(like, dtype, ndim):
    """An empty array of `like`'s type (NumPy or CuPy) with this dtype and ndim."""
    meta = getattr(like, "_meta", like)
    return np.empty_like(meta, shape=(0,) * ndim, dtype=dtype)


# ------------------------------------------------------------------------------ threads


def _task_threads():
    """fastconv threads for one Dask task, so that tasks x threads stays within the cores:
    a distributed worker's share (its process has OMP_NUM_THREADS=1 by Dask's default), the
    threaded scheduler's share of its pool, or all of them in the synchronous scheduler."""
    total = _threads.get_num_threads()
    try:
        from distributed import get_worker

        return max(1, total // max(1, get_worker().state.nthreads))
    except Exception:  # not in a distributed worker
        pass
    if threading.current_thread() is threading.main_thread():
        return total
    import dask

    pool = dask.config.get("num_workers", None) or os.cpu_count() or 1
    return max(1, total // pool)


def _in_task(fn):
    """`fn` run with the thread count of the task it runs in."""

    def run(*args, **kwargs):
        with _threads.limited(_task_threads()):
            return fn(*args, **kwargs)

    return run


# --------------------------------------------------------------------------- geometry


def _bounds(chunks):
    """Chunk sizes -> boundaries [0, c0, c0 + c1, ..., size]."""
    out = [0]
    for c in chunks:
        out.append(out[-1] + c)
    return out


def _out_ranges(in_chunks, OUT, stride, pad_before):
    """Output index ranges [o0, o1), one per input chunk: the outputs whose windows start in it."""
    starts = {0, OUT}
    for b in _bounds(in_chunks)[1:-1]:
        starts.add(min(OUT, max(0, -(-(b + pad_before) // stride))))
    starts = sorted(starts)
    return [(a, b) for a, b in zip(starts, starts[1:]) if b > a]


def _window(o0, o1, stride, pad_before, K, dilation, size):
    """Input rows [r0, r1) that outputs o0..o1-1 read, clipped to [a0, a1) in the image, and
    the padding before/after the clip."""
    r0 = o0 * stride - pad_before
    r1 = (o1 - 1) * stride - pad_before + (K - 1) * dilation + 1
    a0, a1 = max(r0, 0), min(r1, size)
    return r0, r1, a0, a1


def _tree_sum(parts):
    while len(parts) > 1:
        parts = [
            parts[i] + parts[i + 1] if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    return parts[0]


def _as_dask(a, like_chunks=None):
    da = _import_dask()
    if _compat.is_dask_array(a):
        return a
    return da.from_array(a, chunks=like_chunks or a.shape)
