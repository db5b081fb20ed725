# Direct convolution for one input channel per group (depthwise, and C = 1): a GEMM would have an
# inner dimension of KH * KW only, so loops over taps with a contiguous inner row are faster.
# The forward pass with stride 1 along W runs the SIMD plane kernel of depthwise_rows.h on a
# zero-padded copy of the plane when the CPU has AVX2. Elsewhere taps that fall on padding are
# skipped rather than multiplied by zero, so the caller sends non-finite weights (forward) or
# gradients (grad-weight) to the im2col path, where 0 * inf = NaN.
# Output channel f reads input channel f // (F // groups). Every output element is owned by one
# work item and summed in a fixed order: results do not depend on the thread count.
from cython.parallel cimport parallel, prange
from libc.string cimport memset

from _types cimport real
from _select cimport relu
from _omp cimport omp_get_thread_num
from im2col cimport end_valid, first_valid
from window cimport copy_window

from fastconv._kernels.direct import level as simd_level
from fastconv._kernels.workspace import get_workspace

cdef extern from "depthwise_rows.h" nogil:
    void fc_depthwise_plane_float(int level, const float* x, Py_ssize_t XW, const float* w,
                                  Py_ssize_t KH, Py_ssize_t KW, float bias, float* y,
                                  Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t dh,
                                  Py_ssize_t dw, int relu)
    void fc_depthwise_plane_double(int level, const double* x, Py_ssize_t XW, const double* w,
                                   Py_ssize_t KH, Py_ssize_t KW, double bias, double* y,
                                   Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t dh,
                                   Py_ssize_t dw, int relu)


cdef void _plane_forward(const real* xc, const real* wf, real* yf, real b, bint do_relu,
                         Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW,
                         Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t sw,
                         Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw) noexcept nogil:
    cdef Py_ssize_t kh, kw, oh, ow, ih, lo, hi, offset, j
    cdef real wv, v
    cdef real* yrow
    cdef const real* xrow
    for j in range(OH * OW):
        yf[j] = b
    for kh in range(KH):
        for kw in range(KW):
            wv = wf[kh * KW + kw]
            offset = kw * dw - pl
            lo = first_valid(OW, W, sw, offset)
            hi = end_valid(OW, W, sw, offset)
            for oh in range(OH):
                ih = oh * sh - pt + kh * dh
                if ih < 0 or ih >= H:
                    continue
                yrow = yf + oh * OW
                xrow = xc + ih * W + offset
                if sw == 1:
                    for ow in range(lo, hi):
                        yrow[ow] = yrow[ow] + wv * xrow[ow]
                else:
                    for ow in range(lo, hi):
                        yrow[ow] = yrow[ow] + wv * xrow[ow * sw]
    if do_relu:
        for j in range(OH * OW):
            yf[j] = relu(yf[j])


def forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] weight, const real[::1] bias,
            real[:, :, :, ::1] y, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
            Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, bint has_bias, bint relu,
            int num_threads):
    """y[n, f] = sum over taps of weight[f, 0] * x[n, f // (F // groups)] (+ bias) (then ReLU)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = weight.shape[0], KH = weight.shape[2], KW = weight.shape[3]
    cdef Py_ssize_t OH = y.shape[2], OW = y.shape[3], mult = F // groups, item, n, f
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef const real* wp = &weight[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    cdef int lvl = simd_level()
    if sw == 1 and lvl > 0:
        _forward_simd(xp, wp, bias, has_bias, relu, yp, N, C, H, W, F, KH, KW, OH, OW, sh, pt,
                      pl, dh, dw, mult, lvl, num_threads)
        return
    with nogil:
        for item in prange(N * F, num_threads=num_threads, schedule="static"):
            n = item // F
            f = item - n * F
            _plane_forward(xp + (n * C + f // mult) * H * W, wp + f * KH * KW,
                           yp + item * OH * OW, bias[f] if has_bias else 0, relu,
                           H, W, KH, KW, OH, OW, sh, sw, pt, pl, dh, dw)


cdef _forward_simd(const real* xp, const real* wp, const real[::1] bias, bint has_bias,
                   bint relu, real* yp, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                   Py_ssize_t F, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                   Py_ssize_t sh, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                   Py_ssize_t mult, int lvl, int num_threads):
    """The forward pass with stride 1 along W: per (image, filter) plane, the SIMD kernel on the
    input plane, or on a zero-padded copy of it when the convolution pads."""
    cdef Py_ssize_t R = (OH - 1) * sh + (KH - 1) * dh + 1, XW = OW + (KW - 1) * dw
    cdef bint padded = pt != 0 or pl != 0 or R > H or XW > W
    if not padded:
        R, XW = H, W
    cdef Py_ssize_t stride = R * XW if padded else 0, item, n, f
    cdef int nt = <int>max(1, min(<Py_ssize_t>num_threads, N * F))
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64", max(1, stride * nt))
    cdef real* window
    cdef const real* plane
    cdef real b
    with nogil, parallel(num_threads=nt):
        window = &ws[0] + omp_get_thread_num() * stride
        for item in prange(N * F, schedule="static"):
            n = item // F
            f = item - n * F
            plane = xp + (n * C + f // mult) * H * W
            if padded:
                copy_window(plane, 1, H, W, -pt, R, -pl, XW, window)
                plane = window
            b = bias[f] if has_bias else 0
            if real is float:
                fc_depthwise_plane_float(lvl, plane, XW, wp + f * KH * KW, KH, KW, b,
                                         yp + item * OH * OW, OH, OW, sh, dh, dw, relu)
            else:
                fc_depthwise_plane_double(lvl, plane, XW, wp + f * KH * KW, KH, KW, b,
                                          yp + item * OH * OW, OH, OW, sh, dh, dw, relu)


def grad_input(const real[:, :, :, ::1] grad_y, const real[:, :, :, ::1] weight,
               real[:, :, :, ::1] grad_x, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
               Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int num_threads):
    """grad_x[n, c] = sum over c's output channels and taps of weight * grad_y (a scatter per plane)."""
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], H = grad_x.shape[2]
    cdef Py_ssize_t W = grad_x.shape[3], F = weight.shape[0], KH = weight.shape[2]
    cdef Py_ssize_t KW = weight.shape[3], OH = grad_y.shape[2], OW = grad_y.shape[3]
    cdef Py_ssize_t mult = F // groups, item, n, c, f, kh, kw, oh, ow, ih, lo, hi, offset
    cdef real wv
    cdef real* dxrow
    cdef const real* dyrow
    cdef const real* dy = &grad_y[0, 0, 0, 0]
    cdef const real* wp = &weight[0, 0, 0, 0]
    cdef real* dx = &grad_x[0, 0, 0, 0]
    with nogil:
        for item in prange(N * C, num_threads=num_threads, schedule="static"):
            n = item // C
            c = item - n * C
            memset(dx + item * H * W, 0, H * W * sizeof(real))
            for f in range(c * mult, (c + 1) * mult):
                for kh in range(KH):
                    for kw in range(KW):
                        wv = wp[f * KH * KW + kh * KW + kw]
                        offset = kw * dw - pl
                        lo = first_valid(OW, W, sw, offset)
                        hi = end_valid(OW, W, sw, offset)
                        for oh in range(OH):
                            ih = oh * sh - pt + kh * dh
                            if ih < 0 or ih >= H:
                                continue
                            dxrow = dx + item * H * W + ih * W + offset
                            dyrow = dy + ((n * F + f) * OH + oh) * OW
                            for ow in range(lo, hi):
                                dxrow[ow * sw] = dxrow[ow * sw] + wv * dyrow[ow]


def grad_weight(const real[:, :, :, ::1] grad_y, const real[:, :, :, ::1] x,
                real[:, :, :, ::1] grad_w, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int num_threads):
    """grad_w[f, 0, kh, kw] = sum over images and positions of grad_y * x at that tap.

    Each tap accumulates a row of per-column partial sums (a vectorisable multiply-add, where a
    scalar dot product would be one dependent add per element), summed up once at the end."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = grad_w.shape[0], KH = grad_w.shape[2], KW = grad_w.shape[3]
    cdef Py_ssize_t OH = grad_y.shape[2], OW = grad_y.shape[3], mult = F // groups
    cdef Py_ssize_t KK = KH * KW, f, n, kh, kw, oh, ow, ih, lo, hi, offset, j
    cdef int nt = <int>min(<Py_ssize_t>num_threads, F)
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64", nt * KK * OW)
    cdef real* rows
    cdef real* acc
    cdef real total
    cdef const real* xrow
    cdef const real* dyrow
    cdef const real* dy = &grad_y[0, 0, 0, 0]
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* dwp = &grad_w[0, 0, 0, 0]
    with nogil, parallel(num_threads=nt):
        rows = &ws[0] + omp_get_thread_num() * KK * OW
        for f in prange(F, schedule="dynamic"):
            for j in range(KK * OW):
                rows[j] = 0
            for n in range(N):
                for oh in range(OH):
                    dyrow = dy + ((n * F + f) * OH + oh) * OW
                    for kh in range(KH):
                        ih = oh * sh - pt + kh * dh
                        if ih < 0 or ih >= H:
                            continue
                        for kw in range(KW):
                            offset = kw * dw - pl
                            lo = first_valid(OW, W, sw, offset)
                            hi = end_valid(OW, W, sw, offset)
                            xrow = xp + ((n * C + f // mult) * H + ih) * W + offset
                            acc = rows + (kh * KW + kw) * OW
                            if sw == 1:
                                for ow in range(lo, hi):
                                    acc[ow] = acc[ow] + dyrow[ow] * xrow[ow]
                            else:
                                for ow in range(lo, hi):
                                    acc[ow] = acc[ow] + dyrow[ow] * xrow[ow * sw]
            for j in range(KK):
                total = 0
                for ow in range(OW):
                    total = total + rows[j * OW + ow]
                dwp[f * KK + j] = total
