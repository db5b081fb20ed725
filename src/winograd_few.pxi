# The few-tiles path of winograd.pyx (included there): see winograd_few.h.
cdef enum:
    # Tiles per block of the few-tiles path: all of 512 x 7 x 7's 32 (a batch of 8) in one block,
    # so each weight is transformed once; V of a block is 36 C T floats (4.7 MB at C = 512).
    FEW_BLOCK_TILES = 64
    FEW_CHANNELS = 64  # channels per item of the input transform
    # The few-tiles path also with MIN_ITEMS or more blocks for at least this many channels and
    # at most this many tiles (measured: winograd.pyx, _convolve).
    FEW_MIN_CHANNELS = 256
    FEW_MAX_TILES = 256


cdef bint _convolve_few(_Geometry* g, int num_threads) except? False:
    """Blocks of at most FEW_BLOCK_TILES tiles: their input transforms (split by channels), then
    per (tile block, FWF_FB filters) item: chunks of FWF_CC channels, each weight-transformed and
    multiplied into the item's M, then its output transform. Returns whether every output before
    bias and ReLU was finite."""
    cdef Py_ssize_t C = g.C, F = g.F, lanes = fw_lanes(g.lvl), FB = fwf_fb(g.lvl)
    cdef Py_ssize_t n_tb = (g.n_tiles + FEW_BLOCK_TILES - 1) // FEW_BLOCK_TILES
    cdef Py_ssize_t TB = (g.n_tiles + n_tb - 1) // n_tb  # balanced blocks
    TB = (TB + lanes - 1) // lanes * lanes
    cdef Py_ssize_t pstv = FW_PSTRIDE(C, TB), v_size = 36 * pstv
    cdef Py_ssize_t n_ci = (C + FEW_CHANNELS - 1) // FEW_CHANNELS, n_fb = (F + FB - 1) // FB
    # Shared: the tile lists (16 floats per fw_tile), V of every block. Per thread: a chunk of U,
    # M of one item.
    cdef Py_ssize_t shared = 16 * n_tb * TB + n_tb * v_size + 16
    cdef Py_ssize_t stride = 36 * FWF_USTRIDE(FB) + 36 * FW_PSTRIDE(FB, TB) + 32
    cdef int nt = <int>max(1, min(<Py_ssize_t>num_threads, max(n_tb * n_ci, n_tb * n_fb)))
    cdef float[::1] ws = get_workspace("float32", shared + stride * nt + 16)
    cdef float* base = &ws[0] + (16 - (<size_t>&ws[0] // 4) % 16) % 16  # 64-byte aligned
    cdef fw_tile* tiles = <fw_tile*>base
    cdef float* V = base + 16 * n_tb * TB
    cdef Py_ssize_t item, tb, Tv, c0, nc, f0, nf, ci, CC = FWF_CC, n_cc = (C + CC - 1) // CC
    cdef Py_ssize_t nonfinite = 0
    cdef float* U
    cdef float* M
    for tb in range(n_tb):
        _tiles(g, tb * TB, TB, tiles + tb * TB)
    with nogil, parallel(num_threads=nt):
        U = base + shared + omp_get_thread_num() * stride
        U = U + (16 - (<size_t>U // 4) % 16) % 16
        M = U + 36 * FWF_USTRIDE(FB)
        M = M + (16 - (<size_t>M // 4) % 16) % 16
        for item in prange(n_tb * n_ci, schedule="static"):
            tb = item // n_ci
            c0 = (item - tb * n_ci) * FEW_CHANNELS
            nc = min(FEW_CHANNELS, C - c0)
            Tv = _valid(g, tb, TB, lanes)
            fw_input(g.in_lvl, g.x + c0 * g.H * g.W, nc, g.H, g.W, g.dh, g.dw, tiles + tb * TB,
                     Tv, V + tb * v_size + c0 * Tv, pstv)
        for item in prange(n_tb * n_fb, schedule="dynamic"):
            tb = item // n_fb
            f0 = (item - tb * n_fb) * FB
            nf = min(FB, F - f0)
            Tv = _valid(g, tb, TB, lanes)
            for ci in range(n_cc):
                c0 = ci * CC
                nc = min(CC, C - c0)
                if g.sc == 9:  # forward: U[p][f][c], the rows along a filter's channels
                    fwf_weights(g.lvl, g.w + f0 * g.sf + c0 * g.sc, g.sf, g.sk, FB, nf,
                                (nc + lanes - 1) // lanes * lanes, nc, U, CC)
                else:  # grad-input (sf == 9): U[p][c][f]
                    fwf_weights(g.lvl, g.w + f0 * g.sf + c0 * g.sc, g.sc, g.sk, nc, nc, FB, nf,
                                U, FB)
                fwf_gemm(g.lvl, U, g.sc != 9, V + tb * v_size + c0 * Tv, pstv, Tv, nc, M,
                         FW_PSTRIDE(FB, Tv), c0 == 0)
            nonfinite += fw_output(g.lvl, M, FB, nf, Tv,
                                   g.bias + f0 if g.bias != NULL else NULL, g.relu,
                                   tiles + tb * TB, g.y + f0 * g.OH * g.OW, g.OH * g.OW, g.OW,
                                   g.dh, g.dw)
    return nonfinite == 0


cdef inline Py_ssize_t _valid(const _Geometry* g, Py_ssize_t tb, Py_ssize_t TB,
                              Py_ssize_t lanes) noexcept nogil:
    """Tiles of block tb rounded up to whole vectors: the row length of its V and M."""
    cdef Py_ssize_t nv = min(TB, g.n_tiles - tb * TB)
    return (nv + lanes - 1) // lanes * lanes
