# What OpenMP the build has: fastconv._backend.threads asks here (and nowhere else).
from _omp cimport FASTCONV_OPENMP, omp_get_max_threads


def enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FASTCONV_OPENMP)


def max_threads():
    """OpenMP's default thread count (OMP_NUM_THREADS, else the cores)."""
    return omp_get_max_threads()
