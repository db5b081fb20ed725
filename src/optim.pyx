# The optimisers' update rules as one compiled pass per parameter: Adam and SGD (momentum,
# Nesterov, L2 weight decay). Each element is read and written once, where the NumPy version made
# about fifteen passes (and as many Python calls) per parameter.
#
# The arithmetic is NumPy's, operation for operation: every hyper-parameter is rounded to the
# parameter's dtype first (NumPy casts a Python float to a float32 array's dtype), and no step is
# fused (the build never contracts a*b+c into an FMA: no -march, no -ffp-contract=fast targets),
# so the results equal those of the ufunc sequence in fastconv.optim's docstrings, bit for bit.
# One thread: a LeNet-sized parameter is a few microseconds of work, less than an OpenMP fork.
from libc.math cimport sqrt, sqrtf

from _types cimport real


cdef inline real _root(real v) noexcept nogil:
    if real is float:
        return sqrtf(v)
    else:
        return sqrt(v)


cdef void _adam(real* p, const real* g, real* m, real* v, Py_ssize_t n, real wd, bint decay,
                real one_minus_beta1, real beta2, real one_minus_beta2, real bias2_root,
                real eps, real minus_step) noexcept nogil:
    cdef Py_ssize_t i
    cdef real gi, d
    for i in range(n):
        gi = g[i]
        if decay:
            gi = gi + p[i] * wd
        m[i] = m[i] + (gi - m[i]) * one_minus_beta1
        v[i] = v[i] * beta2 + (gi * gi) * one_minus_beta2
        d = _root(v[i]) / bias2_root + eps
        p[i] = p[i] + (m[i] / d) * minus_step


def adam(real[::1] p, const real[::1] g, real[::1] m, real[::1] v, double lr, double beta1,
         double beta2, double eps, double weight_decay, long long step):
    """One Adam step of one parameter, in place (p, m, v; g is only read); `step` >= 1 is the
    parameter's step count including this one (bias correction)."""
    cdef double step_size = lr / (1.0 - beta1 ** step)
    cdef double bias2_root = sqrt(1.0 - beta2 ** step)
    if p.shape[0] == 0:
        return
    with nogil:
        _adam(&p[0], &g[0], &m[0], &v[0], p.shape[0], <real>weight_decay, weight_decay != 0.0,
              <real>(1.0 - beta1), <real>beta2, <real>(1.0 - beta2), <real>bias2_root,
              <real>eps, <real>(-step_size))


cdef void _sgd(real* p, const real* g, real* buf, Py_ssize_t n, real wd, bint decay,
               real momentum, bint has_momentum, bint first, bint nesterov,
               real minus_lr) noexcept nogil:
    cdef Py_ssize_t i
    cdef real gi
    for i in range(n):
        gi = g[i]
        if decay:
            gi = gi + p[i] * wd
        if has_momentum:
            buf[i] = gi if first else buf[i] * momentum + gi
            gi = gi + buf[i] * momentum if nesterov else buf[i]
        p[i] = p[i] + gi * minus_lr


def sgd(real[::1] p, const real[::1] g, real[::1] buf, double lr, double momentum,
        bint nesterov, double weight_decay, bint first):
    """One SGD step of one parameter, in place (p, and the momentum buffer `buf` unless momentum
    is 0, when `buf` is not touched); `first`: the buffer starts as this step's gradient."""
    if p.shape[0] == 0:
        return
    with nogil:
        _sgd(&p[0], &g[0], &buf[0], p.shape[0], <real>weight_decay, weight_decay != 0.0,
             <real>momentum, momentum != 0.0, first, nesterov, <real>(-lr))
