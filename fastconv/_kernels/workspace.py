"""Scratch buffers for the CPU kernels, kept per Python thread and reused across calls.

Reuse matters: glibc hands large freed blocks back to the OS, and a fresh buffer on every call
page-faults all over again. One buffer per calling thread keeps concurrent calls apart.
"""

import threading

import numpy as np

# Buffers above this size are not kept: a one-off huge call should not pin its memory for good.
_KEEP_BYTES = 64 * 2**20
_local = threading.local()


def get_workspace(dtype, size):
    """A 1-D array of at least `size` elements of `dtype`; contents are garbage."""
    dtype = np.dtype(dtype)
    cache = getattr(_local, "buffers", None)
    if cache is None:
        cache = _local.buffers = {}
    buf = cache.get(dtype)
    if buf is not None and buf.size >= size:
        return buf
    buf = np.empty(max(int(size), 1), dtype=dtype)
    if buf.nbytes <= _KEEP_BYTES:
        cache[dtype] = buf
    return buf


def release_workspace():
    """Free the calling thread's cached scratch buffers."""
    _local.buffers = {}
