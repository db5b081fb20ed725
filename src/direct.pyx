# Direct (no im2col) forward convolution for few filters and one group; the SIMD kernels are in
# direct_conv.h. A work item is a run of output rows of one image, all filter blocks: its input
# rows are copied once into a zero-padded window when the convolution pads, so the kernels never
# test bounds. Each output element belongs to one item: results do not depend on the thread count.
from cython.parallel cimport parallel, prange
from libc.string cimport memcpy, memset

import numpy as np

from _types cimport real
from _omp cimport omp_get_thread_num

from fastconv._workspace import get_workspace

cdef extern from "direct_conv.h" nogil:
    int fc_direct_level()
    int fc_direct_block(int level, int itemsize)
    void fc_direct_float(int level, const float* x, Py_ssize_t XPLANE, Py_ssize_t XW,
                         const float* wpack, const float* bias, float* y, Py_ssize_t YPLANE,
                         Py_ssize_t FB, Py_ssize_t C, Py_ssize_t KH, Py_ssize_t KW,
                         Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh,
                         Py_ssize_t dw, Py_ssize_t npix, int relu)
    void fc_direct_double(int level, const double* x, Py_ssize_t XPLANE, Py_ssize_t XW,
                          const double* wpack, const double* bias, double* y, Py_ssize_t YPLANE,
                          Py_ssize_t FB, Py_ssize_t C, Py_ssize_t KH, Py_ssize_t KW,
                          Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh,
                          Py_ssize_t dw, Py_ssize_t npix, int relu)

cdef enum:
    # Output pixels per work item: enough to amortise the call and the window copy, few enough
    # that a single large image still splits among threads.
    PIXELS_PER_ITEM = 512

cdef int _detected = fc_direct_level()
cdef int _level = _detected


def level():
    """The instruction set the kernels run with: 2 AVX-512, 1 AVX2 + FMA, 0 baseline."""
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


cdef void _window(const real* x_image, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                  Py_ssize_t ih0, Py_ssize_t R, Py_ssize_t iw0, Py_ssize_t XW,
                  real* out) noexcept nogil:
    """out[c, r, j] = x_image[c, ih0 + r, iw0 + j], zero outside the image."""
    cdef Py_ssize_t c, r, ih, lo, hi
    cdef real* row
    lo = min(XW, max(0, -iw0))
    hi = max(lo, min(XW, W - iw0))
    for c in range(C):
        for r in range(R):
            row = out + (c * R + r) * XW
            ih = ih0 + r
            if ih < 0 or ih >= H:
                memset(row, 0, XW * sizeof(real))
                continue
            memset(row, 0, lo * sizeof(real))
            memcpy(row + lo, x_image + (c * H + ih) * W + iw0 + lo, (hi - lo) * sizeof(real))
            memset(row + hi, 0, (XW - hi) * sizeof(real))


def forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] weight, const real[::1] bias,
            real[:, :, :, ::1] y, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
            Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, bint has_bias, bint relu,
            int num_threads):
    """y = conv(x, weight) (+ bias) (then ReLU) for groups == 1; shapes validated by the caller."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = weight.shape[0], KH = weight.shape[2], KW = weight.shape[3]
    cdef Py_ssize_t OH = y.shape[2], OW = y.shape[3], OHW = OH * OW, K = C * KH * KW
    if groups != 1:
        raise ValueError(f"the direct kernel needs groups == 1, got {groups}")
    dtype = np.float32 if real is float else np.float64
    cdef int lvl = _level
    cdef Py_ssize_t BL = fc_direct_block(lvl, sizeof(real)), blocks = (F + BL - 1) // BL
    # Weights as (block, tap, lane) and bias as (block, lane), lanes past F zero.
    wpack_arr = np.zeros((blocks * BL, K), dtype=dtype)
    wpack_arr[:F] = np.asarray(weight).reshape(F, K)
    wpack_arr = np.ascontiguousarray(wpack_arr.reshape(blocks, BL, K).transpose(0, 2, 1))
    bias_arr = np.zeros(blocks * BL, dtype=dtype)
    if has_bias:
        bias_arr[:F] = bias
    cdef const real[:, :, ::1] wpack = wpack_arr
    cdef const real[::1] bpack = bias_arr
    cdef Py_ssize_t rows = max(1, min(OH, PIXELS_PER_ITEM // OW))
    cdef Py_ssize_t runs = (OH + rows - 1) // rows
    rows = (OH + runs - 1) // runs  # balance the runs of an image
    runs = (OH + rows - 1) // rows
    # The input rows and columns a run of `rows` output rows reads.
    cdef Py_ssize_t R = (rows - 1) * sh + (KH - 1) * dh + 1, XW = (OW - 1) * sw + (KW - 1) * dw + 1
    # Negative padding (grad-input's reuse of this kernel) crops: also a window.
    cdef bint padded = pt != 0 or pl != 0 or (OH - 1) * sh + (KH - 1) * dh >= H or XW > W
    cdef Py_ssize_t n_items = N * runs, stride = C * R * XW if padded else 0
    cdef int nt = <int>max(1, min(<Py_ssize_t>num_threads, n_items))
    cdef real[::1] ws = get_workspace(dtype, max(1, stride * nt))
    cdef Py_ssize_t item, n, oh0, oh1, blk
    cdef const real* xw
    cdef real* window
    cdef real* yblk
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef const real* wp = &wpack[0, 0, 0]
    cdef const real* bp = &bpack[0]
    cdef real* yp = &y[0, 0, 0, 0]
    with nogil, parallel(num_threads=nt):
        window = &ws[0] + omp_get_thread_num() * stride
        for item in prange(n_items, schedule="dynamic"):
            n = item // runs
            oh0 = (item % runs) * rows
            oh1 = min(OH, oh0 + rows)
            if padded:
                _window(xp + n * C * H * W, C, H, W, oh0 * sh - pt, R, -pl, XW, window)
                xw = window
            else:
                xw = xp + (n * C * H + oh0 * sh) * W
            for blk in range(blocks):
                yblk = yp + (n * F + blk * BL) * OHW + oh0 * OW
                if real is float:
                    fc_direct_float(lvl, xw, R * XW if padded else H * W, XW if padded else W,
                                    wp + blk * K * BL, bp + blk * BL, yblk, OHW,
                                    min(BL, F - blk * BL), C, KH, KW, OW, sh, sw, dh, dw,
                                    (oh1 - oh0) * OW, relu)
                else:
                    fc_direct_double(lvl, xw, R * XW if padded else H * W, XW if padded else W,
                                     wp + blk * K * BL, bp + blk * BL, yblk, OHW,
                                     min(BL, F - blk * BL), C, KH, KW, OW, sh, sw, dh, dw,
                                     (oh1 - oh0) * OW, relu)
