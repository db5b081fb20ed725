# Winograd grad-weight F(3x3, 4x4) (included by winograd.pyx): see winograd_wgrad.h.
#
# grad_w[f, c] = G^T M[f, c] G with M[p][c][f] = sum over tiles t of V[p][c][t] Ud[p][t][f]:
# V the forward's input transform of the 6x6 windows (fw_input), Ud = A u A^T of the tiles' 4x4
# grad_y blocks; the tiles are the forward's (_axis_tiles, _tiles: any padding, and dilation as
# the sub-grids x[..., i::dh, j::dw], by addressing).
# Work items: (run of tiles, block of filters, block of channels). An item walks its run in
# blocks of tiles sized for L2: input transform of its channels, grad_y transform of its filters,
# then the 36 GEMMs into its part of the run's partial M (own kernel: wg_gemm). Many tiles and
# few channels (early layers) take several runs, each with its own partial M; many channels
# (M large) take one run and more blocks (the transforms then repeat per block, cheap next to
# the GEMMs there). Last, per channel: the partials summed in order and the kernel transform;
# with one run, each item transforms its block of M into grad_w itself, while it is in cache.
# Barriers: none with one run, one between the items and the last pass otherwise.
# Threads: the runs, blocks and tile blocks follow from the shapes alone and every element of a
# partial is summed by one item in tile order: bitwise the same result for any thread count.
from _types cimport real

cdef extern from "winograd_wgrad.h" nogil:
    int WG_COLS
    void wg_dy_float(int level, const float* gy, Py_ssize_t nf, Py_ssize_t nfp, Py_ssize_t OHW,
                     Py_ssize_t OW, Py_ssize_t dh, Py_ssize_t dw, const fw_tile* tiles,
                     Py_ssize_t nv, float* Ud, Py_ssize_t PU)
    void wg_dy_double(int level, const double* gy, Py_ssize_t nf, Py_ssize_t nfp,
                      Py_ssize_t OHW, Py_ssize_t OW, Py_ssize_t dh, Py_ssize_t dw,
                      const fw_tile* tiles, Py_ssize_t nv, double* Ud, Py_ssize_t PU)
    void wg_input_double(int level, const double* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t dh, Py_ssize_t dw, const fw_tile* tiles, Py_ssize_t nT,
                         double* Vt, Py_ssize_t CT)
    void wg_gemm_float(int level, const float* Vt, Py_ssize_t ldv, Py_ssize_t PV,
                       const float* Ud, Py_ssize_t PU, Py_ssize_t K, Py_ssize_t nc,
                       Py_ssize_t nfp, float* M, Py_ssize_t ldm, Py_ssize_t PM, int add)
    void wg_gemm_double(int level, const double* Vt, Py_ssize_t ldv, Py_ssize_t PV,
                        const double* Ud, Py_ssize_t PU, Py_ssize_t K, Py_ssize_t nc,
                        Py_ssize_t nfp, double* M, Py_ssize_t ldm, Py_ssize_t PM, int add)
    void wg_kernel_float(int level, const float* Mc, Py_ssize_t P, Py_ssize_t PR, Py_ssize_t PM,
                         Py_ssize_t F, Py_ssize_t C, float* dwc)
    void wg_kernel_double(int level, const double* Mc, Py_ssize_t P, Py_ssize_t PR,
                          Py_ssize_t PM, Py_ssize_t F, Py_ssize_t C, double* dwc)

# Tuning (set_wgrad_config): a tile block's V and Ud aim at this many bytes (per thread); blocks
# of at most this many channels / filters; at least this many items, as runs of tiles, while
# the runs' partial M stay within this many bytes. Ice Lake, 1 thread, CPU time, the ResNet
# layers and the dilated one: blocks of 32 channels 10-50% slower than 64, 128 within the noise
# (+-10%); 256 KB or 1 MB blocks, 16 items: within the noise or slower.
cdef Py_ssize_t _wg_block_bytes = 524288
cdef Py_ssize_t _wg_channels = 64  # float32; float64: half
cdef Py_ssize_t _wg_items = 8
cdef Py_ssize_t _wg_partial_bytes = 16777216
cdef Py_ssize_t _wg_tiles = 0  # tiles per block; 0: from _wg_block_bytes


def set_wgrad_config(Py_ssize_t tiles=-1, Py_ssize_t block_bytes=-1, Py_ssize_t channels=-1,
                     Py_ssize_t items=-1, Py_ssize_t partial_bytes=-1):
    """Set grad-weight's work split (tests and tuning; -1 keeps a value): tiles per block (a
    multiple of 16; 0: from block_bytes), bytes of a block's transforms, channels (filters) per
    block (a multiple of 32), items aimed at, bytes of the partial sums. Returns the old values
    as a dict of the same names."""
    global _wg_tiles, _wg_block_bytes, _wg_channels, _wg_items, _wg_partial_bytes
    if tiles != -1 and (tiles < 0 or tiles % MIN_BLOCK_TILES):
        raise ValueError(f"tiles must be 0 or a positive multiple of {MIN_BLOCK_TILES}, got {tiles}")
    if channels != -1 and (channels <= 0 or channels % WG_COLS):
        raise ValueError(f"channels must be a positive multiple of {WG_COLS}, got {channels}")
    for name, value in (("block_bytes", block_bytes), ("items", items),
                        ("partial_bytes", partial_bytes)):
        if value != -1 and value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    old = dict(tiles=_wg_tiles, block_bytes=_wg_block_bytes, channels=_wg_channels,
               items=_wg_items, partial_bytes=_wg_partial_bytes)
    if tiles != -1:
        _wg_tiles = tiles
    if block_bytes != -1:
        _wg_block_bytes = block_bytes
    if channels != -1:
        _wg_channels = channels
    if items != -1:
        _wg_items = items
    if partial_bytes != -1:
        _wg_partial_bytes = partial_bytes
    return old


ctypedef struct _WgPlan:
    int lvl, in_lvl, dy_lvl, fused
    Py_ssize_t Tb, CB, FB, n_cb, n_fb, P, R, Fp, PM, PR, PU, PL


cdef _WgPlan _wg_plan(const _Geometry* g, Py_ssize_t itemsize):
    """The work split of grad-weight for g's shapes (see the top of this file)."""
    cdef _WgPlan w
    cdef Py_ssize_t C = g.C, F = g.F, cols = WG_COLS, TB = MIN_BLOCK_TILES
    cdef Py_ssize_t most = max(cols, _wg_channels * 4 // itemsize // cols * cols)
    w.n_cb = (C + most - 1) // most
    w.CB = (C + w.n_cb - 1) // w.n_cb
    w.n_fb = (F + most - 1) // most
    w.FB = ((F + w.n_fb - 1) // w.n_fb + cols - 1) // cols * cols
    w.n_fb = (F + w.FB - 1) // w.FB
    w.Fp = (F + cols - 1) // cols * cols
    w.PM = C * w.Fp + 16  # a cache line more than a point's C x Fp (as FW_PSTRIDE)
    w.PR = 36 * w.PM
    cdef Py_ssize_t blocks = w.n_fb * w.n_cb
    cdef Py_ssize_t P = max(1, (_wg_items + blocks - 1) // blocks)
    P = min(P, max(1, _wg_partial_bytes // (w.PR * itemsize)))
    w.R = ((g.n_tiles + P - 1) // P + TB - 1) // TB * TB
    w.P = (g.n_tiles + w.R - 1) // w.R
    # One run: each item sums its block of M in its own buffer (PL: its point stride) and
    # transforms it into grad_w at once, while it is in cache; no partials, no second pass.
    w.fused = w.P == 1
    w.PL = w.CB * w.FB + 16
    if _wg_tiles:
        w.Tb = _wg_tiles
    else:
        w.Tb = _wg_block_bytes // (36 * itemsize * (w.CB + w.FB)) // TB * TB
        w.Tb = max(TB, min(w.Tb, (w.R + TB - 1) // TB * TB))
    w.PU = w.Tb * w.FB + 16
    return w


def wgrad_split(Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t F,
                Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                Py_ssize_t dw, Py_ssize_t itemsize):
    """The work split grad_weight takes for these shapes (as its arguments; itemsize 4 or 8),
    as a dict: runs (partial sums; 1: fused), filter_blocks, channel_blocks, tiles (per block),
    run_tiles, n_tiles; for tests and tuning."""
    cdef _Geometry g
    g.C, g.H, g.W, g.F, g.OH, g.OW = C, H, W, F, OH, OW
    g.n_tiles = N * _axis_tiles(OH, H, pt, dh, NULL, NULL, NULL, NULL) * _axis_tiles(
        OW, W, pl, dw, NULL, NULL, NULL, NULL)
    cdef _WgPlan w = _wg_plan(&g, itemsize)
    return dict(runs=w.P, filter_blocks=w.n_fb, channel_blocks=w.n_cb, tiles=w.Tb,
                run_tiles=w.R, n_tiles=g.n_tiles)


def grad_weight(const real[:, :, :, ::1] grad_y, const real[:, :, :, ::1] x,
                real[:, :, :, ::1] grad_w, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                Py_ssize_t dw, int num_threads):
    """grad_w of y = conv(x, w) with stride 1, one group, 3x3 weights, by F(3x3, 4x4).

    grad_y: (N, F, OH, OW), x: (N, C, H, W), grad_w: (F, C, 3, 3) written in full, float32 or
    float64, C-contiguous; pt, pl: the forward's top and left padding (any integer: bottom and
    right follow from OH, OW); dh, dw >= 1: its dilation. No size is 0.
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
    cdef _WgPlan w = _wg_plan(g, sizeof(real))
    w.lvl = g.lvl
    w.in_lvl = g.in_lvl
    # grad_y's gathers take 32-bit lane offsets of up to 15 planes
    w.dy_lvl = g.lvl if g.OH * g.OW < 2**27 else 0
    cdef Py_ssize_t n_items = w.P * w.n_fb * w.n_cb, C = g.C
    # Shared: the partials (P x 36 x C x Fp; none when fused). Per thread: the tile list (64
    # bytes per fw_tile), V (36 x CB x Tb), Ud (36 x Tb x FB), the fused item's M (36 x CB x FB),
    # each 64-byte aligned.
    cdef Py_ssize_t e = 64 // sizeof(real), shared = (0 if w.fused else w.P * w.PR) + e
    cdef Py_ssize_t tile_size = w.Tb * e, v_size = 36 * FW_PSTRIDE(w.CB, w.Tb) + e
    cdef Py_ssize_t u_size = 36 * w.PU + e, stride = tile_size + v_size + u_size + e
    if w.fused:
        stride += 36 * w.PL
    cdef int nt = <int>max(1, min(<Py_ssize_t>num_threads, n_items))
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64",
                                      shared + stride * nt)
    cdef real* M = &ws[0] + (64 - (<size_t>&ws[0]) % 64) % 64 // sizeof(real)
    cdef real* base = M + shared
    cdef real* work
    cdef Py_ssize_t item, c
    with nogil, parallel(num_threads=nt):
        work = base + omp_get_thread_num() * stride
        work = work + (64 - (<size_t>work) % 64) % 64 // sizeof(real)
        for item in prange(n_items, schedule="dynamic"):
            _wgrad_item(g, &w, gy, x, M, gw, item, <fw_tile*>work, work + tile_size,
                        work + tile_size + v_size, work + tile_size + v_size + u_size)
        if not w.fused:
            # dynamic: on a busy machine a thread that starts late finds the work done
            for c in prange(C, schedule="dynamic", chunksize=4):
                if real is float:
                    wg_kernel_float(w.lvl, M + c * w.Fp, w.P, w.PR, w.PM, g.F, C, gw + 9 * c)
                else:
                    wg_kernel_double(w.lvl, M + c * w.Fp, w.P, w.PR, w.PM, g.F, C, gw + 9 * c)


cdef void _wgrad_item(const _Geometry* g, const _WgPlan* w, const real* gy, const real* x,
                      real* M, real* gw, Py_ssize_t item, fw_tile* tiles, real* V, real* Ud,
                      real* Mloc) noexcept nogil:
    """Item (run r, filter block, channel block): its part of partial r of M; fused, its
    block of grad_w."""
    cdef Py_ssize_t blocks = w.n_fb * w.n_cb, r = item // blocks
    cdef Py_ssize_t fb = (item - r * blocks) // w.n_cb, cb = item - r * blocks - fb * w.n_cb
    cdef Py_ssize_t c0 = cb * w.CB, nc = min(w.CB, g.C - c0)
    cdef Py_ssize_t f0 = fb * w.FB, nf = min(w.FB, g.F - f0)
    cdef Py_ssize_t nfp = (nf + WG_COLS - 1) // WG_COLS * WG_COLS
    cdef Py_ssize_t t_end = min((r + 1) * w.R, g.n_tiles), t0, nv, Tv, CTv, c
    cdef Py_ssize_t HW = g.H * g.W, OHW = g.OH * g.OW, TB = MIN_BLOCK_TILES
    cdef real* Mr = Mloc if w.fused else M + r * w.PR + c0 * w.Fp + f0
    cdef Py_ssize_t ldm = w.FB if w.fused else w.Fp, PM = w.PL if w.fused else w.PM
    cdef int add = 0
    t0 = r * w.R
    while t0 < t_end:
        nv = min(w.Tb, t_end - t0)
        Tv = (nv + TB - 1) // TB * TB  # whole vectors at every level; past n_tiles: zero tiles
        CTv = FW_PSTRIDE(nc, Tv)
        _tiles(g, t0, Tv, tiles)
        if real is float:
            fw_input(w.in_lvl, x + c0 * HW, nc, g.H, g.W, g.dh, g.dw, tiles, Tv, V, CTv)
            wg_dy_float(w.dy_lvl, gy + f0 * OHW, nf, nfp, OHW, g.OW, g.dh, g.dw, tiles, nv, Ud,
                        w.PU)
            wg_gemm_float(w.lvl, V, Tv, CTv, Ud, w.PU, nv, nc, nfp, Mr, ldm, PM, add)
        else:
            wg_input_double(w.lvl, x + c0 * HW, nc, g.H, g.W, g.dh, g.dw, tiles, Tv, V, CTv)
            wg_dy_double(w.dy_lvl, gy + f0 * OHW, nf, nfp, OHW, g.OW, g.dh, g.dw, tiles, nv, Ud,
                         w.PU)
            wg_gemm_double(w.lvl, V, Tv, CTv, Ud, w.PU, nv, nc, nfp, Mr, ldm, PM, add)
        add = 1
        t0 = t0 + nv
    if w.fused:
        for c in range(nc):
            if real is float:
                wg_kernel_float(w.lvl, Mloc + c * ldm, 1, 0, PM, nf, g.C,
                                gw + 9 * (f0 * g.C + c0 + c))
            else:
                wg_kernel_double(w.lvl, Mloc + c * ldm, 1, 0, PM, nf, g.C,
                                 gw + 9 * (f0 * g.C + c0 + c))
