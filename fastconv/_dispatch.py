"""The one dispatcher: which backend computes a call, in which dtype, on which arrays.

A public op validates its arguments, then asks here:

    be = _dispatch.backend(x=x, weight=weight, bias=bias)             # by the array types
    dtype = _dispatch.dtype(x=x, weight=weight, bias=bias)            # the dtype rule
    x, weight, bias = _dispatch.inputs(dtype, x, weight, bias)        # C-contiguous, once
    out = _dispatch.output(be, out, shape, dtype, x=x, weight=weight) # a checked out=, or None
    return be.conv2d(x, weight, bias, geom, relu, algorithm, out)

NumPy arrays go to the CPU backend, CuPy arrays to the GPU backend, and a call with any Dask
array to the Dask backend (which runs the others on its blocks); the three have the same array
interface (fastconv._backend.ARRAY_OPS). The dtype rule is fastconv._validation.arrays'.

Validation is a pure function of a call's array types, shapes, dtypes and layouts and of its
other arguments. Code embedding fastconv makes many small calls with the same few of those, so an
op may remember what validation gave for a call's `signature` in a `Memo` and skip it next time:

    key = _dispatch.signature((x, weight, bias), (stride, padding, ...))  # None: validate
    known = _CONV2D_SEEN.get(key)               # a _dispatch.Memo: (be, geom) seen before
    ...                                         # else validate as above, then
    _CONV2D_SEEN.remember(key, (be, geom))
"""

import numpy as np

from . import _compat
from ._backend import eager as _eager
from ._validation import arrays as _arrays
from ._validation import plain
from ._validation.memo import Memo  # noqa: F401  (the ops' memos of validated calls)

_BACKENDS: dict = {}  # "cpu" / "gpu" / "dask" -> the backend, made on first use


def _get(name):
    be = _BACKENDS.get(name)
    if be is None:
        if name == "dask":
            from ._backend.dask.ops import Dask

            be = Dask()
        else:
            be = _eager.cpu() if name == "cpu" else _eager.gpu()
        _BACKENDS[name] = be
    return be


def backend(**arrays):
    """The backend for a call on these arrays (None values ignored). Mixing NumPy and CuPy
    arrays raises TypeError naming the arguments."""
    for a in arrays.values():  # the hot path: NumPy arrays only (no generator: called per op)
        if a is not None and type(a) is not np.ndarray:
            break
    else:
        return _BACKENDS.get("cpu") or _get("cpu")
    given = {name: a for name, a in arrays.items() if a is not None}
    if any(_compat.is_dask_array(a) for a in given.values()):
        return _get("dask")
    on_gpu = {name: _compat.is_cupy_array(a) for name, a in given.items()}
    if any(on_gpu.values()):
        if not all(on_gpu.values()):
            cpu = [name for name, g in on_gpu.items() if not g]
            gpu = [name for name, g in on_gpu.items() if g]
            raise TypeError(
                f"cannot mix NumPy and CuPy arrays: {', '.join(gpu)} on the GPU but "
                f"{', '.join(cpu)} not; move them with cupy.asarray / cupy.asnumpy"
            )
        return _get("gpu")
    return _get("cpu")


# The dtype rule (float32 and float64 as they are, float16 as float32, integers as float64;
# TypeError naming the argument otherwise) over the arrays a call computes with.
dtype = _arrays.compute_dtype


def device(name):
    """The kernel backend of "cpu" or "gpu", for questions about shapes (plans)."""
    if name not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {name!r}")
    return _get(name).kernels


def inputs(dtype, *arrays):
    """The arrays C-contiguous in `dtype` (None kept), each copied at most once; a Dask array
    stays lazy (its blocks are made contiguous where they run)."""
    contiguous = _arrays.contiguous
    return [None if a is None else contiguous(a, dtype) for a in arrays]


def output(be, out, shape, dtype, may_be=None, **inputs):
    """`out` checked to take a result of `shape` and `dtype` (not overlapping `inputs`, except
    that it may be the input `may_be` itself), or None when not given. A lazy result has no
    out=."""
    if out is None:
        return None
    if be is _BACKENDS.get("dask"):
        raise TypeError("out= cannot be used with Dask arrays (the result is lazy)")
    return _arrays.check_out(out, shape, dtype, inputs, may_be=may_be)


def outputs(be, out, specs, **inputs):
    """`out` of an op with several results checked (see _validation.arrays.check_outs: a tuple,
    one entry per (name, shape, dtype) of `specs`, None entries allocated), or None when not
    given. A lazy result has no out=."""
    if out is None:
        return None
    if be is _BACKENDS.get("dask"):
        raise TypeError("out= cannot be used with Dask arrays (the result is lazy)")
    return _arrays.check_outs(out, specs, inputs)


def signature(arrays, arguments):
    """The key of a call on `arrays` with the other `arguments` for a Memo, or None (validate in
    full): (shapes, dtype, arguments) where every array (None kept as None) is a C-contiguous
    NumPy ndarray of one dtype, float32 or float64 (the CPU backend, no copy, no cast), and the
    arguments are plain (ints, strs, None, tuples of them: values equal only to values of their
    own validity)."""
    key = []
    dtype = None
    for a in arrays:
        if a is None:
            key.append(None)
            continue
        if type(a) is not np.ndarray or not a.flags.c_contiguous:
            return None
        kind = a.dtype
        if dtype is None:
            dtype = kind
        elif kind is not dtype and kind != dtype:  # `is`: NumPy's dtypes of its float types
            return None
        key.append(a.shape)
    if dtype not in _arrays.NATIVE_FLOATS or not plain(arguments):
        return None
    key.append(dtype)
    key.append(arguments)
    return tuple(key)
