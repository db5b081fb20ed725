"""The only place that imports CuPy: optional, and never required to import fastconv."""
import functools

import numpy as np

try:
    import cupy
except Exception:  # not installed, or installed without a usable CUDA runtime
    cupy = None


def is_cupy_array(a):
    """True for a CuPy ndarray; never imports CuPy."""
    return type(a).__module__.startswith("cupy")


def array_module(a):
    """numpy or cupy, whichever `a` belongs to."""
    return cupy if (cupy is not None and is_cupy_array(a)) else np


@functools.lru_cache(maxsize=None)
def gpu_available():
    """CuPy importable and at least one CUDA device visible; never raises."""
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False
