# Direct convolution for one input channel per group (depthwise, and C = 1): a GEMM would have an
# inner dimension of KH * KW only, so loops over taps with a contiguous inner row are faster.
# The forward and grad-weight passes with stride 1 along W run the SIMD plane kernels of
# depthwise_rows.h on a zero-padded copy of the plane when the CPU has AVX2 (padded taps are
# multiplied by zero: 0 * inf = NaN as on the im2col path). Elsewhere taps that fall on padding
# are skipped rather than multiplied by zero, so the caller (the planner's depthwise_skips)
# sends non-finite weights (forward) or gradients (grad-weight) to the im2col path.
# Output channel f reads input channel f // (F // groups). Every output element is owned by one
# work item and summed in a fixed order: results do not depend on the thread count.
from cython.parallel cimport parallel, prange
from libc.string cimport memset

from _types cimport real
from _select cimport relu
from _omp cimport omp_get_thread_num
from geometry cimport Geometry, geometry
from sums cimport run_sum
from taps cimport tap_axpy, tap_products
from window cimport copy_window

import numpy as np

from fastconv._kernels.direct import level as simd_level
from fastconv._kernels.workspace import get_workspace

cdef enum:
    ROW_BLOCK = 8  # grad-weight: output rows per block (see _filter_grad_weight)

cdef extern from "depthwise_rows.h" nogil:
    int FC_DWG_TAPS
    void fc_depthwise_gw_plane_float(int level, const float* x, Py_ssize_t XW, const float* gy,
                                     Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t KW, Py_ssize_t t0,
                                     Py_ssize_t t1, Py_ssize_t sh, Py_ssize_t dh, Py_ssize_t dw,
                                     double* acc, double* bias)
    void fc_depthwise_gw_plane_double(int level, const double* x, Py_ssize_t XW,
                                      const double* gy, Py_ssize_t OH, Py_ssize_t OW,
                                      Py_ssize_t KW, Py_ssize_t t0, Py_ssize_t t1, Py_ssize_t sh,
                                      Py_ssize_t dh, Py_ssize_t dw, double* acc, double* bias)
    void fc_depthwise_plane_float(int level, const float* x, Py_ssize_t XW, const float* w,
                                  Py_ssize_t KH, Py_ssize_t KW, float bias, float* y,
                                  Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t dh,
                                  Py_ssize_t dw, int relu)
    void fc_depthwise_plane_double(int level, const double* x, Py_ssize_t XW, const double* w,
                                   Py_ssize_t KH, Py_ssize_t KW, double bias, double* y,
                                   Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t dh,
                                   Py_ssize_t dw, int relu)


cdef inline void _simd_plane(int level, const real* x, Py_ssize_t XW, const real* w, real bias,
                             real* y, Geometry g, bint do_relu) noexcept nogil:
    """The SIMD plane kernel of depthwise_rows.h for this dtype (stride 1 along W)."""
    if real is float:
        fc_depthwise_plane_float(level, x, XW, w, g.KH, g.KW, bias, y, g.OH, g.OW, g.sh, g.dh,
                                 g.dw, do_relu)
    else:
        fc_depthwise_plane_double(level, x, XW, w, g.KH, g.KW, bias, y, g.OH, g.OW, g.sh, g.dh,
                                  g.dw, do_relu)


cdef void _plane_forward(const real* xc, const real* wf, real* yf, real b, bint do_relu,
                         Geometry g) noexcept nogil:
    cdef Py_ssize_t k, j
    for j in range(g.OH * g.OW):
        yf[j] = b
    for k in range(g.KH * g.KW):
        tap_axpy(g, k // g.KW, k % g.KW, wf[k], xc, yf, False)
    if do_relu:
        for j in range(g.OH * g.OW):
            yf[j] = relu(yf[j])


def forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] weight, const real[::1] bias,
            real[:, :, :, ::1] y, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
            Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, bint has_bias, bint relu,
            int num_threads):
    """y[n, f] = sum over taps of weight[f, 0] * x[n, f // (F // groups)] (+ bias) (then ReLU)."""
    cdef Geometry g = geometry(x.shape, weight.shape, y.shape, sh, sw, pt, pl, dh, dw, groups)
    cdef Py_ssize_t F = g.F, mult = F // groups, item, n, f
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef const real* wp = &weight[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    cdef int lvl = simd_level()
    if sw == 1 and lvl > 0:
        _forward_simd(xp, wp, bias, has_bias, relu, yp, g, lvl, num_threads)
        return
    with nogil:
        for item in prange(g.N * F, num_threads=num_threads, schedule="static"):
            n = item // F
            f = item - n * F
            _plane_forward(xp + (n * g.C + f // mult) * g.H * g.W, wp + f * g.KH * g.KW,
                           yp + item * g.OH * g.OW, bias[f] if has_bias else 0, relu, g)


cdef _forward_simd(const real* xp, const real* wp, const real[::1] bias, bint has_bias,
                   bint relu, real* yp, Geometry g, int lvl, int num_threads):
    """The forward pass with stride 1 along W: per (image, filter) plane, the SIMD kernel on the
    input plane, or on a zero-padded copy of it when the convolution pads."""
    cdef Py_ssize_t H = g.H, W = g.W, F = g.F, mult = F // g.G
    cdef Py_ssize_t R = (g.OH - 1) * g.sh + (g.KH - 1) * g.dh + 1, XW = g.OW + (g.KW - 1) * g.dw
    cdef bint padded = g.pt != 0 or g.pl != 0 or R > H or XW > W
    if not padded:
        R, XW = H, W
    cdef Py_ssize_t stride = R * XW if padded else 0, item, n, f
    cdef int nt = <int>max(1, min(<Py_ssize_t>num_threads, g.N * F))
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64", max(1, stride * nt))
    cdef real* window
    cdef const real* plane
    with nogil, parallel(num_threads=nt):
        window = &ws[0] + omp_get_thread_num() * stride
        for item in prange(g.N * F, schedule="static"):
            n = item // F
            f = item - n * F
            plane = xp + (n * g.C + f // mult) * H * W
            if padded:
                copy_window(plane, 1, H, W, -g.pt, R, -g.pl, XW, window)
                plane = window
            _simd_plane(lvl, plane, XW, wp + f * g.KH * g.KW, bias[f] if has_bias else 0,
                        yp + item * g.OH * g.OW, g, relu)


cdef void _plane_grad_input(const real* dy_image, const real* wp, real* dx_plane, Geometry g,
                            Py_ssize_t c) noexcept nogil:
    """dx_plane = the sum over channel c's filters and their taps of weight * grad_y."""
    cdef Py_ssize_t f, k, KK = g.KH * g.KW, mult = g.F // g.G
    memset(dx_plane, 0, g.H * g.W * sizeof(real))
    for f in range(c * mult, (c + 1) * mult):
        for k in range(KK):
            tap_axpy(g, k // g.KW, k % g.KW, wp[f * KK + k], dy_image + f * g.OH * g.OW,
                     dx_plane, True)


def grad_input(const real[:, :, :, ::1] grad_y, const real[:, :, :, ::1] weight,
               real[:, :, :, ::1] grad_x, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
               Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int num_threads):
    """grad_x[n, c] = sum over c's output channels and taps of weight * grad_y (a scatter per plane)."""
    cdef Geometry g = geometry(grad_x.shape, weight.shape, grad_y.shape, sh, sw, pt, pl, dh, dw,
                               groups)
    cdef Py_ssize_t C = g.C, item, n
    cdef const real* dy = &grad_y[0, 0, 0, 0]
    cdef const real* wp = &weight[0, 0, 0, 0]
    cdef real* dx = &grad_x[0, 0, 0, 0]
    with nogil:
        for item in prange(g.N * C, num_threads=num_threads, schedule="static"):
            n = item // C
            _plane_grad_input(dy + n * g.F * g.OH * g.OW, wp, dx + item * g.H * g.W, g,
                              item - n * C)


cdef void _filter_grad_weight(const real* dy, const real* xp, real* dw_f, real* rows,
                              Geometry g, Py_ssize_t f) noexcept nogil:
    """dw_f[kh, kw] = sum over images and positions of grad_y[:, f] * x[:, f // mult] at that
    tap: per tap a row of per-column partial sums (see tap_products), summed up at the end.
    Blocks of output rows keep the rows every tap reads in L1 (a tap's sweep over a whole
    112 x 112 plane measured 40% slower); the terms of each partial sum come in (image,
    output row) order either way."""
    cdef Py_ssize_t n, k, ow, blk, OW = g.OW, KK = g.KH * g.KW, mult = g.F // g.G
    cdef real total
    for k in range(KK * OW):
        rows[k] = 0
    for n in range(g.N):
        for blk in range((g.OH + ROW_BLOCK - 1) // ROW_BLOCK):
            for k in range(KK):
                tap_products(g, k // g.KW, k % g.KW, dy + (n * g.F + f) * g.OH * OW,
                             xp + (n * g.C + f // mult) * g.H * g.W, rows + k * OW,
                             blk * ROW_BLOCK, (blk + 1) * ROW_BLOCK)
    for k in range(KK):
        total = 0
        for ow in range(OW):
            total = total + rows[k * OW + ow]
        dw_f[k] = total


def grad_weight(const real[:, :, :, ::1] grad_y, const real[:, :, :, ::1] x,
                real[:, :, :, ::1] grad_w, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int num_threads):
    """grad_w[f, 0, kh, kw] = sum over images and positions of grad_y * x at that tap."""
    _grad_weight(grad_y, x, grad_w, grad_w[0, 0, 0, :0], False, sh, sw, pt, pl, dh, dw, groups,
                 num_threads)


def grad_weight_bias(const real[:, :, :, ::1] grad_y, const real[:, :, :, ::1] x,
                     real[:, :, :, ::1] grad_w, real[::1] grad_b, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                     Py_ssize_t groups, int num_threads):
    """grad_weight() and grad_b[f] = sum of grad_y[:, f], from one pass over grad_y where the
    SIMD kernel runs."""
    _grad_weight(grad_y, x, grad_w, grad_b, True, sh, sw, pt, pl, dh, dw, groups, num_threads)


cdef _grad_weight(const real[:, :, :, ::1] grad_y, const real[:, :, :, ::1] x,
                  real[:, :, :, ::1] grad_w, real[::1] grad_b, bint has_bias, Py_ssize_t sh,
                  Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                  Py_ssize_t groups, int num_threads):
    cdef Geometry g = geometry(x.shape, grad_w.shape, grad_y.shape, sh, sw, pt, pl, dh, dw, groups)
    cdef Py_ssize_t KK = g.KH * g.KW, f, n, OHW = g.OH * g.OW
    cdef int nt = <int>min(<Py_ssize_t>num_threads, g.F)
    cdef int lvl = simd_level()
    cdef const real* dy = &grad_y[0, 0, 0, 0]
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* dwp = &grad_w[0, 0, 0, 0]
    cdef double s
    if sw == 1 and lvl > 0:
        _grad_weight_simd(dy, xp, dwp, grad_b, has_bias, g, lvl, nt)
        return
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64", nt * KK * g.OW)
    cdef real* rows
    with nogil, parallel(num_threads=nt):
        rows = &ws[0] + omp_get_thread_num() * KK * g.OW
        for f in prange(g.F, schedule="dynamic"):
            _filter_grad_weight(dy, xp, dwp + f * KK, rows, g, f)
            if has_bias:
                s = 0
                for n in range(g.N):
                    s = s + run_sum(dy + (n * g.F + f) * OHW, OHW)
                grad_b[f] = <real>s


cdef inline void _gw_plane(int lvl, const real* x, Py_ssize_t XW, const real* gy, Geometry g,
                           Py_ssize_t t0, Py_ssize_t t1, double* acc,
                           double* bias) noexcept nogil:
    """The SIMD grad-weight kernel of depthwise_rows.h for this dtype (stride 1 along W)."""
    if real is float:
        fc_depthwise_gw_plane_float(lvl, x, XW, gy, g.OH, g.OW, g.KW, t0, t1, g.sh, g.dh, g.dw,
                                    acc, bias)
    else:
        fc_depthwise_gw_plane_double(lvl, x, XW, gy, g.OH, g.OW, g.KW, t0, t1, g.sh, g.dh, g.dw,
                                     acc, bias)


cdef _grad_weight_simd(const real* dy, const real* xp, real* dwp, real[::1] grad_b,
                       bint has_bias, Geometry g, int lvl, int nt):
    """Grad-weight (and grad-bias) with stride 1 along W: per filter, its planes in image order
    through the SIMD kernel (on a zero-padded copy of the input plane when the convolution pads),
    every tap's sum and the bias sum in double. Stride-1 depthwise 3x3 on 8 x 32 x 112 x 112,
    Ice Lake-SP, one thread: 11.9 ms for grad-weight and grad-bias on the scalar per-tap loops
    and a second pass over grad_y."""
    cdef Py_ssize_t H = g.H, W = g.W, F = g.F, mult = F // g.G, KK = g.KH * g.KW
    cdef Py_ssize_t OHW = g.OH * g.OW, TG = FC_DWG_TAPS
    cdef Py_ssize_t R = (g.OH - 1) * g.sh + (g.KH - 1) * g.dh + 1, XW = g.OW + (g.KW - 1) * g.dw
    cdef bint padded = g.pt != 0 or g.pl != 0 or R > H or XW > W
    if not padded:
        R, XW = H, W
    cdef Py_ssize_t stride = R * XW if padded else 0, f, n, t0, t
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64", max(1, stride * nt))
    cdef double[:, ::1] sums = np.zeros((F, KK + 1))  # per filter: the taps' sums, the bias's
    cdef real* window
    cdef const real* plane
    with nogil, parallel(num_threads=nt):
        window = &ws[0] + omp_get_thread_num() * stride
        for f in prange(F, schedule="dynamic"):
            for n in range(g.N):
                plane = xp + (n * g.C + f // mult) * H * W
                if padded:
                    copy_window(plane, 1, H, W, -g.pt, R, -g.pl, XW, window)
                    plane = window
                for t in range((KK + TG - 1) // TG):  # passes of at most TG taps
                    t0 = t * TG
                    _gw_plane(lvl, plane, XW, dy + (n * F + f) * OHW, g, t0, min(KK, t0 + TG),
                              &sums[f, 0], &sums[f, KK] if has_bias and t0 == 0 else NULL)
            for t in range(KK):
                dwp[f * KK + t] = <real>sums[f, t]
            if has_bias:
                grad_b[f] = <real>sums[f, KK]
