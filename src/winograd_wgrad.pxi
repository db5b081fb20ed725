# Winograd grad-weight F(3x3, 4x4) (included by winograd.pyx): see winograd_wgrad.h.
#
# grad_w[f, c] = G^T M[f, c] G with M[p] (F x C) = sum over tiles t of Ud[p][f][t] V[p][c][t]:
# V the forward's input transform of the 6x6 windows (fw_input), Ud = A u A^T of the tiles' 4x4
# grad_y blocks; the tiles are the forward's (_axis_tiles, _tiles: any padding, and dilation as
# the sub-grids x[..., i::dh, j::dw], by addressing).
# Flow: the tiles are taken in super-blocks sized so that their V and Ud stay in the caches; per
# super-block, the threads transform chunks of channels and of filters, then run the 36 GEMMs
# M[p] (+)= Ud[p] @ V[p]^T (SciPy's BLAS: its packing is a copy of data used once here, unlike the
# forward's weights), split by point and block of filters. Last, the kernel transform per filter.
# Threads: every element of M is summed by one GEMM call per super-block, the super-blocks in
# order, and the super-blocks and the GEMMs' shapes follow from the shapes alone: the result is
# bitwise the same for any thread count.
from _types cimport real
from _blas cimport gemm

cdef extern from "winograd_wgrad.h" nogil:
    void wg_dy_float(int level, const float* gy, Py_ssize_t F, Py_ssize_t OHW, Py_ssize_t OW,
                     Py_ssize_t dh, Py_ssize_t dw, const fw_tile* tiles, Py_ssize_t nT,
                     float* Ud, Py_ssize_t FT)
    void wg_dy_double(int level, const double* gy, Py_ssize_t F, Py_ssize_t OHW, Py_ssize_t OW,
                      Py_ssize_t dh, Py_ssize_t dw, const fw_tile* tiles, Py_ssize_t nT,
                      double* Ud, Py_ssize_t FT)
    void wg_input_double(int level, const double* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t dh, Py_ssize_t dw, const fw_tile* tiles, Py_ssize_t nT,
                         double* Vt, Py_ssize_t CT)
    void wg_kernel_float(int level, const float* Mf, Py_ssize_t PS, Py_ssize_t C, float* dwf)
    void wg_kernel_double(int level, const double* Mf, Py_ssize_t PS, Py_ssize_t C, double* dwf)

cdef enum:
    # A super-block's V and Ud (36 (C + F) T elements) aim at this many bytes.
    WG_SUPER_BYTES = 4194304
    WG_CHUNK = 8  # channels (filters) per item of the input (grad_y) transform
    WG_MAX_FB = 128  # filters per GEMM item

cdef Py_ssize_t _wgrad_tiles = 0  # 0: by shape (wgrad_tiles()); else forced, for tests/tuning


def set_wgrad_tiles(Py_ssize_t value):
    """Force `value` tiles per super-block of grad-weight (a positive multiple of 16), or 0 for
    the shape's choice; for tests and tuning. Returns the old setting."""
    global _wgrad_tiles
    if value < 0 or value % MIN_BLOCK_TILES:
        raise ValueError(f"value must be 0 or a positive multiple of {MIN_BLOCK_TILES}, got {value}")
    previous = _wgrad_tiles
    _wgrad_tiles = value
    return previous


def wgrad_tiles(Py_ssize_t C, Py_ssize_t F, Py_ssize_t itemsize):
    """Tiles per super-block of grad-weight for C channels, F filters, elements of `itemsize`
    bytes: V and Ud (36 (C + F) T elements) about WG_SUPER_BYTES."""
    if _wgrad_tiles:
        return _wgrad_tiles
    cdef Py_ssize_t T = WG_SUPER_BYTES // (36 * itemsize * (C + F))
    return max(MIN_BLOCK_TILES, T // MIN_BLOCK_TILES * MIN_BLOCK_TILES)


def grad_weight(const real[:, :, :, ::1] grad_y, const real[:, :, :, ::1] x,
                real[:, :, :, ::1] grad_w, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                Py_ssize_t dw, int num_threads):
    """grad_w of y = conv(x, w) with stride 1, one group, 3x3 weights, by F(3x3, 4x4).

    grad_y: (N, F, OH, OW), x: (N, C, H, W), grad_w: (F, C, 3, 3) written in full, float32 or
    float64, C-contiguous; pt, pl: the forward's top and left padding (any integer: bottom and
    right follow from OH, OW); dh, dw >= 1: its dilation. No size is 0. Calls BLAS from the
    OpenMP threads: the caller holds BLAS to one thread.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = grad_y.shape[1], OH = grad_y.shape[2], OW = grad_y.shape[3]
    if grad_y.shape[0] != N:
        raise ValueError(f"grad_y must have {N} images, got {grad_y.shape[0]}")
    if (grad_w.shape[0] != F or grad_w.shape[1] != C or grad_w.shape[2] != 3
            or grad_w.shape[3] != 3):
        raise ValueError(f"grad_w must have shape ({F}, {C}, 3, 3), got {tuple(grad_w.shape)[:4]}")
    if dh < 1 or dw < 1:
        raise ValueError(f"dilation must be >= 1, got ({dh}, {dw})")
    cdef _Geometry g
    g.lvl = _level
    g.in_lvl = g.lvl if N * C * H * W < 2**31 else 0  # as in _convolve
    if g.in_lvl == 2 and dw <= 2:
        g.in_lvl = 1
    g.C, g.H, g.W, g.F, g.OH, g.OW, g.dh, g.dw = C, H, W, F, OH, OW, dh, dw
    g.RT = _axis_tiles(OH, H, pt, dh, NULL, NULL, NULL, NULL)
    g.CT = _axis_tiles(OW, W, pl, dw, NULL, NULL, NULL, NULL)
    g.per_image = g.RT * g.CT
    g.n_tiles = N * g.per_image
    cdef Py_ssize_t RT = g.RT, CT = g.CT
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
    try:
        _wgrad(&g, &grad_y[0, 0, 0, 0], &x[0, 0, 0, 0], &grad_w[0, 0, 0, 0], num_threads)
    finally:
        free(g.row_start)
        free(g.row_mask)


cdef _wgrad(const _Geometry* g, const real* gy, const real* x, real* gw, int num_threads):
    cdef Py_ssize_t C = g.C, F = g.F, n_tiles = g.n_tiles
    cdef Py_ssize_t HW = g.H * g.W, OHW = g.OH * g.OW, TB = MIN_BLOCK_TILES
    cdef Py_ssize_t S = wgrad_tiles(C, F, sizeof(real))
    cdef Py_ssize_t n_sb = (n_tiles + S - 1) // S
    if n_sb == 1:
        S = (n_tiles + TB - 1) // TB * TB
    # Workspace: the super-block's tile list (64 bytes per fw_tile), V, Ud, and M with its points
    # a cache line more than F C apart (as FW_PSTRIDE).
    cdef Py_ssize_t PS = F * C + 16, tile_size = S * 64 // sizeof(real)
    cdef Py_ssize_t v_size = 36 * FW_PSTRIDE(C, S), u_size = 36 * FW_PSTRIDE(F, S)
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64",
                                      tile_size + v_size + u_size + 36 * PS + 64)
    cdef real* base = &ws[0] + (64 - (<size_t>&ws[0]) % 64) % 64 // sizeof(real)
    cdef fw_tile* tiles = <fw_tile*>base
    cdef real* V = base + tile_size
    cdef real* Ud = V + v_size
    cdef real* M = Ud + u_size
    cdef Py_ssize_t n_xc = (C + WG_CHUNK - 1) // WG_CHUNK, n_fc = (F + WG_CHUNK - 1) // WG_CHUNK
    cdef Py_ssize_t n_fb = (F + WG_MAX_FB - 1) // WG_MAX_FB
    cdef Py_ssize_t FB = (F + n_fb - 1) // n_fb
    cdef int nt = <int>max(1, min(<Py_ssize_t>num_threads, max(n_xc + n_fc, 36 * n_fb)))
    cdef Py_ssize_t sb, t0, nv, Tv, k, item, c0, f0, n, p, f, CTv, FTv
    cdef int lvl = g.lvl, in_lvl = g.in_lvl
    with nogil:
        for sb in range(n_sb):
            t0 = sb * S
            nv = min(S, n_tiles - t0)
            Tv = (nv + TB - 1) // TB * TB  # whole vectors at every level
            CTv = FW_PSTRIDE(C, Tv)
            FTv = FW_PSTRIDE(F, Tv)
            with parallel(num_threads=nt):
                for k in prange(Tv // TB, schedule="static"):
                    _tiles(g, t0 + k * TB, TB, tiles + k * TB)
                for item in prange(n_xc + n_fc, schedule="dynamic"):
                    if item < n_xc:
                        c0 = item * WG_CHUNK
                        n = min(WG_CHUNK, C - c0)
                        if real is float:
                            fw_input(in_lvl, x + c0 * HW, n, g.H, g.W, g.dh, g.dw, tiles, Tv,
                                     V + c0 * Tv, CTv)
                        else:
                            wg_input_double(lvl, x + c0 * HW, n, g.H, g.W, g.dh, g.dw, tiles,
                                            Tv, V + c0 * Tv, CTv)
                    else:
                        f0 = (item - n_xc) * WG_CHUNK
                        n = min(WG_CHUNK, F - f0)
                        if real is float:
                            wg_dy_float(lvl, gy + f0 * OHW, n, OHW, g.OW, g.dh, g.dw, tiles, Tv,
                                        Ud + f0 * Tv, FTv)
                        else:
                            wg_dy_double(lvl, gy + f0 * OHW, n, OHW, g.OW, g.dh, g.dw, tiles,
                                         Tv, Ud + f0 * Tv, FTv)
                for item in prange(36 * n_fb, schedule="dynamic"):
                    p = item // n_fb
                    f0 = (item - p * n_fb) * FB
                    gemm(False, True, <int>min(FB, F - f0), <int>C, <int>nv, <real>1,
                         Ud + p * FTv + f0 * Tv, <int>Tv, V + p * CTv, <int>Tv,
                         <real>(0 if sb == 0 else 1), M + p * PS + f0 * C, <int>C)
        for f in prange(F, num_threads=nt, schedule="static"):
            if real is float:
                wg_kernel_float(lvl, M + f * C, PS, C, gw + f * 9 * C)
            else:
                wg_kernel_double(lvl, M + f * C, PS, C, gw + f * 9 * C)
