"""The one place fastconv imports CuPy.

Everything else asks this module: ``cupy`` is the module or ``None``; :func:`gpu_available`
says whether a CUDA device can be used; :func:`is_cupy_array` and :func:`array_module` look at
an array without importing CuPy themselves.
"""

from __future__ import annotations

import functools

import numpy

try:
    import cupy
except Exception as exc:  # not only ImportError: a broken CUDA install can fail in many ways
    cupy = None
    CUPY_IMPORT_ERROR: str | None = f"{type(exc).__name__}: {exc}"
else:
    CUPY_IMPORT_ERROR = None

INSTALL_HINT = (
    'install the CuPy wheel for your CUDA version: `pip install "fastconv[cuda12]"` (CUDA 12) or '
    '`pip install "fastconv[cuda13]"` (CUDA 13), i.e. cupy-cuda12x / cupy-cuda13x'
)


@functools.lru_cache(maxsize=None)
def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device. Cached; never raises."""
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, a driver too old for the runtime, no device: all "no GPU"
        return False


def is_cupy_array(a) -> bool:
    """True when ``a`` is a CuPy array (checked by its type's module, without importing CuPy)."""
    t = type(a)
    return t is not numpy.ndarray and t.__module__.startswith("cupy")  # ndarray: the hot path


def is_dask_array(a) -> bool:
    """True when ``a`` is a Dask array (checked by its type's module, without importing Dask)."""
    t = type(a)
    return t is not numpy.ndarray and t.__module__.startswith("dask.array")


def require_cupy():
    """Return the cupy module, or raise RuntimeError saying how to install it."""
    if cupy is None:
        detail = f" (importing cupy failed: {CUPY_IMPORT_ERROR})" if CUPY_IMPORT_ERROR else ""
        raise RuntimeError(f"fastconv's GPU backend needs CuPy{detail}; {INSTALL_HINT}")
    return cupy


def array_module(a):
    """``cupy`` for a CuPy array, else ``numpy``."""
    if type(a) is numpy.ndarray:  # the hot path
        return numpy
    if is_cupy_array(a):
        return require_cupy()
    return numpy


def to_numpy(a, copy=False):
    """A NumPy array of a NumPy or CuPy array (device to host for CuPy, which always copies);
    `copy` also copies a NumPy array (a state dict must not alias live buffers)."""
    if is_cupy_array(a):
        return a.get()
    return numpy.array(a, copy=True) if copy else numpy.asarray(a)
