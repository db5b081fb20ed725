# The optimisers' update rules as one compiled pass per parameter: Adam and SGD (momentum,
# Nesterov, L2 weight decay). Each element is read and written once, where the NumPy version made
# about fifteen passes (and as many Python calls) per parameter.
#
# The arithmetic is NumPy's, operation for operation: every hyper-parameter is rounded to the
# parameter's dtype first (NumPy casts a Python float to a float32 array's dtype), and no step is
# fused (the build never contracts a*b+c into an FMA: no -march, no -ffp-contract=fast targets),
# so the results equal those of the ufunc sequence in fastconv.optim's docstrings, bit for bit
# (the loops are in optim_rules.h, vectorised).
# One call updates every parameter of one dtype: the parameters are cut into chunks of CHUNK
# elements, run as the items of one parallel region (a LeNet-5 step made ten calls, ten
# parameters of 6 to 48,000 elements, the small ones on one thread); up to 2 * CHUNK elements in
# all run on one thread, next to which an OpenMP fork costs more than it saves. The rules are
# element-wise: the same bits for any split.
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_Release,
                             PyObject_GetBuffer)
from cython.parallel cimport prange
from libc.math cimport sqrt
from libc.stdlib cimport calloc, free

from _types cimport real

import numpy as np

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


ctypedef struct _Item:
    # a chunk of one parameter: its arrays from element `lo`, `n` elements
    char* p
    char* g
    char* m  # Adam's exp_avg; SGD's momentum buffer (NULL: none)
    char* v  # Adam's exp_avg_sq
    Py_ssize_t n
    double a  # Adam: -step_size; SGD: unused
    double b  # Adam: sqrt(1 - beta2 ** step); SGD: 1.0 where the buffer starts as the gradient


ctypedef struct _Rule:
    # the update and its hyper-parameters (Adam: beta1, beta2, eps; SGD: lr, momentum, nesterov)
    bint adam, single, nesterov
    double lr, beta1, beta2, eps, momentum, weight_decay


cdef class _Chunks:
    """The buffers of a call's arrays (held until it is done) and its chunks of CHUNK elements."""
    cdef Py_buffer* views
    cdef Py_ssize_t n_views, n_items, total
    cdef _Item* items
    cdef Py_ssize_t itemsize

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.views != NULL:
            for i in range(self.n_views):  # (the views acquired)
                PyBuffer_Release(&self.views[i])
            free(self.views)
        free(self.items)

    cdef char* view(self, object array, bint writable) except NULL:
        """The data of `array` (C-contiguous, of the call's item size), held until the end."""
        cdef Py_buffer* view = &self.views[self.n_views]
        PyObject_GetBuffer(array, view, PyBUF_C_CONTIGUOUS | (PyBUF_WRITABLE if writable else 0))
        self.n_views += 1
        if view.itemsize != self.itemsize:
            raise ValueError(f"every array must have {self.itemsize}-byte elements")
        return <char*>view.buf


cdef _Chunks _chunks(list columns, tuple writable, list a, list b, Py_ssize_t itemsize):
    """The chunks of the parameters columns[0] (and their other arrays, the same size each: a
    None in columns[2] is no array), each parameter's values a[i] and b[i] in its chunks."""
    cdef _Chunks c = _Chunks()
    cdef Py_ssize_t count = len(columns[0]), i, k, n, lo
    cdef char* arrays[4]
    cdef _Item* item
    c.itemsize = itemsize
    c.views = <Py_buffer*>calloc(max(1, count * len(columns)), sizeof(Py_buffer))
    for i in range(count):
        c.n_items += (columns[0][i].size + CHUNK - 1) // CHUNK
    c.items = <_Item*>calloc(max(1, c.n_items), sizeof(_Item))
    if c.views == NULL or c.items == NULL:
        raise MemoryError()
    c.n_items = 0
    for i in range(count):
        n = columns[0][i].size
        for k in range(4):
            arrays[k] = NULL
            if k < len(columns) and columns[k][i] is not None:
                arrays[k] = c.view(columns[k][i], writable[k])
                if columns[k][i].size != n:
                    raise ValueError("a parameter's arrays must have the same size")
        c.total += n
        for lo in range(0, n, CHUNK):
            item = &c.items[c.n_items]
            c.n_items += 1
            item.p, item.g = arrays[0] + lo * itemsize, arrays[1] + lo * itemsize
            item.m = arrays[2] + lo * itemsize if arrays[2] != NULL else NULL
            item.v = arrays[3] + lo * itemsize if arrays[3] != NULL else NULL
            item.n, item.a, item.b = min(CHUNK, n - lo), a[i], b[i]
    return c


cdef void _adam(real* p, const real* g, real* m, real* v, Py_ssize_t n, real wd, bint decay,
                real one_minus_beta1, real beta2, real one_minus_beta2, real bias2_root,
                real eps, real minus_step) noexcept nogil:
    if real is float:
        fc_adam_float(_level, p, g, m, v, n, wd, decay, one_minus_beta1, beta2, one_minus_beta2,
                      bias2_root, eps, minus_step)
    else:
        fc_adam_double(_level, p, g, m, v, n, wd, decay, one_minus_beta1, beta2,
                       one_minus_beta2, bias2_root, eps, minus_step)


cdef inline void _adam_item(const _Item* it, bint single, double weight_decay, double beta1,
                            double beta2, double eps) noexcept nogil:
    if single:
        _adam(<float*>it.p, <const float*>it.g, <float*>it.m, <float*>it.v, it.n,
              <float>weight_decay, weight_decay != 0.0, <float>(1.0 - beta1), <float>beta2,
              <float>(1.0 - beta2), <float>it.b, <float>eps, <float>it.a)
    else:
        _adam(<double*>it.p, <const double*>it.g, <double*>it.m, <double*>it.v, it.n,
              weight_decay, weight_decay != 0.0, 1.0 - beta1, beta2, 1.0 - beta2, it.b, eps, it.a)


def adam(list params, list grads, list exp_avgs, list exp_avg_sqs, list steps, double lr,
         double beta1, double beta2, double eps, double weight_decay, int num_threads=1):
    """One Adam step of each parameter, in place (params[i], exp_avgs[i], exp_avg_sqs[i]; grads[i]
    is only read): arrays C-contiguous, all float32 or all float64, a parameter's four of one
    size; steps[i] >= 1 is params[i]'s step count including this one (bias correction)."""
    if not params:
        return
    cdef bint single = params[0].dtype == np.float32
    minus_steps = [-(lr / (1.0 - beta1 ** t)) for t in steps]
    bias2_roots = [sqrt(1.0 - beta2 ** t) for t in steps]
    cdef _Chunks c = _chunks([params, grads, exp_avgs, exp_avg_sqs], (True, False, True, True),
                             minus_steps, bias2_roots, 4 if single else 8)
    cdef _Rule rule
    rule.adam, rule.single, rule.beta1, rule.beta2, rule.eps = True, single, beta1, beta2, eps
    rule.weight_decay = weight_decay
    _run(c, &rule, num_threads)


cdef void _sgd(real* p, const real* g, real* buf, Py_ssize_t n, real wd, bint decay,
               real momentum, bint has_momentum, bint first, bint nesterov,
               real minus_lr) noexcept nogil:
    if real is float:
        fc_sgd_float(_level, p, g, buf, n, wd, decay, momentum, has_momentum, first, nesterov,
                     minus_lr)
    else:
        fc_sgd_double(_level, p, g, buf, n, wd, decay, momentum, has_momentum, first, nesterov,
                      minus_lr)


cdef inline void _sgd_item(const _Item* it, bint single, double lr, double momentum,
                           bint nesterov, double weight_decay) noexcept nogil:
    # no momentum: the buffer is never touched (p's own chunk stands in for it)
    cdef char* buf = it.m if momentum != 0.0 else it.p
    if single:
        _sgd(<float*>it.p, <const float*>it.g, <float*>buf, it.n, <float>weight_decay,
             weight_decay != 0.0, <float>momentum, momentum != 0.0, it.b != 0.0, nesterov,
             <float>(-lr))
    else:
        _sgd(<double*>it.p, <const double*>it.g, <double*>buf, it.n, weight_decay,
             weight_decay != 0.0, momentum, momentum != 0.0, it.b != 0.0, nesterov, -lr)


def sgd(list params, list grads, list buffers, list firsts, double lr, double momentum,
        bint nesterov, double weight_decay, int num_threads=1):
    """One SGD step of each parameter, in place (params[i], and the momentum buffer buffers[i]
    unless momentum is 0, when buffers[i] is None); firsts[i]: that buffer starts as this step's
    gradient. Arrays C-contiguous, all float32 or all float64, a parameter's of one size."""
    if not params:
        return
    cdef bint single = params[0].dtype == np.float32
    cdef _Chunks c = _chunks([params, grads, buffers], (True, False, True), [0.0] * len(params),
                             [1.0 if f else 0.0 for f in firsts], 4 if single else 8)
    cdef _Rule rule
    rule.adam, rule.single, rule.lr, rule.momentum = False, single, lr, momentum
    rule.nesterov, rule.weight_decay = nesterov, weight_decay
    _run(c, &rule, num_threads)


cdef void _run(_Chunks c, const _Rule* rule, int num_threads):
    """`rule` over the chunks of `c`: on one thread up to 2 * CHUNK elements in all (next to
    which an OpenMP fork costs more than it saves), else over the threads."""
    cdef int nt = 1 if c.total <= 2 * CHUNK else <int>max(1, min(<Py_ssize_t>num_threads,
                                                                  c.n_items))
    cdef Py_ssize_t i
    if nt == 1:  # no region
        with nogil:
            for i in range(c.n_items):
                _run_item(rule, &c.items[i])
    else:
        with nogil:
            for i in prange(c.n_items, num_threads=nt, schedule="dynamic"):
                _run_item(rule, &c.items[i])


cdef inline void _run_item(const _Rule* r, const _Item* it) noexcept nogil:
    if r.adam:
        _adam_item(it, r.single, r.weight_decay, r.beta1, r.beta2, r.eps)
    else:
        _sgd_item(it, r.single, r.lr, r.momentum, r.nesterov, r.weight_decay)
