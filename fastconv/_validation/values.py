"""Checks of scalar arguments: ints, (h, w) pairs, real numbers, shapes and the names the
public functions accept (gradients, fused activations, convolution algorithms)."""

import operator

import numpy as np


def shown(value):
    """`value` for an error message: an array by its shape and dtype (its repr could fill a
    screen), anything else by a repr cut to 120 characters."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"an array of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def as_int(value, name, minimum=None):
    """`value` as a Python int (NumPy integers accepted, bool and float refused)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def as_pair(value, name, minimum):
    """An int, a pair of ints, or one int in a 1-tuple (torch's form: what nn.Conv1d stores,
    and what torch expands for the 2-D ops) -> (h, w), each >= minimum."""
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            v = as_int(value[0], f"{name}[0]", minimum)
            return (v, v)
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {shown(value)}")
        return tuple(as_int(v, f"{name}[{i}]", minimum) for i, v in enumerate(value))
    v = as_int(value, name, minimum)
    return (v, v)


def as_single(value, name, minimum):
    """An int, or one int in a 1-tuple (torch's nn.Conv1d stores stride=(2,)), -> int."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:  # a type error, as any other non-int was before 1-tuples were taken
            raise TypeError(f"{name} must be an int or a 1-tuple (n,), got {shown(value)}")
        return as_int(value[0], f"{name}[0]", minimum)
    return as_int(value, name, minimum)


def plain(value):
    """Whether `value` is None, a str, an int or (nested) tuples of these, exactly: the argument
    forms a cache of validated calls may key on (True == 1 and 2.0 == 2 hash alike, but only
    ints are valid)."""
    if type(value) is not tuple:
        return type(value) is int or type(value) is str or value is None
    for v in value:  # a loop, not all(...): called on every call of some ops
        kind = type(v)
        if not (kind is int or kind is str or v is None or (kind is tuple and plain(v))):
            return False
    return True


def as_real(value, name):
    """`value` (a Python or NumPy real number, or a 0-d real array) as a Python float."""
    a = value if hasattr(value, "dtype") else np.asarray(value)
    if isinstance(value, bool) or a.dtype.kind not in "iuf" or a.ndim != 0:
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {shown(value)}")
    return float(value)


NEEDS = ("input", "weight", "bias")


def as_needs(needs, name="needs"):
    """A name or an iterable of names from NEEDS -> a set (what a backward pass computes)."""
    if isinstance(needs, str):
        needs = (needs,)
    try:
        needs = tuple(needs)
    except TypeError:
        raise TypeError(
            f"{name} must be a tuple of names from {NEEDS}, got {type(needs).__name__}"
        ) from None
    unknown = [n for n in needs if not isinstance(n, str) or n not in NEEDS]
    if unknown:
        raise ValueError(f"{name} must name gradients from {NEEDS}, got unknown {unknown!r}")
    return set(needs)


# Activations the kernels fuse into a convolution or dense layer.
FUSED_ACTIVATIONS = (None, "relu")


def as_activation(value, name="activation"):
    """`value` checked to be one of FUSED_ACTIVATIONS."""
    if not (value is None or isinstance(value, str)) or value not in FUSED_ACTIVATIONS:
        raise ValueError(f"{name} must be None or 'relu', got {shown(value)}")
    return value


# Convolution algorithms by name; "auto" lets the backend's planner choose (fastconv._backend.cpu.planner
# describes each).
CONV_ALGORITHMS = ("auto", "gemm", "direct", "depthwise", "matmul", "winograd", "fft")


def as_algorithm(value, name="algorithm"):
    """`value` checked to be one of CONV_ALGORITHMS."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str from {CONV_ALGORITHMS}, got {type(value).__name__}")
    if value not in CONV_ALGORITHMS:
        raise ValueError(f"{name} must be one of {CONV_ALGORITHMS}, got {shown(value)}")
    return value


def as_shape(shape, name, ndim):
    """A tuple of `ndim` non-negative ints."""
    if not isinstance(shape, (tuple, list)) or len(shape) != ndim:
        hint = " (pass the array's .shape)" if hasattr(shape, "shape") else ""
        raise ValueError(f"{name} must be a tuple of {ndim} ints, got {shown(shape)}{hint}")
    return tuple(as_int(v, f"{name}[{i}]", 0) for i, v in enumerate(shape))


# How a loss reduces its per-sample values (torch's names).
REDUCTIONS = ("none", "mean", "sum")


def as_reduction(value, name="reduction"):
    """`value` checked to be one of REDUCTIONS."""
    if not isinstance(value, str) or value not in REDUCTIONS:
        raise ValueError(f"{name} must be one of {REDUCTIONS}, got {shown(value)}")
    return value


def as_fraction(value, name):
    """A real number in [0, 1] (label smoothing), as a Python float."""
    value = as_real(value, name)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value
