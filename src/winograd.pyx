# Winograd F(4x4, 3x3) convolution for float32, stride 1, one group, any padding and dilation.
#
# Why: for 3x3 layers oneDNN's direct convolution (torch) already runs near the SGEMM ceiling, so
# no im2col + GEMM can pass it; F(4x4, 3x3) does 36 multiplies per 16 outputs instead of 144.
# Flow, shared path (many tiles): the weights are transformed once per call (U, 36 x F x C,
# packed for the GEMM); then each thread owns blocks of tiles end to end: input transform
# (V[36][C][T]) -> 36 GEMMs M[p] = U[p] @ V[p] (in groups of filters) -> output transform with
# bias and ReLU, written straight into y, so a block's transformed data stays in the thread's
# cache. The transforms and the GEMM are in winograd_f43.h. Few tiles (small images, many
# channels): winograd_few.h / winograd_few.pxi, items of filters, weights transformed in chunks.
#
# Dilation: a dilated stride-1 3x3 is dh * dw ordinary 3x3 convolutions on the sub-grids
# x[..., i::dh, j::dw] -> y[..., i::dh, j::dw]; tiles of every sub-grid are listed together and
# the transforms read and write with strides dh, dw (no copies).
# GEMM: our own register-blocked kernel (winograd_f43.h) over weights packed once per call, not
# BLAS: OpenBLAS's sgemm repacked U for every block, which cost more than its multiply at C = 256
# (and BLAS needs no thread limit here).
# Threads: blocks depend on the shapes only and each output element is written by one tile, in
# a fixed order, so results are bitwise identical for any thread count.
from cython.parallel cimport parallel, prange
from libc.stdlib cimport malloc, free

from _omp cimport omp_get_thread_num

from fastconv._kernels.workspace import get_workspace

cdef extern from "winograd_f43.h" nogil:
    ctypedef struct fw_tile:
        Py_ssize_t xoff
        Py_ssize_t yoff
        int rows, cols, vh, vw, row8
    int fc_simd_level()
    int fw_lanes(int level)
    void fw_weights(int level, const float* w, Py_ssize_t F, Py_ssize_t C, Py_ssize_t sf,
                    Py_ssize_t sc, Py_ssize_t sk, Py_ssize_t b0, Py_ssize_t b1, float* U)
    void fw_input(int level, const float* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                  Py_ssize_t dh, Py_ssize_t dw, const fw_tile* tiles, Py_ssize_t T, float* Vt,
                  Py_ssize_t CT)
    int fw_gemm(int level, const float* U, Py_ssize_t F, Py_ssize_t C, const float* Vt,
                 Py_ssize_t T, Py_ssize_t f0, Py_ssize_t f1, Py_ssize_t G, float* M,
                 const float* bias,
                 int relu, const fw_tile* tiles, float* y, Py_ssize_t OHW, Py_ssize_t OW,
                 Py_ssize_t dh, Py_ssize_t dw)
    int fw_output(int level, const float* M, Py_ssize_t FM, Py_ssize_t F, Py_ssize_t T,
                   const float* bias, int relu, const fw_tile* tiles, float* y, Py_ssize_t OHW,
                   Py_ssize_t OW, Py_ssize_t dh, Py_ssize_t dw)
    int FW_FR
    Py_ssize_t FW_USTRIDE(Py_ssize_t C)
    Py_ssize_t FW_PSTRIDE(Py_ssize_t rows, Py_ssize_t T)

cdef extern from "winograd_few.h" nogil:
    int FWF_CC
    Py_ssize_t FWF_USTRIDE(Py_ssize_t FB)
    int fwf_fb(int level)
    void fwf_weights(int level, const float* w, Py_ssize_t sa, Py_ssize_t sk, Py_ssize_t na,
                     Py_ssize_t na_ok, Py_ssize_t nb, Py_ssize_t nb_ok, float* U, Py_ssize_t ldu)
    void fwf_gemm(int level, const float* U, int grad, const float* Vt, Py_ssize_t pstv,
                  Py_ssize_t T, Py_ssize_t nc, float* M, Py_ssize_t pstm, int first)

cdef enum:
    # A block's V and M (36 * (C + F) * T floats) aim at about this many bytes: an L2 cache.
    BLOCK_BYTES = 262144
    MIN_BLOCK_TILES = 16  # a multiple of the vector lanes at every level
    # fw_gemm's filter groups: their GEMM results (36 x 6 G x T floats) aim at this many bytes.
    GROUP_BYTES = 131072
    MAX_BLOCK_TILES = 128
    WEIGHT_ITEMS = 16  # filters of the weight transform split in this many parts
    # With fewer tile blocks than this, the few-tiles path (threads take blocks of filters).
    MIN_ITEMS = 8
    # The forward's shared path with AVX-512 from this many tiles, below this many channels
    # (measured: _convolve).
    SHARED_MIN_TILES_AVX512 = 128
    SHARED_MAX_CHANNELS_AVX512 = 384

ctypedef struct _Geometry:
    int lvl, in_lvl, relu
    const float* w
    Py_ssize_t sf, sc, sk
    Py_ssize_t C, H, W, F, OH, OW, dh, dw, RT, CT, per_image, n_tiles, T, G
    Py_ssize_t* row_start
    Py_ssize_t* row_out
    Py_ssize_t* col_start
    Py_ssize_t* col_out
    int* row_mask
    int* row_valid
    int* col_mask
    int* col_valid
    const float* x
    float* y
    const float* bias

include "simd_level.pxi"
cdef Py_ssize_t _block_tiles = 0  # 0: by shape (block_tiles()); else forced, for tests/tuning
cdef int _few_tiles = -1  # -1: by shape; 0 / 1: the few-tiles path never / always (tests)


def set_few_tiles(int value):
    """Force the few-tiles path (winograd_few.h) on (1) or off (0), or -1 for the shape's
    choice (see _convolve); for tests and tuning. Returns the old value."""
    global _few_tiles
    if value not in (-1, 0, 1):
        raise ValueError(f"value must be -1, 0 or 1, got {value}")
    previous = _few_tiles
    _few_tiles = value
    return previous


def set_block_tiles(Py_ssize_t value):
    """Force `value` tiles per block (a positive multiple of 16), or 0 for the shape's choice;
    for tests and tuning. Returns the old setting."""
    global _block_tiles
    if value < 0 or value % MIN_BLOCK_TILES:
        raise ValueError(f"value must be 0 or a positive multiple of {MIN_BLOCK_TILES}, got {value}")
    previous = _block_tiles
    _block_tiles = value
    return previous


def block_tiles(Py_ssize_t C, Py_ssize_t F):
    """Tiles per block for C input and F output channels: the block's transformed input and
    output (36 * (C + F) * T floats) about fill half an L2 cache (Zen 3, 1 thread: 16 tiles were
    fastest for C = F = 64..256, up to 2x faster than 64), and at least two vectors of tiles for
    the GEMM's 6 x 2-vector register block (else it runs 6 accumulators: latency-bound)."""
    if _block_tiles:
        return _block_tiles
    cdef Py_ssize_t T = BLOCK_BYTES // (36 * 4 * (C + F))
    T = T // MIN_BLOCK_TILES * MIN_BLOCK_TILES
    return max(MIN_BLOCK_TILES, 2 * fw_lanes(_level), min(MAX_BLOCK_TILES, T))


cdef Py_ssize_t _axis_tiles(Py_ssize_t O, Py_ssize_t I, Py_ssize_t pad, Py_ssize_t d,
                            Py_ssize_t* start, Py_ssize_t* out, int* mask, int* valid):
    """Tiles along one axis (output length O, input length I): per tile the first input index
    of its window (may be outside [0, I)), its first output index, the in-range window positions
    as a bit mask and its real outputs. Returns the count; with NULL arrays, only counts."""
    cdef Py_ssize_t i, k, a, n = 0, Os, pos
    for i in range(min(d, O)):  # sub-grid i: outputs i, i + d, ...
        Os = (O - i + d - 1) // d
        for a in range(0, Os, 4):
            if start != NULL:
                pos = i - pad + d * a
                start[n] = pos
                out[n] = i + d * a
                valid[n] = <int>min(4, Os - a)
                mask[n] = 0
                for k in range(6):
                    if 0 <= pos + k * d < I:
                        mask[n] |= 1 << k
            n += 1
    return n


def forward(const float[:, :, :, ::1] x, const float[:, :, :, ::1] weight,
            const float[::1] bias, float[:, :, :, ::1] y, Py_ssize_t pt, Py_ssize_t pl,
            Py_ssize_t dh, Py_ssize_t dw, bint has_bias, bint relu, int num_threads):
    """y = conv(x, weight) (+ bias) (then ReLU), stride 1, one group, 3x3 weights.

    x: (N, C, H, W), weight: (F, C, 3, 3), bias: (F,) or empty, y: (N, F, OH, OW), all float32
    and C-contiguous; pt, pl: top and left padding (any integer: bottom and right follow from OH,
    OW); dh, dw >= 1: dilation. No size is 0.

    Returns whether every output came out finite before bias and ReLU; if not (an inf or NaN in
    x or the weights, or overflow), y holds the transform's values, which may differ from the
    exact convolution's where it would be finite: the caller recomputes y on an exact path.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], F = weight.shape[0]
    if weight.shape[1] != C or weight.shape[2] != 3 or weight.shape[3] != 3:
        raise ValueError(f"weight must have shape (F, {C}, 3, 3), got {tuple(weight.shape)[:4]}")
    if y.shape[0] != N or y.shape[1] != F:
        raise ValueError(f"y must have shape ({N}, {F}, OH, OW), got {tuple(y.shape)[:4]}")
    if has_bias and bias.shape[0] != F:
        raise ValueError(f"bias must have shape ({F},), got ({bias.shape[0]},)")
    return _convolve(x, &weight[0, 0, 0, 0], F, 9 * C, 9, 1, &bias[0] if has_bias else NULL, y,
                     pt, pl, dh, dw, relu, num_threads)


def grad_input(const float[:, :, :, ::1] grad_y, const float[:, :, :, ::1] weight,
               float[:, :, :, ::1] grad_x, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
               Py_ssize_t dw, int num_threads):
    """grad_x of y = conv(x, weight) with stride 1, one group: the convolution of grad_y, padded
    by 2 dh - pt (2 dw - pl), with the weights rotated 180 degrees and transposed (F <-> C),
    which the weight transform reads in place (no flipped copy: 9.4 MB at 512 x 512).

    grad_y: (N, F, OH, OW), weight: (F, C, 3, 3), grad_x: (N, C, H, W), float32, C-contiguous;
    pt, pl, dh, dw: the forward's top and left padding and dilation. No size is 0.
    """
    cdef Py_ssize_t N = grad_y.shape[0], F = grad_y.shape[1], C = grad_x.shape[1]
    if weight.shape[0] != F or weight.shape[1] != C or weight.shape[2] != 3 or weight.shape[3] != 3:
        raise ValueError(f"weight must have shape ({F}, {C}, 3, 3), got {tuple(weight.shape)[:4]}")
    if grad_x.shape[0] != N:
        raise ValueError(f"grad_x must have {N} images, got {grad_x.shape[0]}")
    # Filter c, channel f, tap k of the flipped kernel = weight[f, c, 8 - k].
    _convolve(grad_y, &weight[0, 0, 2, 2], C, 9, 9 * C, -1, NULL, grad_x, 2 * dh - pt,
              2 * dw - pl, dh, dw, False, num_threads)


cdef _convolve(const float[:, :, :, ::1] x, const float* w, Py_ssize_t F, Py_ssize_t sf,
               Py_ssize_t sc, Py_ssize_t sk, const float* bias, float[:, :, :, ::1] y,
               Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, bint relu,
               int num_threads):
    """y = conv(x, w) (+ bias) (then ReLU): tap k of filter f, channel c is w[f sf + c sc + k sk];
    bias: F values or NULL. Returns whether every output before bias and ReLU was finite."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = y.shape[2], OW = y.shape[3]
    if y.shape[1] != F:
        raise ValueError(f"the output must have {F} channels, got {y.shape[1]}")
    if dh < 1 or dw < 1:
        raise ValueError(f"dilation must be >= 1, got ({dh}, {dw})")
    cdef _Geometry g
    g.lvl = _level
    # The SIMD gathers take 32-bit lane offsets: the baseline input transform for huger inputs
    # (it handles any block of a multiple of 4 tiles, so it mixes with the other kernels).
    g.in_lvl = g.lvl if N * C * H * W < 2**31 else 0
    # Columns 1 or 2 apart: AVX-512 CPUs take the AVX2 input transform, whose row loads and
    # transposes replaced the gathers on AVX2 (the AVX-512 gathers are not measured yet).
    if g.in_lvl == 2 and dw <= 2:
        g.in_lvl = 1
    g.C, g.H, g.W, g.F, g.OH, g.OW, g.dh, g.dw = C, H, W, F, OH, OW, dh, dw
    g.RT = _axis_tiles(OH, H, pt, dh, NULL, NULL, NULL, NULL)
    g.CT = _axis_tiles(OW, W, pl, dw, NULL, NULL, NULL, NULL)
    g.per_image = g.RT * g.CT
    g.n_tiles = N * g.per_image
    g.T = block_tiles(C, F)
    g.relu = relu
    cdef Py_ssize_t T = g.T, RT = g.RT, CT = g.CT
    cdef Py_ssize_t n_blocks = (g.n_tiles + T - 1) // T
    cdef Py_ssize_t FR = FW_FR, Fp = (F + FR - 1) // FR * FR
    g.G = max(1, min(Fp // FR, GROUP_BYTES // (36 * FR * T * 4)))
    g.row_start = <Py_ssize_t*>malloc(2 * (RT + CT) * sizeof(Py_ssize_t))
    g.row_mask = <int*>malloc(2 * (RT + CT) * sizeof(int))
    if g.row_start == NULL or g.row_mask == NULL:
        free(g.row_start)
        free(g.row_mask)
        raise MemoryError()
    g.row_out = g.row_start + RT
    g.col_start = g.row_start + 2 * RT
    g.col_out = g.col_start + CT
    g.row_valid = g.row_mask + RT
    g.col_mask = g.row_mask + 2 * RT
    g.col_valid = g.col_mask + CT
    _axis_tiles(OH, H, pt, dh, g.row_start, g.row_out, g.row_mask, g.row_valid)
    _axis_tiles(OW, W, pl, dw, g.col_start, g.col_out, g.col_mask, g.col_valid)
    g.x = &x[0, 0, 0, 0]
    g.y = &y[0, 0, 0, 0]
    g.bias = bias
    g.w, g.sf, g.sc, g.sk = w, sf, sc, sk
    try:
        # Few tiles (small images): see winograd_few.h. A shared U (36 F C floats, 4x the
        # weights: 38 MB at C = F = 512) would go to memory and back for few tiles' GEMMs, and
        # few blocks of tiles would leave threads idle. Zen 3, 1 thread, batch 8, CPU time: the
        # few-tiles path 1.35-2.7x faster at C = F = 256, 512 with 32 or 128 tiles, even at
        # C = F = 256 with 392 tiles, 5-30% slower at C = F = 128 with 128 to 392 tiles and
        # 0-12% at C = F = 64 with 98 to 128 (where the shared U is reused enough).
        # With AVX-512 (Ice Lake-SP, 1.25 MB L2) the shared path won the forward at C = F = 256
        # from 128 tiles on: one thread, CPU time, minima of 30 alternating calls, shared / few
        # 0.78x with 256 tiles, 0.84x with 128 (8 x 14 x 14), 1.00x with 64, 1.11x with 32; at
        # C = F = 384 with 128 tiles 1.04x, at 512 1.00x (128 tiles) and 1.28x (32). Two
        # threads (wall, minima of 40, a loaded machine): 0.81-0.93x with 128 tiles (4 blocks
        # of 32, two per thread), 1.08x with 64. Grad-input (sk = -1) was not measured: it
        # keeps the rule above.
        shared = (g.lvl == 2 and sk == 1 and g.n_tiles >= SHARED_MIN_TILES_AVX512
                  and FEW_MIN_CHANNELS <= min(C, F) < SHARED_MAX_CHANNELS_AVX512)
        if _few_tiles == 1 or (_few_tiles == -1 and not shared and (n_blocks < MIN_ITEMS or (
                min(C, F) >= FEW_MIN_CHANNELS and g.n_tiles <= FEW_MAX_TILES))):
            return _convolve_few(&g, num_threads)
        return _convolve_shared(&g, num_threads)
    finally:
        free(g.row_start)
        free(g.row_mask)


cdef bint _convolve_shared(_Geometry* g, int num_threads) except? False:
    """The weights transformed once into a shared U; then each thread takes whole blocks of tiles
    for all filters (_block). Returns whether every output before bias and ReLU was finite."""
    cdef Py_ssize_t T = g.T, C = g.C, F = g.F, FR = FW_FR, Fp = (F + FR - 1) // FR * FR
    cdef Py_ssize_t n_items = (g.n_tiles + T - 1) // T
    # Shared: U (36 Fp C). Per thread: V (36 C T), M (36 G FR T), the block's tile list
    # (fw_tile: at most 64 bytes = 16 floats).
    cdef Py_ssize_t u_size = 36 * (Fp // FR) * FW_USTRIDE(C)
    cdef Py_ssize_t stride = 36 * (C + g.G * FR) * T + 36 * 32 + 16 * T + 16
    cdef int nt = <int>max(1, min(<Py_ssize_t>num_threads, n_items))
    cdef float[::1] ws = get_workspace("float32", u_size + stride * nt + 16)
    cdef float* U = &ws[0] + (16 - (<size_t>&ws[0] // 4) % 16) % 16  # 64-byte aligned
    cdef Py_ssize_t item, f0, f1, nonfinite = 0
    cdef float* work
    cdef float* Vt
    cdef float* M
    cdef fw_tile* tiles
    with nogil, parallel(num_threads=<int>min(<Py_ssize_t>num_threads, WEIGHT_ITEMS)):
        for item in prange(WEIGHT_ITEMS, schedule="static"):
            f0 = item * (Fp // FR) // WEIGHT_ITEMS  # filter blocks [f0, f1)
            f1 = (item + 1) * (Fp // FR) // WEIGHT_ITEMS
            if f0 < f1:
                fw_weights(g.lvl, g.w, F, C, g.sf, g.sc, g.sk, f0, f1, U)
    with nogil, parallel(num_threads=nt):
        work = U + u_size + omp_get_thread_num() * stride
        # 64-byte alignment of the tile list (the workspace is at least 16-byte aligned)
        tiles = <fw_tile*>(work + (16 - (<size_t>work // 4) % 16) % 16)
        Vt = <float*>(tiles + T)
        M = Vt + 36 * C * T + 36 * 16
        for item in prange(n_items, schedule="dynamic"):
            nonfinite += _block(g, item, U, tiles, Vt, M)
    return nonfinite == 0


cdef void _tiles(const _Geometry* g, Py_ssize_t t0, Py_ssize_t T, fw_tile* tiles) noexcept nogil:
    """The tile list of tiles [t0, t0 + T); those past the last tile get zero windows and are
    never stored."""
    cdef Py_ssize_t k, t, n, q, r, s
    cdef Py_ssize_t CHW = g.C * g.H * g.W, FOHW = g.F * g.OH * g.OW
    for k in range(T):
        t = t0 + k
        if t < g.n_tiles:
            n = t // g.per_image
            q = t - n * g.per_image
            r = q // g.CT
            s = q - r * g.CT
            tiles[k].xoff = n * CHW + g.row_start[r] * g.W + g.col_start[s]
            tiles[k].yoff = n * FOHW + g.row_out[r] * g.OW + g.col_out[s]
            tiles[k].rows = g.row_mask[r]
            tiles[k].cols = g.col_mask[s]
            tiles[k].vh = g.row_valid[r]
            tiles[k].vw = g.col_valid[s]
            tiles[k].row8 = (g.row_mask[r] == 63 and g.dw <= 2 and g.col_start[s] >= 0
                             and g.col_start[s] + 8 * g.dw <= g.W)
        else:
            tiles[k].xoff = 0
            tiles[k].yoff = 0
            tiles[k].rows = 0
            tiles[k].cols = 0
            tiles[k].vh = 0
            tiles[k].vw = 0
            tiles[k].row8 = 0


cdef int _block(const _Geometry* g, Py_ssize_t blk, const float* U, fw_tile* tiles, float* Vt,
                float* M) noexcept nogil:
    """Tiles [blk T, blk T + T), all filters: input transform, GEMM, output transform into y.
    Returns 1 if an output before bias and ReLU was inf or NaN, else 0."""
    cdef Py_ssize_t T = g.T, lanes = fw_lanes(g.lvl)
    cdef Py_ssize_t nv = min(T, g.n_tiles - blk * T)
    cdef Py_ssize_t Tv = (nv + lanes - 1) // lanes * lanes
    cdef Py_ssize_t Fp = (g.F + FW_FR - 1) // FW_FR * FW_FR
    _tiles(g, blk * T, T, tiles)
    fw_input(g.in_lvl, g.x, g.C, g.H, g.W, g.dh, g.dw, tiles, Tv, Vt, FW_PSTRIDE(g.C, Tv))
    return fw_gemm(g.lvl, U, g.F, g.C, Vt, Tv, 0, Fp, g.G, M, g.bias, g.relu, tiles, g.y,
                   g.OH * g.OW, g.OW, g.dh, g.dw)


include "winograd_few.pxi"
include "winograd_wgrad.pxi"
