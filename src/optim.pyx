# The optimisers' update rules as one compiled pass per parameter: Adam and SGD (momentum,
# Nesterov, L2 weight decay). Each element is read and written once, where the NumPy version made
# about fifteen passes (and as many Python calls) per parameter.
#
# The arithmetic is NumPy's, operation for operation: every hyper-parameter is rounded to the
# parameter's dtype first (NumPy casts a Python float to a float32 array's dtype), and no step is
# fused (the build never contracts a*b+c into an FMA: no -march, no -ffp-contract=fast targets),
# so the results equal those of the ufunc sequence in fastconv.optim's docstrings, bit for bit
# (the loops are in optim_rules.h, vectorised).
# A parameter of up to 2 * CHUNK elements runs on one thread (a few microseconds of work, next to
# an OpenMP fork); larger ones in chunks of CHUNK over the threads (the rules are element-wise:
# the same bits for any split). LeNet-5's C5 weight (48,000 of its 61,706 parameters) took 29 us
# on one thread, and a training step's update reads its operands from beyond L2.
from cython.parallel cimport prange
from libc.math cimport sqrt

from _types cimport real

cdef extern from "optim_rules.h" nogil:
    int fc_simd_level()
    void fc_adam_float(int level, float* p, const float* g, float* m, float* v, Py_ssize_t n,
                       float wd, int decay, float one_minus_beta1, float beta2,
                       float one_minus_beta2, float bias2_root, float eps, float minus_step)
    void fc_adam_double(int level, double* p, const double* g, double* m, double* v,
                        Py_ssize_t n, double wd, int decay, double one_minus_beta1, double beta2,
                        double one_minus_beta2, double bias2_root, double eps, double minus_step)
    void fc_sgd_float(int level, float* p, const float* g, float* buf, Py_ssize_t n, float wd,
                      int decay, float momentum, int has_momentum, int first, int nesterov,
                      float minus_lr)
    void fc_sgd_double(int level, double* p, const double* g, double* buf, Py_ssize_t n,
                       double wd, int decay, double momentum, int has_momentum, int first,
                       int nesterov, double minus_lr)

include "simd_level.pxi"

cdef enum:
    CHUNK = 8192  # elements per work item (a multiple of every vector width)


cdef inline int _threads_for(Py_ssize_t n, int num_threads) noexcept nogil:
    """The threads an update of n elements runs on: one up to 2 * CHUNK."""
    if n <= 2 * CHUNK:
        return 1
    return <int>min(<Py_ssize_t>num_threads, (n + CHUNK - 1) // CHUNK)


cdef void _adam(real* p, const real* g, real* m, real* v, Py_ssize_t n, real wd, bint decay,
                real one_minus_beta1, real beta2, real one_minus_beta2, real bias2_root,
                real eps, real minus_step) noexcept nogil:
    if real is float:
        fc_adam_float(_level, p, g, m, v, n, wd, decay, one_minus_beta1, beta2, one_minus_beta2,
                      bias2_root, eps, minus_step)
    else:
        fc_adam_double(_level, p, g, m, v, n, wd, decay, one_minus_beta1, beta2,
                       one_minus_beta2, bias2_root, eps, minus_step)


def adam(real[::1] p, const real[::1] g, real[::1] m, real[::1] v, double lr, double beta1,
         double beta2, double eps, double weight_decay, long long step, int num_threads=1):
    """One Adam step of one parameter, in place (p, m, v; g is only read); `step` >= 1 is the
    parameter's step count including this one (bias correction)."""
    cdef double step_size = lr / (1.0 - beta1 ** step)
    cdef double bias2_root = sqrt(1.0 - beta2 ** step)
    cdef Py_ssize_t n = p.shape[0], chunk, lo
    if n == 0:
        return
    cdef int nt = _threads_for(n, num_threads)
    with nogil:
        for chunk in prange((n + CHUNK - 1) // CHUNK if nt > 1 else 1, num_threads=nt,
                            schedule="static"):
            lo = chunk * CHUNK
            _adam(&p[lo], &g[lo], &m[lo], &v[lo], min(CHUNK, n - lo) if nt > 1 else n,
                  <real>weight_decay, weight_decay != 0.0, <real>(1.0 - beta1), <real>beta2,
                  <real>(1.0 - beta2), <real>bias2_root, <real>eps, <real>(-step_size))


cdef void _sgd(real* p, const real* g, real* buf, Py_ssize_t n, real wd, bint decay,
               real momentum, bint has_momentum, bint first, bint nesterov,
               real minus_lr) noexcept nogil:
    if real is float:
        fc_sgd_float(_level, p, g, buf, n, wd, decay, momentum, has_momentum, first, nesterov,
                     minus_lr)
    else:
        fc_sgd_double(_level, p, g, buf, n, wd, decay, momentum, has_momentum, first, nesterov,
                      minus_lr)


def sgd(real[::1] p, const real[::1] g, real[::1] buf, double lr, double momentum,
        bint nesterov, double weight_decay, bint first, int num_threads=1):
    """One SGD step of one parameter, in place (p, and the momentum buffer `buf` unless momentum
    is 0, when `buf` is not touched); `first`: the buffer starts as this step's gradient."""
    cdef Py_ssize_t n = p.shape[0], chunk, lo
    if n == 0:
        return
    cdef int nt = _threads_for(n, num_threads)
    with nogil:
        for chunk in prange((n + CHUNK - 1) // CHUNK if nt > 1 else 1, num_threads=nt,
                            schedule="static"):
            lo = chunk * CHUNK
            _sgd(&p[lo], &g[lo], &buf[lo], min(CHUNK, n - lo) if nt > 1 else n,
                 <real>weight_decay, weight_decay != 0.0, <real>momentum, momentum != 0.0, first,
                 nesterov, <real>(-lr))
