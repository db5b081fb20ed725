# OpenMP shim: the kernels build (serial) when the compiler has no OpenMP.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FASTCONV_OPENMP 1
    #else
    #define FASTCONV_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    static int omp_get_thread_num(void) { return 0; }
    #endif
    """
    int FASTCONV_OPENMP
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil

# One thread, no region: an OpenMP parallel region costs a futex syscall at its closing barrier
# even with one thread (libgomp wakes the barrier's waiters unconditionally: ~1-3 us in this
# project's VMs, a fifth of a small convolution's call), so a kernel whose work runs on one thread
# (num_threads 1, or one work item) runs its items in a plain loop instead.
