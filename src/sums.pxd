# Sums of contiguous runs in double, with eight interleaved partial sums: one running sum is a
# chain of dependent adds (4 cycles each on current x86), eight keep the adder busy. The order is
# fixed by the run's length alone, so results do not depend on threads.
from libc.stdint cimport uint32_t, uint64_t

from _types cimport real


cdef inline double run_sum(const real* p, Py_ssize_t n) noexcept nogil:
    """p[0] + ... + p[n - 1] in double: lanes j % 8, then ((0+1)+(2+3))+((4+5)+(6+7))."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0
    cdef Py_ssize_t j
    for j in range(0, n - 7, 8):
        s0 = s0 + p[j]
        s1 = s1 + p[j + 1]
        s2 = s2 + p[j + 2]
        s3 = s3 + p[j + 3]
        s4 = s4 + p[j + 4]
        s5 = s5 + p[j + 5]
        s6 = s6 + p[j + 6]
        s7 = s7 + p[j + 7]
    for j in range(n - n % 8, n):
        s0 = s0 + p[j]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


cdef inline Py_ssize_t nonfinite_count(const real* p, Py_ssize_t n) noexcept nogil:
    """How many of p[0], ..., p[n - 1] are inf or NaN (every exponent bit set), n < 2**32: a
    sum of integer compares, which vectorises (a float sum's order is fixed)."""
    cdef uint32_t count = 0
    cdef Py_ssize_t j
    cdef const uint32_t* u = <const uint32_t*>p
    cdef const uint64_t* v = <const uint64_t*>p
    if real is float:
        for j in range(n):
            count = count + ((u[j] & 0x7f800000u) == 0x7f800000u)
    else:
        for j in range(n):
            count = count + ((v[j] & 0x7ff0000000000000u) == 0x7ff0000000000000u)
    return count
