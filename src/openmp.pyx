# What OpenMP the build has: fastconv._backend.threads asks here (and nowhere else); and the C
# side of holding BLAS to one thread while the kernels run (threads.py finds the libraries).
from _omp cimport FASTCONV_OPENMP, omp_get_max_threads

ctypedef int (*_get_threads)() noexcept nogil
ctypedef void (*_set_threads)(int) noexcept nogil

cdef enum:
    MAX_LIBRARIES = 16


def enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FASTCONV_OPENMP)


def max_threads():
    """OpenMP's default thread count (OMP_NUM_THREADS, else the cores)."""
    return omp_get_max_threads()


cdef class BlasSingleThread:
    """Context manager: the BLAS libraries held to one thread while at least one block is inside
    (counted over all Python threads: nested and concurrent blocks keep the limit, the last one
    out restores the counts). On the first block, find() gives the libraries' C functions,
    [(address of get_num_threads(), address of set_num_threads(int))], or None, and then
    `fallback` (a Python context manager) does the work instead. The C functions run with the GIL
    held, so no other Python thread runs between reading a count and setting it: where Python
    code did this, with a lock, it cost ~3 us per kernel call (ctypes ~0.2 us of it per call)."""

    cdef _get_threads gets[MAX_LIBRARIES]
    cdef _set_threads sets[MAX_LIBRARIES]
    cdef int saved[MAX_LIBRARIES]
    cdef int libraries  # -1: not found yet
    cdef int depth
    cdef object find, fallback
    cdef bint python

    def __cinit__(self, find, fallback):
        self.find, self.fallback = find, fallback
        self.libraries = -1

    cdef _found(self):
        addresses = self.find()
        if self.libraries >= 0:  # another Python thread found them meanwhile
            return
        if addresses is None or len(addresses) > MAX_LIBRARIES:
            self.python = True
            self.libraries = 0
            return
        for i, (get, set_) in enumerate(addresses):
            self.gets[i] = <_get_threads><size_t>get
            self.sets[i] = <_set_threads><size_t>set_
        self.libraries = len(addresses)

    def __enter__(self):
        cdef int i
        if self.libraries < 0:
            self._found()
        if self.python:
            return self.fallback.__enter__()
        if self.depth == 0:
            for i in range(self.libraries):
                self.saved[i] = self.gets[i]()
                if self.saved[i] != 1:
                    self.sets[i](1)
        self.depth += 1

    def __exit__(self, *exc):
        cdef int i
        if self.python:
            return self.fallback.__exit__(*exc)
        self.depth -= 1
        if self.depth == 0:
            for i in range(self.libraries):
                if self.saved[i] != 1:
                    self.sets[i](self.saved[i])
        return False
