# Direct (no im2col) convolution for few filters and one group: forward and grad-weight; the SIMD
# kernels are in direct_conv.h. The input an item reads is copied once into a zero-padded window
# when the convolution pads (or crops), so the kernels never test bounds. Each output element is
# summed by one item, or by a fixed number of partial sums added in a fixed order: results do not
# depend on the thread count.
from cython.parallel cimport parallel, prange
from libc.string cimport memset

import numpy as np

from _types cimport real
from sums cimport run_sum
from _omp cimport omp_get_thread_num
from geometry cimport Geometry, geometry
from window cimport copy_window

from fastconv._kernels.workspace import aligned_zeros, get_workspace

cdef extern from "direct_conv.h" nogil:
    int FC_PIX
    int fc_simd_level()
    int fc_direct_block(int level, int itemsize)
    int fc_direct_vectors(int level, int itemsize, Py_ssize_t F)
    void fc_direct_forward_float(int level, const float* x, Py_ssize_t XW,
                                 const Py_ssize_t* tapoff, Py_ssize_t KH, Py_ssize_t KTAPS,
                                 const int* khr, const float* wpack, const float* bias, float* y,
                                 Py_ssize_t YPLANE, Py_ssize_t FB, Py_ssize_t OW, Py_ssize_t sh,
                                 Py_ssize_t sw, Py_ssize_t npix, int relu, int nv)
    void fc_direct_forward_double(int level, const double* x, Py_ssize_t XW,
                                  const Py_ssize_t* tapoff, Py_ssize_t KH, Py_ssize_t KTAPS,
                                  const int* khr, const double* wpack, const double* bias,
                                  double* y, Py_ssize_t YPLANE, Py_ssize_t FB, Py_ssize_t OW,
                                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t npix, int relu, int nv)
    int fc_direct_row_reuse(Py_ssize_t KW, Py_ssize_t OW)
    void fc_direct_forward_rr_float(int level, const float* x, Py_ssize_t XW,
                                    const Py_ssize_t* tapoff, Py_ssize_t KH, Py_ssize_t KTAPS,
                                    Py_ssize_t KW, const int* khr, const float* wpack,
                                    const float* bias, float* y, Py_ssize_t YPLANE,
                                    Py_ssize_t FB, Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t npix,
                                    int relu)
    void fc_direct_forward_rr_double(int level, const double* x, Py_ssize_t XW,
                                     const Py_ssize_t* tapoff, Py_ssize_t KH, Py_ssize_t KTAPS,
                                     Py_ssize_t KW, const int* khr, const double* wpack,
                                     const double* bias, double* y, Py_ssize_t YPLANE,
                                     Py_ssize_t FB, Py_ssize_t OW, Py_ssize_t sh,
                                     Py_ssize_t npix, int relu)
    void fc_direct_grad_weight_float(int level, const float* x, const Py_ssize_t* tapoff,
                                     Py_ssize_t k0, Py_ssize_t k1, const Py_ssize_t* pixoff,
                                     const float* gyt, Py_ssize_t npix, float* dw, int nv)
    void fc_direct_grad_weight_double(int level, const double* x, const Py_ssize_t* tapoff,
                                      Py_ssize_t k0, Py_ssize_t k1, const Py_ssize_t* pixoff,
                                      const double* gyt, Py_ssize_t npix, double* dw, int nv)

cdef enum:
    # Forward: output pixels per work item, enough to amortise the call and the window copy, few
    # enough that a single large image still splits among threads.
    PIXELS_PER_ITEM = 512
    # Grad-weight: partial sums over fixed parts of the batch (never the thread count), and taps
    # per item at most (a part's taps split among items when the batch is small).
    WEIGHT_PARTIALS = 8
    TAPS_PER_ITEM = 64
    GRAD_Y_CHUNK_BYTES = 32768

include "simd_level.pxi"


cdef inline void _forward_block(int lvl, const real* x, Py_ssize_t XW, const Py_ssize_t* tapoff,
                                Py_ssize_t KH, Py_ssize_t KTAPS, const int* khr,
                                const real* wpack, const real* bias, real* y, Py_ssize_t YPLANE,
                                Py_ssize_t FB, Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t sw,
                                Py_ssize_t npix, int relu, int nv) noexcept nogil:
    """fc_direct_forward_<dtype> (direct_conv.h): one block of filters (nv vectors) over a run
    of pixels."""
    if real is float:
        fc_direct_forward_float(lvl, x, XW, tapoff, KH, KTAPS, khr, wpack, bias, y, YPLANE, FB,
                                OW, sh, sw, npix, relu, nv)
    else:
        fc_direct_forward_double(lvl, x, XW, tapoff, KH, KTAPS, khr, wpack, bias, y, YPLANE, FB,
                                 OW, sh, sw, npix, relu, nv)


cdef inline void _forward_rr_block(int lvl, const real* x, Py_ssize_t XW,
                                   const Py_ssize_t* tapoff, Py_ssize_t KH, Py_ssize_t KTAPS,
                                   Py_ssize_t KW, const int* khr, const real* wpack,
                                   const real* bias, real* y, Py_ssize_t YPLANE, Py_ssize_t FB,
                                   Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t npix,
                                   int relu) noexcept nogil:
    """fc_direct_forward_rr_<dtype> (direct_conv.h): one vector of filters over whole output
    rows, each input value broadcast once for the taps of a row that read it."""
    if real is float:
        fc_direct_forward_rr_float(lvl, x, XW, tapoff, KH, KTAPS, KW, khr, wpack, bias, y, YPLANE,
                                   FB, OW, sh, npix, relu)
    else:
        fc_direct_forward_rr_double(lvl, x, XW, tapoff, KH, KTAPS, KW, khr, wpack, bias, y,
                                    YPLANE, FB, OW, sh, npix, relu)


cdef int _row_reuse = 0  # 0: AVX-512 only; 1: at any level; 2: never


def set_row_reuse(str name):
    """Whether the filter-vectorised forward broadcasts each input value once per kernel row
    where the shape allows (direct_conv.h's fc_forward_rr): "auto" (with AVX-512), "on" (at any
    level) or "off"; for tests. Returns the previous setting."""
    global _row_reuse
    names = ("auto", "on", "off")
    if name not in names:
        raise ValueError(f"name must be one of {names}, got {name!r}")
    previous = names[_row_reuse]
    _row_reuse = names.index(name)
    return previous


cdef inline void _grad_weight_block(int lvl, const real* x, const Py_ssize_t* tapoff,
                                    Py_ssize_t k0, Py_ssize_t k1, const Py_ssize_t* pixoff,
                                    const real* gyt, Py_ssize_t npix, real* dw,
                                    int nv) noexcept nogil:
    """fc_direct_grad_weight_<dtype> (direct_conv.h): taps [k0, k1) of one block of filters (nv
    vectors)."""
    if real is float:
        fc_direct_grad_weight_float(lvl, x, tapoff, k0, k1, pixoff, gyt, npix, dw, nv)
    else:
        fc_direct_grad_weight_double(lvl, x, tapoff, k0, k1, pixoff, gyt, npix, dw, nv)


cdef Py_ssize_t[::1] _tap_offsets(Py_ssize_t C, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t plane,
                                  Py_ssize_t row, Py_ssize_t dh, Py_ssize_t dw, bint kh_major):
    """Offsets of taps (c, kh, kw), or (kh, c, kw) if kh_major, in a window of `plane`-element
    planes and `row`-element rows. (Typed loops: NumPy's per-call overhead was most of a small
    convolution's time.)"""
    cdef Py_ssize_t[::1] offsets = np.empty(C * KH * KW, dtype=np.intp)
    cdef Py_ssize_t c, kh, kw, k
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                k = ((kh * C + c) if kh_major else (c * KH + kh)) * KW + kw
                offsets[k] = c * plane + kh * dh * row + kw * dw
    return offsets


cdef int[:, ::1] _kernel_rows(Py_ssize_t OH, Py_ssize_t H, Py_ssize_t KH, Py_ssize_t sh,
                              Py_ssize_t pt, Py_ssize_t dh):
    """(OH, 2): per output row, the kernel rows [lo, hi) that read input rows (not padding);
    (KH, 0) when none do."""
    cdef int[:, ::1] rows = np.empty((OH, 2), dtype=np.intc)
    cdef Py_ssize_t oh, kh, ih
    for oh in range(OH):
        rows[oh, 0] = <int>KH
        rows[oh, 1] = 0
        for kh in range(KH):
            ih = oh * sh - pt + kh * dh
            if 0 <= ih < H:
                rows[oh, 0] = <int>min(rows[oh, 0], kh)
                rows[oh, 1] = <int>(kh + 1)
    return rows


cdef real[:, :, ::1] _pack(const real[:, ::1] a, Py_ssize_t BL):
    """(rows, K) -> (blocks, K, BL): blocks of BL rows as columns, rows past the end zero; on a
    cache line (the kernels load a vector of BL per tap)."""
    cdef Py_ssize_t rows = a.shape[0], K = a.shape[1], blocks = (rows + BL - 1) // BL, f, k
    cdef real[:, :, ::1] packed = aligned_zeros((blocks, K, BL),
                                                np.float32 if real is float else np.float64)
    for f in range(rows):
        for k in range(K):
            packed[f // BL, k, f % BL] = a[f, k]
    return packed


cdef (Py_ssize_t, Py_ssize_t, bint) _window_shape(Geometry g, Py_ssize_t rows):
    """(R, XW, padded): the input rows and columns `rows` output rows read, and whether they
    need a zero-padded (or cropped: negative padding) copy; if not, x itself: (H, W, False)."""
    cdef Py_ssize_t R = (rows - 1) * g.sh + (g.KH - 1) * g.dh + 1
    cdef Py_ssize_t XW = (g.OW - 1) * g.sw + (g.KW - 1) * g.dw + 1
    if g.pt != 0 or g.pl != 0 or (g.OH - 1) * g.sh + (g.KH - 1) * g.dh >= g.H or XW > g.W:
        return R, XW, True
    return g.H, g.W, False


cdef _check_one_group(Py_ssize_t groups):
    if groups != 1:
        raise ValueError(f"the direct kernel needs groups == 1, got {groups}")


def forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] weight, const real[::1] bias,
            real[:, :, :, ::1] y, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
            Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, bint has_bias, bint relu,
            int num_threads):
    """y = conv(x, weight) (+ bias) (then ReLU) for groups == 1; shapes validated by the caller.

    A work item is a run of output rows of one image, all filter blocks."""
    _check_one_group(groups)
    cdef Geometry g = geometry(x.shape, weight.shape, y.shape, sh, sw, pt, pl, dh, dw, groups)
    cdef int lvl = _level
    if _rows_layout(g, lvl, sizeof(real), False):
        _forward_rows(x, weight, bias, y, g, lvl, has_bias, relu, num_threads)
        return
    cdef Py_ssize_t C = g.C, H = g.H, W = g.W, F = g.F, OH = g.OH, OW = g.OW, OHW = OH * OW
    dtype = np.float32 if real is float else np.float64
    # A block of filters: nv vectors (direct_conv.h's register block)
    cdef int nv = fc_direct_vectors(lvl, sizeof(real), F)
    cdef Py_ssize_t BL = nv * fc_direct_block(lvl, sizeof(real)), blocks = (F + BL - 1) // BL
    # Taps in (kh, c, kw) order, so that the kernel rows an output row needs are one range.
    cdef const real[:, ::1] w_kh_major = np.ascontiguousarray(
        np.asarray(weight).transpose(0, 2, 1, 3)).reshape(F, C * g.KH * g.KW)
    cdef const real[:, :, ::1] wpack = _pack(w_kh_major, BL)
    bias_arr = np.zeros(blocks * BL, dtype=dtype)
    if has_bias:
        bias_arr[:F] = bias
    cdef const real[::1] bpack = bias_arr
    cdef Py_ssize_t rows = max(1, min(OH, PIXELS_PER_ITEM // OW))
    cdef Py_ssize_t runs = (OH + rows - 1) // rows
    rows = (OH + runs - 1) // runs  # balance the runs of an image
    runs = (OH + rows - 1) // rows
    cdef Py_ssize_t R, XW
    cdef bint padded
    R, XW, padded = _window_shape(g, rows)
    cdef const Py_ssize_t[::1] tapoff = _tap_offsets(C, g.KH, g.KW, R * XW, XW, dh, dw, True)
    # Kernel rows that read only padding contribute 0 * w: skipped, unless a weight is not
    # finite (0 * inf = NaN, as the GEMM path gives).
    cdef bint skip_rows = padded and bool(np.isfinite(weight).all())
    cdef const int[:, ::1] khr = _kernel_rows(OH, H, g.KH, sh, pt, dh)
    # Whole output rows, each input value broadcast once per kernel row (fc_forward_rr): one
    # vector of filters, stride and dilation 1 along W. Ice Lake-SP, one thread, min of 21
    # interleaved: LeNet-5 conv2 forward AVX-512 0.47 -> 0.37 ms (batch 64), 1.77 -> 1.34 ms
    # (256); AVX2 0.48 -> 0.53 ms (its 5 pixels' sums are 5 chains of dependent multiply-adds,
    # fewer than two FMA units' latency hides), so AVX-512 only.
    cdef bint rr = (_row_reuse != 2 and (lvl == 2 or _row_reuse == 1) and nv == 1 and sw == 1
                    and dw == 1 and fc_direct_row_reuse(g.KW, OW))
    cdef Py_ssize_t n_items = g.N * runs, stride = C * R * XW if padded else 0
    cdef int nt = <int>max(1, min(<Py_ssize_t>num_threads, n_items))
    cdef real[::1] ws = get_workspace(dtype, max(1, stride * nt))
    cdef Py_ssize_t item, n, oh0, blk
    cdef const real* xw
    cdef real* window
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    with nogil, parallel(num_threads=nt):
        window = &ws[0] + omp_get_thread_num() * stride
        for item in prange(n_items, schedule="dynamic"):
            n = item // runs
            oh0 = (item % runs) * rows
            if padded:
                copy_window(xp + n * C * H * W, C, H, W, oh0 * sh - pt, R, -pl, XW, window)
                xw = window
            else:
                xw = xp + (n * C * H + oh0 * sh) * W
            for blk in range(blocks):
                if rr:
                    _forward_rr_block(lvl, xw, XW, &tapoff[0], g.KH, C * g.KW, g.KW,
                                      &khr[oh0, 0] if skip_rows else NULL, &wpack[blk, 0, 0],
                                      &bpack[blk * BL], yp + (n * F + blk * BL) * OHW + oh0 * OW,
                                      OHW, min(BL, F - blk * BL), OW, sh,
                                      (min(OH, oh0 + rows) - oh0) * OW, relu)
                else:
                    _forward_block(lvl, xw, XW, &tapoff[0], g.KH, C * g.KW,
                                   &khr[oh0, 0] if skip_rows else NULL, &wpack[blk, 0, 0],
                                   &bpack[blk * BL], yp + (n * F + blk * BL) * OHW + oh0 * OW,
                                   OHW, min(BL, F - blk * BL), OW, sh, sw,
                                   (min(OH, oh0 + rows) - oh0) * OW, relu, nv)


cdef inline double _sum_parts(const double* first, Py_ssize_t parts,
                              Py_ssize_t stride) noexcept nogil:
    """first[0] + first[stride] + ... (parts terms), in that order."""
    cdef double s = 0
    cdef Py_ssize_t part
    for part in range(parts):
        s = s + first[part * stride]
    return s


include "direct_rows.pxi"


def grad_weight(const real[:, :, :, ::1] grad_y, const real[:, :, :, ::1] x,
                real[:, :, :, ::1] grad_w, real[::1] grad_b, bint has_bias, Py_ssize_t sh,
                Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                Py_ssize_t groups, int num_threads):
    """grad_w[f, k] = sum over images and output pixels of grad_y[n, f, p] * tap k of pixel p;
    with has_bias also grad_b[f] = sum of grad_y[:, f] (in double), from the same pass.

    A work item is (part of the batch, run of taps): per image of its part it copies the padded
    window and grad_y transposed to (pixel, filter), then accumulates its taps of the part's
    private partial sum; the parts are added up in order at the end. The first run of taps of a
    part also sums its grad_y planes for grad_b."""
    _check_one_group(groups)
    cdef Geometry g = geometry(x.shape, grad_w.shape, grad_y.shape, sh, sw, pt, pl, dh, dw, groups)
    if _rows_layout(g, _level, sizeof(real), True):
        _grad_weight_rows(grad_y, x, grad_w, grad_b, has_bias, g, _level, num_threads)
        return
    cdef Py_ssize_t N = g.N, C = g.C, H = g.H, W = g.W, F = g.F
    cdef Py_ssize_t OHW = g.OH * g.OW, K = C * g.KH * g.KW
    dtype = np.float32 if real is float else np.float64
    cdef int lvl = _level
    cdef int nv = fc_direct_vectors(lvl, sizeof(real), F)
    cdef Py_ssize_t BL = nv * fc_direct_block(lvl, sizeof(real)), blocks = (F + BL - 1) // BL
    cdef Py_ssize_t R, XW
    cdef bint padded
    R, XW, padded = _window_shape(g, g.OH)
    cdef const Py_ssize_t[::1] tapoff = _tap_offsets(C, g.KH, g.KW, R * XW, XW, dh, dw, False)
    # Output pixels are taps of a 1-channel "kernel" of OH x OW with steps sh, sw.
    cdef const Py_ssize_t[::1] pixoff = _tap_offsets(1, g.OH, g.OW, 0, XW, sh, sw, False)
    cdef Py_ssize_t parts = min(N, WEIGHT_PARTIALS), per_part = (N + parts - 1) // parts
    parts = (N + per_part - 1) // per_part
    # Taps per item: a multiple of the register block; runs split the taps when parts are few.
    cdef Py_ssize_t tap_runs = max(1, min((K + FC_PIX - 1) // FC_PIX,
                                          (2 * num_threads + parts - 1) // parts,
                                          (K + TAPS_PER_ITEM - 1) // TAPS_PER_ITEM))
    cdef Py_ssize_t per_run = ((K + tap_runs - 1) // tap_runs + FC_PIX - 1) // FC_PIX * FC_PIX
    tap_runs = (K + per_run - 1) // per_run
    # Pixels per kernel call: grad_y is transposed a chunk at a time into a buffer that stays in
    # L1 while every tap of the item reads it (the whole image's transposed grad_y, 3.2 MB for
    # 64 filters of 112 x 112, was written filter by filter and read again from L3).
    cdef Py_ssize_t chunk = min(OHW, max(FC_PIX, GRAD_Y_CHUNK_BYTES // (BL * sizeof(real))))
    cdef Py_ssize_t n_items = parts * tap_runs, part_size = blocks * K * BL
    cdef Py_ssize_t stride = (C * R * XW if padded else 0) + chunk * BL
    cdef int nt = <int>max(1, min(<Py_ssize_t>num_threads, n_items))
    cdef real[::1] ws = get_workspace(dtype, stride * nt + parts * part_size)
    cdef real* partial = &ws[0] + stride * nt
    cdef double[::1] bias_parts = np.zeros(parts * F)  # grad_b per part
    cdef double* bparts = &bias_parts[0]
    cdef Py_ssize_t item, part, k0, k1, n, blk, f, j, i, k, p0, pc, npc
    cdef real s
    cdef const real* xw
    cdef real* work
    cdef real* gyt
    cdef real* lane
    cdef const real* row
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef const real* gyp = &grad_y[0, 0, 0, 0]
    cdef real* dwp = &grad_w[0, 0, 0, 0]
    with nogil, parallel(num_threads=nt):
        work = &ws[0] + omp_get_thread_num() * stride
        gyt = work + (C * R * XW if padded else 0)
        for item in prange(n_items, schedule="dynamic"):
            part = item // tap_runs
            k0 = (item % tap_runs) * per_run
            k1 = min(K, k0 + per_run)
            for blk in range(blocks):
                for k in range(k0, k1):
                    memset(partial + part * part_size + (blk * K + k) * BL, 0, BL * sizeof(real))
            for n in range(part * per_part, min(N, (part + 1) * per_part)):
                if padded:
                    copy_window(xp + n * C * H * W, C, H, W, -pt, R, -pl, XW, work)
                    xw = work
                else:
                    xw = xp + n * C * H * W
                if has_bias and k0 == 0:
                    for f in range(F):
                        bparts[part * F + f] += run_sum(gyp + (n * F + f) * OHW, OHW)
                for blk in range(blocks):
                    for pc in range((OHW + chunk - 1) // chunk):
                        p0 = pc * chunk
                        npc = min(chunk, OHW - p0)
                        # this chunk of grad_y as (pixel, lane), lanes past F zero: one filter's
                        # run at a time (contiguous reads)
                        for f in range(blk * BL, blk * BL + BL):
                            lane = gyt + f - blk * BL
                            if f < F:
                                row = gyp + (n * F + f) * OHW + p0
                                for j in range(npc):
                                    lane[j * BL] = row[j]
                            else:
                                for j in range(npc):
                                    lane[j * BL] = 0
                        _grad_weight_block(lvl, xw, &tapoff[0], k0, k1, &pixoff[p0], gyt, npc,
                                           partial + part * part_size + blk * K * BL, nv)
    with nogil:
        for f in prange(F, num_threads=nt, schedule="static"):
            blk = f // BL
            for k in range(K):
                s = 0
                for part in range(parts):
                    s = s + partial[part * part_size + (blk * K + k) * BL + f - blk * BL]
                dwp[f * K + k] = s
            if has_bias:
                grad_b[f] = <real>_sum_parts(bparts + f, parts, F)
