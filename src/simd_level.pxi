# The run-time SIMD level of a module of SIMD kernels (textually included: each module keeps its
# own level, so tests can force one module's kernels without touching the others'), and the
# lookup behind a module's other test switches. The including module declares fc_simd_level()
# from simd.h.
cdef int _detected = fc_simd_level()
cdef int _level = _detected


def level():
    """The instruction set this module's kernels run with: 2 AVX-512, 1 AVX2 + FMA, 0 baseline."""
    return _level


def detected_level():
    """The best instruction set this CPU supports (what level() is unless set_level changed it)."""
    return _detected


def set_level(int value):
    """Run the kernels compiled for `value` (<= detected_level()); for tests. Returns the old one."""
    global _level
    if not 0 <= value <= _detected:
        raise ValueError(f"level must be in [0, {_detected}] on this CPU, got {value}")
    previous = _level
    _level = value
    return previous


cdef inline int _switch_index(str name, tuple names) except -1:
    """The position of `name` among a test switch's settings `names` (ValueError naming them)."""
    if name not in names:
        raise ValueError(f"name must be one of {names}, got {name!r}")
    return names.index(name)
