"""Array checks shared by the public functions: the dtype rule, layout, out=.

The dtype rule: float32 and float64 are computed natively. Otherwise the inputs' dtypes combine by
NumPy's promotion (np.result_type); float16 is computed and returned as float32; all-integer or bool
inputs give float64. Complex, object, string and other dtypes raise TypeError.
"""

import numpy as np

from .. import _compat

NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))  # computed as they are


def _c_may_share_memory():
    """NumPy's C may_share_memory, without the __array_function__ dispatch of
    np.may_share_memory (172 against 460 ns a call; check_out's hot path asks it for every
    input of every call with out=): NumPy 2's numpy._core, 1.x's numpy.core."""
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            return __import__(module, fromlist=["may_share_memory"]).may_share_memory
        except (ImportError, AttributeError):
            continue
    return np.may_share_memory


_may_share_memory = _c_may_share_memory()


def as_array(a, name, ndim=None):
    """`a` as an ndarray (NumPy or CuPy), checking ndim; array-likes become NumPy arrays."""
    if not hasattr(a, "dtype") or not hasattr(a, "shape"):
        try:
            a = np.asarray(a)
        except Exception as exc:
            raise TypeError(f"{name} must be an array, got {type(a).__name__}") from exc
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got {a.ndim}-D with shape {tuple(a.shape)}")
    return a


def compute_dtype(**arrays):
    """The dtype the computation runs in (see the module docstring), None values ignored."""
    first = None
    for a in arrays.values():  # the hot path: one native float dtype (a loop: called per op)
        if a is not None:
            if first is None:
                first = a.dtype
            elif a.dtype != first:
                break
    else:
        if first in NATIVE_FLOATS:
            return first
    dtypes = []
    for name, a in arrays.items():
        if a is None:
            continue
        dt = np.dtype(a.dtype)
        if dt.kind not in "biuf" or dt.itemsize > 8:
            raise TypeError(
                f"{name} must have a real dtype (float32 or float64 are computed "
                f"natively), got {dt}"
            )
        dtypes.append(dt)
    dt = np.result_type(*dtypes)
    if dt.kind in "biu":
        return np.dtype(np.float64)
    if dt == np.float16:
        return np.dtype(np.float32)
    return dt


def contiguous(a, dtype):
    """C-contiguous `a` of `dtype`, copied at most once (cast and layout in the same copy)."""
    if type(a) is np.ndarray and a.dtype == dtype and a.flags.c_contiguous:  # the hot path
        return a
    if _compat.is_dask_array(a):  # stays lazy: each block is made contiguous where it runs
        return a.astype(dtype, copy=False)
    xp = _compat.array_module(a)
    return xp.ascontiguousarray(a, dtype=dtype)


def check_out(out, shape, dtype, inputs, name="out", may_be=None):
    """Validate a user-provided output array; `inputs` maps names to arrays it must not overlap
    (except `may_be`, an input that `out` may be itself: an elementwise op written in place)."""
    if (  # the hot path (a training step's buffers): a fitting NumPy array, NumPy inputs
        type(out) is np.ndarray
        and out.shape == shape
        and out.dtype == dtype
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        for other in inputs.values():
            if other is None or (out is other and other is may_be):
                continue
            if type(other) is not np.ndarray:
                break
            if _may_share_memory(out, other) and np.shares_memory(out, other):
                break  # the full check below names the input
        else:
            return out
    if not hasattr(out, "dtype") or not hasattr(out, "flags"):
        raise TypeError(f"{name} must be an array, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(out.shape)}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not getattr(out.flags, "writeable", True):
        raise ValueError(f"{name} must be writeable")
    xp = _compat.array_module(out)
    for other_name, other in inputs.items():
        if other is None or (out is other and other is may_be):
            continue
        if _compat.array_module(other) is xp and xp.shares_memory(out, other):
            raise ValueError(f"{name} must not share memory with {other_name}")
    return out


def check_outs(outs, specs, inputs):
    """Validate ``out=`` of an op with several results: a tuple with one entry per result, each
    None (allocate it) or an array checked as check_out does against its ``(name, shape,
    dtype)`` in `specs` (a spec of None: the result is not computed, its entry must be None);
    no entry may overlap `inputs` (names -> arrays) or another entry. Returns the tuple."""
    if not isinstance(outs, tuple) or len(outs) != len(specs):
        raise TypeError(
            f"out must be a tuple of {len(specs)} arrays or None "
            f"({', '.join(spec[0] if spec else 'None' for spec in specs)}), got "
            f"{type(outs).__name__}" + (f" of {len(outs)}" if isinstance(outs, tuple) else "")
        )
    others = dict(inputs)
    for i, (o, spec) in enumerate(zip(outs, specs)):
        if o is None:
            continue
        if spec is None:
            raise ValueError(f"out[{i}] must be None: that result is not computed (see needs)")
        result, shape, dtype = spec
        check_out(o, shape, dtype, others, name=f"out[{i}] ({result})")
        others[f"out[{i}]"] = o
    return outs
