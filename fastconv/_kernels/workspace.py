"""Scratch buffers for the CPU kernels, kept per Python thread and reused across calls.

Reuse matters: glibc hands large freed blocks back to the OS, and a fresh buffer on every call
page-faults all over again. One buffer per calling thread keeps concurrent calls apart.
"""

import threading
from typing import Any, Dict

import numpy as np

# Buffers above this size are not kept: a one-off huge call should not pin its memory for good.
_KEEP_BYTES = 64 * 2**20


class _Local(threading.local):
    buffers = None  # this Python thread's {dtype: buffer} (a class default: no AttributeError)


_local = _Local()
# The dtype arguments the kernels pass ("float32", np.float64, ...) to their dtypes: np.dtype of
# a string took ~0.25 us, a tenth of a small kernel call's time outside its loops.
_DTYPES: Dict[Any, np.dtype] = {}
for _name in ("float32", "float64"):
    for _key in (_name, np.dtype(_name), np.dtype(_name).type):
        _DTYPES[_key] = np.dtype(_name)
# Buffers start on a cache line: NumPy's large arrays start 16 bytes past one, which splits every
# 64-byte vector load across two lines (a 1x1 convolution's SIMD GEMM: 9.7 -> 11.8 ms).
ALIGN = 64


def aligned_empty(shape, dtype):
    """np.empty(shape, dtype) starting on an ALIGN-byte boundary."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(count * dtype.itemsize + ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + count * dtype.itemsize].view(dtype).reshape(shape)


def aligned_zeros(shape, dtype):
    """np.zeros(shape, dtype) starting on an ALIGN-byte boundary."""
    out = aligned_empty(shape, dtype)
    out.fill(0)
    return out


def get_workspace(dtype, size):
    """A 1-D array of at least `size` elements of `dtype`, ALIGN-byte aligned; contents are
    garbage."""
    known = _DTYPES.get(dtype)  # (not `or`: a dtype without fields is falsy)
    dtype = np.dtype(dtype) if known is None else known
    cache = _local.buffers
    if cache is None:
        cache = _local.buffers = {}
    buf = cache.get(dtype)
    if buf is not None and buf.size >= size:
        return buf
    buf = aligned_empty(max(int(size), 1), dtype)
    if buf.nbytes <= _KEEP_BYTES:
        cache[dtype] = buf
    return buf


def release_workspace():
    """Free the calling thread's cached scratch buffers."""
    _local.buffers = {}
