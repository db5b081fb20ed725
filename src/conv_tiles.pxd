# One tile of the GEMM convolution (conv.pyx): its im2col matrix, the forward GEMMs into y and
# the grad-weight GEMMs into dW. Apart so that one im2col can serve both (the two gradients of a
# transposed convolution read the same columns: forward_and_grad_weight).
from libc.string cimport memcpy

from _types cimport real
from _blas cimport gemm
from _select cimport relu
from geometry cimport Geometry
from im2col cimport im2col
from tiles cimport Tile, tile_ld

cdef extern from "conv_gemm.h" nogil:
    int fc_gemm_filters(int level)
    void fc_conv_gemm_float(int level, const float* wpack, Py_ssize_t F, Py_ssize_t K,
                            const float* cols, Py_ssize_t ldc, Py_ssize_t T, float* y,
                            Py_ssize_t ldy, const float* bias, int relu)
    void fc_conv_gemm_double(int level, const double* wpack, Py_ssize_t F, Py_ssize_t K,
                             const double* cols, Py_ssize_t ldc, Py_ssize_t T, double* y,
                             Py_ssize_t ldy, const double* bias, int relu)


cdef inline void _gather_rows(const real* src, Py_ssize_t F, Py_ssize_t f0, Py_ssize_t f1,
                              Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t q0, Py_ssize_t q1,
                              real* dst) noexcept nogil:
    """dst[f - f0, (q - q0) * OW + ow] = src[n, f, oh, ow]: a multi-image tile as one matrix."""
    cdef Py_ssize_t T = (q1 - q0) * OW, OHW = OH * OW, n, f
    for n in range(q0 // OH, q1 // OH):
        for f in range(f0, f1):
            memcpy(dst + (f - f0) * T + (n * OH - q0) * OW, src + (n * F + f) * OHW,
                   OHW * sizeof(real))


cdef inline void _scatter_rows(const real* src, Py_ssize_t F, Py_ssize_t OH, Py_ssize_t OW,
                               Py_ssize_t q0, Py_ssize_t q1, real* dst) noexcept nogil:
    """The inverse of _gather_rows for all F rows."""
    cdef Py_ssize_t T = (q1 - q0) * OW, OHW = OH * OW, n, f
    for n in range(q0 // OH, q1 // OH):
        for f in range(F):
            memcpy(dst + (n * F + f) * OHW, src + f * T + (n * OH - q0) * OW, OHW * sizeof(real))


cdef inline void _bias_relu(real* y, const real* bias, bint has_bias, bint do_relu,
                            Py_ssize_t F, Py_ssize_t OH, Py_ssize_t OW, Tile s) noexcept nogil:
    """Epilogue on the y elements of one tile, while they are still in cache (a tile of part
    of a row is one row)."""
    cdef Py_ssize_t n, f, j, j0, j1, OHW = OH * OW
    cdef real b, v
    cdef real* plane
    for n in range(s.q0 // OH, (s.q1 - 1) // OH + 1):
        j0 = max(s.q0 - n * OH, 0) * OW + s.ow0
        j1 = (min(s.q1 - n * OH, OH) - 1) * OW + s.ow1
        for f in range(F):
            plane = y + (n * F + f) * OHW
            b = bias[f] if has_bias else 0
            if do_relu:
                for j in range(j0, j1):
                    plane[j] = relu(plane[j] + b)
            elif has_bias:
                for j in range(j0, j1):
                    plane[j] = plane[j] + b



cdef inline const real* tile_cols(const real* x, Geometry g, Py_ssize_t c0, Py_ssize_t c1,
                                  Tile s, real* work, Py_ssize_t* ld, int lvl) noexcept nogil:
    """The tile's im2col matrix for channels [c0, c1), rows (c, kh, kw), written to work (rows
    tile_ld(positions) apart); or, for a 1x1 stride-1 convolution on one image's positions, x
    itself. *ld: its row stride. lvl: the SIMD level of im2col's copies."""
    cdef Py_ssize_t OH = g.OH, OW = g.OW
    if g.pointwise and (s.q1 - 1) // OH == s.q0 // OH:
        ld[0] = OH * OW
        return x + (s.q0 // OH * g.C + c0) * OH * OW + (s.q0 % OH) * OW + s.ow0
    ld[0] = tile_ld((s.q1 - s.q0) * (s.ow1 - s.ow0))
    im2col(x, g, c0, c1, s, work, ld[0], lvl)
    return work


cdef inline void forward_gemms(const real* cols, Py_ssize_t ldb, const real* w,
                               const real* bias, real* y, real* ybuf, Geometry g, bint has_bias,
                               bint relu, Tile s, const real* wpack, int lvl) noexcept nogil:
    """y at the tile's positions = weight @ cols per group (+ bias) (then ReLU); ybuf: F x T
    elements for a tile of several images (its rows are then scattered to their planes). With
    wpack (one group: the weights packed for conv_gemm.h at SIMD level lvl) the SIMD GEMM,
    else BLAS."""
    cdef Py_ssize_t OH = g.OH, OW = g.OW, F = g.F, G = g.G, q0 = s.q0, q1 = s.q1
    cdef Py_ssize_t T = (q1 - q0) * (s.ow1 - s.ow0), OHW = OH * OW
    cdef Py_ssize_t at = (q0 % OH) * OW + s.ow0  # the tile's first position in its image
    cdef Py_ssize_t Fg = F // G, Kg = g.C // G * g.KH * g.KW
    cdef Py_ssize_t n0 = q0 // OH, grp, ldc
    cdef bint single = (q1 - 1) // OH == n0
    cdef real* out
    for grp in range(G):
        if single:
            out = y + (n0 * F + grp * Fg) * OHW + at
            ldc = OHW
        else:
            out = ybuf + grp * Fg * T
            ldc = T
        if wpack != NULL:  # one group; bias and ReLU fused
            if real is float:
                fc_conv_gemm_float(lvl, wpack, Fg, Kg, cols, ldb, T, out, ldc,
                                   bias if has_bias else NULL, relu)
            else:
                fc_conv_gemm_double(lvl, wpack, Fg, Kg, cols, ldb, T, out, ldc,
                                    bias if has_bias else NULL, relu)
        else:
            gemm(False, False, <int>Fg, <int>T, <int>Kg, <real>1, w + grp * Fg * Kg, <int>Kg,
                 cols + grp * Kg * ldb, <int>ldb, <real>0, out, <int>ldc)
    if not single:
        _scatter_rows(ybuf, F, OH, OW, q0, q1, y)
    if (has_bias or relu) and wpack == NULL:
        _bias_relu(y, bias, has_bias, relu, F, OH, OW, s)


cdef inline void weight_gemms(const real* cols, Py_ssize_t ldb, const real* dy, real* dw_out,
                              Py_ssize_t ld_dw, real* dybuf, bint accumulate, Geometry g,
                              Py_ssize_t c0, Py_ssize_t c1, Tile s) noexcept nogil:
    """dW[grp, :, chunk] (+)= dY_tile[grp] @ cols^T for channels [c0, c1) of a tile (cols: their
    im2col rows). The chunk lies in one group unless it is all channels (c0 = 0, c1 = C), then
    every group. dybuf: F x T elements for a tile of several images."""
    cdef Py_ssize_t OH = g.OH, OW = g.OW, F = g.F, q0 = s.q0, q1 = s.q1
    cdef Py_ssize_t T = (q1 - q0) * (s.ow1 - s.ow0), OHW = OH * OW, KK = g.KH * g.KW
    cdef Py_ssize_t at = (q0 % OH) * OW + s.ow0  # the tile's first position in its image
    cdef Py_ssize_t Cg = g.C // g.G, Fg = F // g.G, n0 = q0 // OH
    cdef Py_ssize_t g_first = c0 // Cg, g_last = (c1 - 1) // Cg, grp, lda, cg0, cg1
    cdef bint single = (q1 - 1) // OH == n0
    cdef const real* A
    cdef real beta = 1 if accumulate else 0
    if not single:
        _gather_rows(dy, F, g_first * Fg, (g_last + 1) * Fg, OH, OW, q0, q1, dybuf)
    for grp in range(g_first, g_last + 1):
        cg0 = max(c0, grp * Cg)
        cg1 = min(c1, (grp + 1) * Cg)
        if single:
            A = dy + (n0 * F + grp * Fg) * OHW + at
            lda = OHW
        else:
            A = dybuf + (grp - g_first) * Fg * T
            lda = T
        gemm(False, True, <int>Fg, <int>((cg1 - cg0) * KK), <int>T, <real>1, A, <int>lda,
             cols + (cg0 - c0) * KK * ldb, <int>ldb, beta,
             dw_out + grp * Fg * ld_dw + (cg0 - grp * Cg) * KK, <int>ld_dw)
