# Direct (no im2col) convolution for few filters and one group: forward and grad-weight; the SIMD
# kernels are in direct_conv.h. The input an item reads is copied once into a zero-padded window
# when the convolution pads (or crops), so the kernels never test bounds. Each output element is
# summed by one item, or by a fixed number of partial sums added in a fixed order: results do not
# depend on the thread count.
from cython.parallel cimport parallel, prange
from libc.math cimport isfinite
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

import numpy as np

from _types cimport real
from sums cimport run_sum
from _omp cimport omp_get_thread_num
from geometry cimport Geometry, geometry
from window cimport copy_window

from fastconv._kernels.workspace import get_workspace

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
    int fc_direct_grad_weight_row_reuse(Py_ssize_t KW, Py_ssize_t OW)
    void fc_grad_y_lanes_float(int level, const float* src, Py_ssize_t ld, Py_ssize_t nf,
                               Py_ssize_t npix, float* dst, Py_ssize_t BL)
    void fc_grad_y_lanes_double(int level, const double* src, Py_ssize_t ld, Py_ssize_t nf,
                                Py_ssize_t npix, double* dst, Py_ssize_t BL)
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
    void fc_direct_grad_weight_rr_float(int level, const float* x, const Py_ssize_t* tapoff,
                                        Py_ssize_t k0, Py_ssize_t k1, Py_ssize_t KW,
                                        Py_ssize_t XWS, Py_ssize_t OW, Py_ssize_t rows,
                                        const float* gyt, float* dw)
    void fc_direct_grad_weight_rr_double(int level, const double* x, const Py_ssize_t* tapoff,
                                         Py_ssize_t k0, Py_ssize_t k1, Py_ssize_t KW,
                                         Py_ssize_t XWS, Py_ssize_t OW, Py_ssize_t rows,
                                         const double* gyt, double* dw)

cdef enum:
    # Forward: output pixels per work item, enough to amortise the call and the window copy, few
    # enough that a single large image still splits among threads.
    PIXELS_PER_ITEM = 512
    # Grad-weight: partial sums over fixed parts of the batch (never the thread count), and taps
    # per item at most (a part's taps split among items when the batch is small).
    WEIGHT_PARTIALS = 8
    TAPS_PER_ITEM = 64
    GRAD_Y_CHUNK_BYTES = 32768
    CACHE_LINE = 64

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
    """Whether the filter-vectorised forward and grad-weight broadcast each input value once per
    kernel row where the shape allows (direct_conv.h's fc_forward_rr, fc_grad_weight_rr): "auto"
    (with AVX-512), "on" (at any level) or "off"; for tests. Returns the previous setting."""
    global _row_reuse
    names = ("auto", "on", "off")
    previous = names[_row_reuse]
    _row_reuse = _switch_index(name, names)
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


cdef inline void _grad_weight_rr_block(int lvl, const real* x, const Py_ssize_t* tapoff,
                                       Py_ssize_t k0, Py_ssize_t k1, Py_ssize_t KW,
                                       Py_ssize_t XWS, Py_ssize_t OW, Py_ssize_t rows,
                                       const real* gyt, real* dw) noexcept nogil:
    """fc_direct_grad_weight_rr_<dtype> (direct_conv.h): whole kernel rows [k0, k1) of taps of
    one vector of filters over whole output rows."""
    if real is float:
        fc_direct_grad_weight_rr_float(lvl, x, tapoff, k0, k1, KW, XWS, OW, rows, gyt, dw)
    else:
        fc_direct_grad_weight_rr_double(lvl, x, tapoff, k0, k1, KW, XWS, OW, rows, gyt, dw)


# The tables a call builds (tap offsets, kernel rows, packed weights and bias) go into one
# malloc'd block, filled by typed loops: a small convolution spent most of its ~8 us outside the
# kernel allocating and converting NumPy arrays for them.
cdef void _tap_offsets(Py_ssize_t* offsets, Py_ssize_t C, Py_ssize_t KH, Py_ssize_t KW,
                       Py_ssize_t plane, Py_ssize_t row, Py_ssize_t dh, Py_ssize_t dw,
                       bint kh_major) noexcept nogil:
    """offsets[C * KH * KW]: offsets of taps (c, kh, kw), or (kh, c, kw) if kh_major, in a window
    of `plane`-element planes and `row`-element rows."""
    cdef Py_ssize_t c, kh, kw, k
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                k = ((kh * C + c) if kh_major else (c * KH + kh)) * KW + kw
                offsets[k] = c * plane + kh * dh * row + kw * dw


cdef void _kernel_rows(int* rows, Py_ssize_t OH, Py_ssize_t H, Py_ssize_t KH, Py_ssize_t sh,
                       Py_ssize_t pt, Py_ssize_t dh) noexcept nogil:
    """rows[OH, 2]: per output row, the kernel rows [lo, hi) that read input rows (not padding);
    (KH, 0) when none do."""
    cdef Py_ssize_t oh, kh, ih
    for oh in range(OH):
        rows[2 * oh] = <int>KH
        rows[2 * oh + 1] = 0
        for kh in range(KH):
            ih = oh * sh - pt + kh * dh
            if 0 <= ih < H:
                rows[2 * oh] = <int>min(rows[2 * oh], kh)
                rows[2 * oh + 1] = <int>(kh + 1)


cdef void _pack(const real* w, Py_ssize_t F, Py_ssize_t C, Py_ssize_t KH, Py_ssize_t KW,
                bint kh_major, Py_ssize_t BL, real* packed) noexcept nogil:
    """weight (F, C, KH, KW) -> packed (blocks, K, BL): blocks of BL filters as columns, taps k
    in the order of _tap_offsets, filters past F zero."""
    cdef Py_ssize_t K = C * KH * KW, blocks = (F + BL - 1) // BL, f, c, kh, kw, k
    memset(packed, 0, blocks * K * BL * sizeof(real))
    for f in range(F):
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    k = ((kh * C + c) if kh_major else (c * KH + kh)) * KW + kw
                    packed[((f // BL) * K + k) * BL + f % BL] = w[((f * C + c) * KH + kh) * KW + kw]


cdef void _pack_bias(const real* bias, Py_ssize_t F, bint has_bias, Py_ssize_t padded_F,
                     real* out) noexcept nogil:
    """out[padded_F]: the bias, zero past F (or everywhere without one)."""
    memset(out, 0, padded_F * sizeof(real))
    if has_bias:
        memcpy(out, bias, F * sizeof(real))


cdef bint _all_finite(const real* a, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if not isfinite(a[i]):
            return False
    return True


cdef void* _tables(size_t size) except NULL:
    """`size` bytes for a call's tables (freed by the caller), CACHE_LINE more for _aligned."""
    cdef void* p = malloc(size + CACHE_LINE)
    if p == NULL:
        raise MemoryError()
    return p


cdef inline void* _aligned(void* p) noexcept nogil:
    """p rounded up to a cache line: packed weights start on one (the kernels load a vector of
    BL per tap; a vector split over two lines costs a second load)."""
    return <void*>((<size_t>p + CACHE_LINE - 1) // CACHE_LINE * CACHE_LINE)


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


cdef void _forward_item(int lvl, Geometry g, Py_ssize_t item, Py_ssize_t runs, Py_ssize_t rows,
                        bint padded, Py_ssize_t R, Py_ssize_t XW, const real* xp, real* window,
                        const Py_ssize_t* tapoff, const int* khr, const real* wpack,
                        const real* bpack, Py_ssize_t BL, real* yp, bint relu, int nv,
                        bint rr) noexcept nogil:
    """forward()'s work item `item`: output rows [oh0, oh0 + rows) of one image, every block of
    filters (nv vectors each; rr: whole rows, fc_forward_rr), from x or (padded) its window
    copied into `window`; khr NULL: no rows skipped."""
    cdef Py_ssize_t n = item // runs, oh0 = (item % runs) * rows, blk
    cdef Py_ssize_t K = g.C * g.KH * g.KW, OHW = g.OH * g.OW, blocks = (g.F + BL - 1) // BL
    cdef const real* xw
    if padded:
        copy_window(xp + n * g.C * g.H * g.W, g.C, g.H, g.W, oh0 * g.sh - g.pt, R, -g.pl, XW,
                    window)
        xw = window
    else:
        xw = xp + (n * g.C * g.H + oh0 * g.sh) * g.W
    cdef const int* rows_khr = khr + 2 * oh0 if khr != NULL else NULL
    cdef Py_ssize_t npix = (min(g.OH, oh0 + rows) - oh0) * g.OW
    for blk in range(blocks):
        if rr:
            _forward_rr_block(lvl, xw, XW, tapoff, g.KH, g.C * g.KW, g.KW, rows_khr,
                              wpack + blk * K * BL, bpack + blk * BL,
                              yp + (n * g.F + blk * BL) * OHW + oh0 * g.OW, OHW,
                              min(BL, g.F - blk * BL), g.OW, g.sh, npix, relu)
        else:
            _forward_block(lvl, xw, XW, tapoff, g.KH, g.C * g.KW, rows_khr, wpack + blk * K * BL,
                           bpack + blk * BL, yp + (n * g.F + blk * BL) * OHW + oh0 * g.OW, OHW,
                           min(BL, g.F - blk * BL), g.OW, g.sh, g.sw, npix, relu, nv)


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
    cdef Py_ssize_t C = g.C, H = g.H, F = g.F, OH = g.OH, OW = g.OW
    dtype = np.float32 if real is float else np.float64
    # A block of filters: nv vectors (direct_conv.h's register block)
    cdef int nv = fc_direct_vectors(lvl, sizeof(real), F)
    cdef Py_ssize_t BL = nv * fc_direct_block(lvl, sizeof(real)), blocks = (F + BL - 1) // BL
    cdef Py_ssize_t K = C * g.KH * g.KW
    cdef Py_ssize_t rows = max(1, min(OH, PIXELS_PER_ITEM // OW))
    cdef Py_ssize_t runs = (OH + rows - 1) // rows
    rows = (OH + runs - 1) // runs  # balance the runs of an image
    runs = (OH + rows - 1) // rows
    cdef Py_ssize_t R, XW
    cdef bint padded
    R, XW, padded = _window_shape(g, rows)
    # Whole output rows, each input value broadcast once per kernel row (fc_forward_rr): one
    # vector of filters, stride and dilation 1 along W. Ice Lake-SP, one thread, min of 21
    # interleaved: LeNet-5 conv2 forward AVX-512 0.47 -> 0.37 ms (batch 64), 1.77 -> 1.34 ms
    # (256); AVX2 0.48 -> 0.53 ms (its 5 pixels' sums are 5 chains of dependent multiply-adds,
    # fewer than two FMA units' latency hides), so AVX-512 only.
    cdef bint rr = (_row_reuse != 2 and (lvl == 2 or _row_reuse == 1) and nv == 1 and sw == 1
                    and dw == 1 and fc_direct_row_reuse(g.KW, OW))
    cdef Py_ssize_t n_items = g.N * runs, stride = C * R * XW if padded else 0
    cdef int nt = <int>max(1, min(<Py_ssize_t>num_threads, n_items))
    cdef real[::1] ws
    cdef real* wsp = NULL  # the windows: none without padding
    if padded:
        ws = get_workspace(dtype, stride * nt)
        wsp = &ws[0]
    # Tables: tap offsets, packed weights (taps in (kh, c, kw) order, so that the kernel rows an
    # output row needs are one range), packed bias, kernel rows per output row.
    cdef void* tables = _tables(
        K * sizeof(Py_ssize_t) + blocks * BL * (K + 1) * sizeof(real) + 2 * OH * sizeof(int))
    cdef real* wpack = <real*>_aligned(tables)
    cdef real* bpack = wpack + blocks * K * BL
    cdef Py_ssize_t* tapoff = <Py_ssize_t*>(bpack + blocks * BL)
    cdef int* khr = <int*>(tapoff + K)
    _tap_offsets(tapoff, C, g.KH, g.KW, R * XW, XW, dh, dw, True)
    _pack(&weight[0, 0, 0, 0], F, C, g.KH, g.KW, True, BL, wpack)
    _pack_bias(&bias[0] if has_bias else NULL, F, has_bias, blocks * BL, bpack)
    _kernel_rows(khr, OH, H, g.KH, sh, pt, dh)
    # Kernel rows that read only padding contribute 0 * w: skipped, unless a weight is not
    # finite (0 * inf = NaN, as the GEMM path gives).
    cdef bint skip_rows = padded and _all_finite(&weight[0, 0, 0, 0], F * K)
    cdef Py_ssize_t item
    cdef real* window
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    if nt == 1:  # one thread, no region (_omp.pxd)
        with nogil:
            for item in range(n_items):
                _forward_item(lvl, g, item, runs, rows, padded, R, XW, xp, wsp, tapoff,
                              khr if skip_rows else NULL, wpack, bpack, BL, yp, relu, nv, rr)
    else:
        with nogil, parallel(num_threads=nt):
            window = wsp + omp_get_thread_num() * stride
            for item in prange(n_items, schedule="dynamic"):
                _forward_item(lvl, g, item, runs, rows, padded, R, XW, xp, window, tapoff,
                              khr if skip_rows else NULL, wpack, bpack, BL, yp, relu, nv, rr)
    free(tables)


cdef inline double _sum_parts(const double* first, Py_ssize_t parts,
                              Py_ssize_t stride) noexcept nogil:
    """first[0] + first[stride] + ... (parts terms), in that order."""
    cdef double s = 0
    cdef Py_ssize_t part
    for part in range(parts):
        s = s + first[part * stride]
    return s


include "direct_rows.pxi"


ctypedef struct _WeightSplit:
    # grad_weight()'s work: parts of the batch (per_part images each) x runs of taps (per_run
    # each); BL filters per block; the window (R x XW per channel) if padded
    Py_ssize_t tap_runs, per_run, per_part, parts, BL, R, XW
    # nv vectors of filters per block; grad_y transposed `chunk` pixels at a time (whole output
    # rows where a row fits); rr: by fc_grad_weight_rr (runs of taps are whole kernel rows)
    int nv
    Py_ssize_t chunk
    bint padded, rr


cdef void _grad_weight_item(int lvl, Geometry g, _WeightSplit sp, Py_ssize_t item,
                            const real* xp, const real* gyp, const Py_ssize_t* tapoff,
                            const Py_ssize_t* pixoff, real* work, real* partial,
                            double* bparts) noexcept nogil:
    """grad_weight()'s work item `item`: its taps of its part's partial sums (`partial`), and
    with bparts (not NULL) the first run of taps also sums the part's grad_y planes for grad_b.
    `work`: the thread's window, then its transposed grad_y."""
    cdef Py_ssize_t F = g.F, OHW = g.OH * g.OW, K = g.C * g.KH * g.KW, BL = sp.BL
    cdef Py_ssize_t blocks = (F + BL - 1) // BL, part_size = blocks * K * BL
    cdef Py_ssize_t part = item // sp.tap_runs, k0 = (item % sp.tap_runs) * sp.per_run
    cdef Py_ssize_t k1 = min(K, k0 + sp.per_run), blk, k, n, f, v, pc, p0, npc
    cdef Py_ssize_t VL = BL // sp.nv  # filters per vector
    cdef real* gyt = work + (g.C * sp.R * sp.XW if sp.padded else 0)
    cdef const real* row
    cdef const real* xw
    for blk in range(blocks):
        for k in range(k0, k1):
            memset(partial + part * part_size + (blk * K + k) * BL, 0, BL * sizeof(real))
    for n in range(part * sp.per_part, min(g.N, (part + 1) * sp.per_part)):
        if sp.padded:
            copy_window(xp + n * g.C * g.H * g.W, g.C, g.H, g.W, -g.pt, sp.R, -g.pl, sp.XW, work)
            xw = work
        else:
            xw = xp + n * g.C * g.H * g.W
        if bparts != NULL and k0 == 0:
            for f in range(F):
                bparts[part * F + f] += run_sum(gyp + (n * F + f) * OHW, OHW)
        for blk in range(blocks):
            for pc in range((OHW + sp.chunk - 1) // sp.chunk):
                p0 = pc * sp.chunk
                npc = min(sp.chunk, OHW - p0)
                # this chunk of grad_y as (pixel, lane), lanes past F zero, a vector of filters
                # at a time; it stays in L1 while every tap of the item reads it
                for v in range(sp.nv):
                    f = blk * BL + v * VL
                    row = gyp + (n * F + min(f, F - 1)) * OHW + p0  # (not read past F)
                    if real is float:
                        fc_grad_y_lanes_float(lvl, row, OHW, max(0, min(VL, F - f)), npc,
                                              gyt + f - blk * BL, BL)
                    else:
                        fc_grad_y_lanes_double(lvl, row, OHW, max(0, min(VL, F - f)), npc,
                                               gyt + f - blk * BL, BL)
                if sp.rr:
                    _grad_weight_rr_block(lvl, xw + pixoff[p0], tapoff, k0, k1, g.KW,
                                          g.sh * sp.XW, g.OW, npc // g.OW, gyt,
                                          partial + part * part_size + blk * K * BL)
                else:
                    _grad_weight_block(lvl, xw, tapoff, k0, k1, pixoff + p0, gyt, npc,
                                       partial + part * part_size + blk * K * BL, sp.nv)


cdef void _grad_weight_sums(Geometry g, _WeightSplit sp, Py_ssize_t f, const real* partial,
                            const double* bparts, real* dwp, real* gbp) noexcept nogil:
    """grad_w[f] (and grad_b[f] into gbp, not NULL) from the parts' partial sums, in order."""
    cdef Py_ssize_t K = g.C * g.KH * g.KW, BL = sp.BL, blk = f // BL, k, part
    cdef Py_ssize_t part_size = (g.F + BL - 1) // BL * K * BL
    cdef real s
    for k in range(K):
        s = 0
        for part in range(sp.parts):
            s = s + partial[part * part_size + (blk * K + k) * BL + f - blk * BL]
        dwp[f * K + k] = s
    if gbp != NULL:
        gbp[f] = <real>_sum_parts(bparts + f, sp.parts, g.F)


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
        _grad_weight_rows(grad_y, x, grad_w, grad_b, has_bias, g, _rows_gw_level(_level),
                          num_threads)
        return
    cdef Py_ssize_t N = g.N, C = g.C, F = g.F
    cdef Py_ssize_t OHW = g.OH * g.OW, K = C * g.KH * g.KW
    dtype = np.float32 if real is float else np.float64
    cdef int lvl = _level
    cdef int nv = fc_direct_vectors(lvl, sizeof(real), F)
    cdef Py_ssize_t BL = nv * fc_direct_block(lvl, sizeof(real)), blocks = (F + BL - 1) // BL
    cdef Py_ssize_t R, XW
    cdef bint padded
    R, XW, padded = _window_shape(g, g.OH)
    cdef Py_ssize_t parts = min(N, WEIGHT_PARTIALS), per_part = (N + parts - 1) // parts
    parts = (N + per_part - 1) // per_part
    # Pixels per kernel call: grad_y is transposed a chunk at a time into a buffer that stays in
    # L1 while every tap of the item reads it (the whole image's transposed grad_y, 3.2 MB for
    # 64 filters of 112 x 112, was written filter by filter and read again from L3); whole
    # output rows where one fits, as fc_grad_weight_rr takes them (the same sums either way).
    cdef Py_ssize_t chunk = min(OHW, max(FC_PIX, GRAD_Y_CHUNK_BYTES // (BL * sizeof(real))))
    if chunk >= g.OW:
        chunk = chunk // g.OW * g.OW
    # Each input value broadcast once per kernel row (fc_grad_weight_rr), as the forward's
    # fc_forward_rr and at the same levels, on rows of 4 to 16 columns: LeNet-5 conv2's
    # grad-weight (16 filters, 6 x 5 x 5 taps, 10 x 10 pixels), batch 64, AVX-512, one thread:
    # 455 -> 284 us (direct_conv.h).
    cdef bint rr = (_row_reuse != 2 and (lvl == 2 or _row_reuse == 1) and nv == 1 and g.sw == 1
                    and g.dw == 1 and fc_direct_grad_weight_row_reuse(g.KW, g.OW)
                    and chunk >= g.OW)
    # Taps per item: a multiple of the register block (whole kernel rows for rr); runs split the
    # taps when parts are few.
    cdef Py_ssize_t block = g.KW if rr else FC_PIX
    cdef Py_ssize_t tap_runs = max(1, min((K + block - 1) // block,
                                          (2 * num_threads + parts - 1) // parts,
                                          (K + TAPS_PER_ITEM - 1) // TAPS_PER_ITEM))
    cdef Py_ssize_t per_run = ((K + tap_runs - 1) // tap_runs + block - 1) // block * block
    tap_runs = (K + per_run - 1) // per_run
    cdef Py_ssize_t n_items = parts * tap_runs, part_size = blocks * K * BL
    cdef Py_ssize_t stride = (C * R * XW if padded else 0) + chunk * BL
    cdef int nt = <int>max(1, min(<Py_ssize_t>num_threads, n_items))
    cdef real[::1] ws = get_workspace(dtype, stride * nt + parts * part_size)
    cdef real* partial = &ws[0] + stride * nt
    # Tables: grad_b per part (in double), tap offsets, and the output pixels' offsets (taps of
    # a 1-channel "kernel" of OH x OW with steps sh, sw).
    cdef double* bparts = <double*>_tables(
        parts * F * sizeof(double) + (K + OHW) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* tapoff = <Py_ssize_t*>(bparts + parts * F)
    cdef Py_ssize_t* pixoff = tapoff + K
    memset(bparts, 0, parts * F * sizeof(double))
    _tap_offsets(tapoff, C, g.KH, g.KW, R * XW, XW, dh, dw, False)
    _tap_offsets(pixoff, 1, g.OH, g.OW, 0, XW, sh, sw, False)
    cdef _WeightSplit split
    split.tap_runs, split.per_run, split.per_part, split.parts = tap_runs, per_run, per_part, parts
    split.BL, split.padded, split.R, split.XW = BL, padded, R, XW
    split.nv, split.chunk, split.rr = nv, chunk, rr
    cdef Py_ssize_t item, f
    cdef real* work
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef const real* gyp = &grad_y[0, 0, 0, 0]
    cdef real* dwp = &grad_w[0, 0, 0, 0]
    cdef real* gbp = &grad_b[0] if has_bias else NULL
    if nt == 1:  # one thread, no region (_omp.pxd)
        with nogil:
            for item in range(n_items):
                _grad_weight_item(lvl, g, split, item, xp, gyp, tapoff, pixoff, &ws[0],
                                  partial, bparts if has_bias else NULL)
            for f in range(F):
                _grad_weight_sums(g, split, f, partial, bparts, dwp, gbp)
    else:
        with nogil, parallel(num_threads=nt):
            work = &ws[0] + omp_get_thread_num() * stride
            for item in prange(n_items, schedule="dynamic"):
                _grad_weight_item(lvl, g, split, item, xp, gyp, tapoff, pixoff, work,
                                  partial, bparts if has_bias else NULL)
        with nogil:
            for f in prange(F, num_threads=nt, schedule="static"):
                _grad_weight_sums(g, split, f, partial, bparts, dwp, gbp)
    free(bparts)
