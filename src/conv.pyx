# GEMM-based 2-D convolution (im2col over tiles of output rows, SciPy's BLAS) and its gradients.
#
# Threads: OpenMP owns the cores; the caller (fastconv._backend.cpu) holds BLAS to one thread meanwhile, so
# each OpenMP thread runs its own single-threaded GEMMs on its own tiles.
# Determinism: how work is split depends on the shapes only, never on the thread count, and no
# output element is summed by two threads, so results are bitwise identical for any thread count.
from cython.parallel cimport parallel, prange
from libc.string cimport memcpy, memset

from _types cimport real
from _blas cimport gemm
from _select cimport relu
from _omp cimport omp_get_thread_num
from im2col cimport im2col, col2im_add

from fastconv._kernels.workspace import get_workspace

cdef enum:
    # Columns per tile aim at a cols buffer of about this many elements (about L2-sized).
    TILE_ELEMENTS = 262144
    MIN_TILE_COLUMNS = 256
    MAX_TILE_COLUMNS = 8192
    MIN_TILES = 8
    # Grad-weight: split by channel chunks (no reduction) from this many channels on; else a fixed
    # number of partial sums.
    MIN_CHANNELS_FOR_SPLIT = 4
    WEIGHT_CHUNKS = 16
    WEIGHT_PARTIALS = 8
    PARTIALS_MAX_WEIGHT = 131072
    # Grad-input: work items aimed at, and the dcols budget of one item.
    INPUT_ITEMS = 8
    DCOLS_ELEMENTS = 262144


cdef Py_ssize_t _rows_per_tile(Py_ssize_t K, Py_ssize_t N, Py_ssize_t OH, Py_ssize_t OW):
    """Output rows per tile: a part of one image's rows, or a whole number of images."""
    cdef Py_ssize_t target = TILE_ELEMENTS // K
    cdef Py_ssize_t rows, tiles
    target = max(MIN_TILE_COLUMNS, min(MAX_TILE_COLUMNS, target))
    if OH * OW >= target:
        rows = max(1, target // OW)
        tiles = (OH + rows - 1) // rows
        return (OH + tiles - 1) // tiles  # balance the tiles of an image
    # Whole images per tile, but at least MIN_TILES tiles (when N allows) to share among threads.
    return OH * max(1, min(N, target // (OH * OW), (N + MIN_TILES - 1) // MIN_TILES))


# A tile is output rows [q0, q1) of the flattened (n, oh) index: part of one image's rows when
# rows <= OH, else whole images. Start and end are returned by value (see im2col.pxd for why).
cdef inline Py_ssize_t _tile_start(Py_ssize_t item, Py_ssize_t rows, Py_ssize_t OH) noexcept nogil:
    cdef Py_ssize_t per_image
    if rows <= OH:
        per_image = (OH + rows - 1) // rows
        return (item // per_image) * OH + (item % per_image) * rows
    return item * rows


cdef inline Py_ssize_t _tile_end(Py_ssize_t item, Py_ssize_t rows, Py_ssize_t N,
                                 Py_ssize_t OH) noexcept nogil:
    cdef Py_ssize_t per_image
    if rows <= OH:
        per_image = (OH + rows - 1) // rows
        return (item // per_image) * OH + min(OH, (item % per_image + 1) * rows)
    return min(N * OH, (item + 1) * rows)


cdef Py_ssize_t _n_tiles(Py_ssize_t rows, Py_ssize_t N, Py_ssize_t OH):
    if rows <= OH:
        return N * ((OH + rows - 1) // rows)
    return (N * OH + rows - 1) // rows


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
                            Py_ssize_t F, Py_ssize_t OH, Py_ssize_t OW,
                            Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    """Epilogue on the y elements of one tile, while they are still in cache."""
    cdef Py_ssize_t n, f, j, j0, j1, OHW = OH * OW
    cdef real b, v
    cdef real* plane
    for n in range(q0 // OH, (q1 - 1) // OH + 1):
        j0 = max(q0 - n * OH, 0) * OW
        j1 = min(q1 - n * OH, OH) * OW
        for f in range(F):
            plane = y + (n * F + f) * OHW
            b = bias[f] if has_bias else 0
            if do_relu:
                for j in range(j0, j1):
                    plane[j] = relu(plane[j] + b)
            elif has_bias:
                for j in range(j0, j1):
                    plane[j] = plane[j] + b


cdef void _forward_tile(const real* x, const real* w, const real* bias, real* y, real* work,
                        Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t F,
                        Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                        Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                        Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t G, bint pointwise,
                        bint has_bias, bint relu, Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    cdef Py_ssize_t T = (q1 - q0) * OW, OHW = OH * OW
    cdef Py_ssize_t Cg = C // G, Fg = F // G, Kg = Cg * KH * KW
    cdef Py_ssize_t n0 = q0 // OH, g, ldb, ldc
    cdef bint single = (q1 - 1) // OH == n0
    cdef const real* cols
    cdef real* out
    cdef real* ybuf = work + C * KH * KW * T
    if pointwise and single:
        cols = x + n0 * C * OHW + (q0 - n0 * OH) * OW  # a 1x1 stride-1 conv reads x as is
        ldb = OHW
    else:
        im2col(x, C, H, W, 0, C, KH, KW, OH, OW, q0, q1, sh, sw, pt, pl, dh, dw, work)
        cols = work
        ldb = T
    for g in range(G):
        if single:
            out = y + (n0 * F + g * Fg) * OHW + (q0 - n0 * OH) * OW
            ldc = OHW
        else:
            out = ybuf + g * Fg * T
            ldc = T
        gemm(False, False, <int>Fg, <int>T, <int>Kg, <real>1, w + g * Fg * Kg, <int>Kg,
             cols + g * Kg * ldb, <int>ldb, <real>0, out, <int>ldc)
    if not single:
        _scatter_rows(ybuf, F, OH, OW, q0, q1, y)
    if has_bias or relu:
        _bias_relu(y, bias, has_bias, relu, F, OH, OW, q0, q1)


def forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] weight, const real[::1] bias,
            real[:, :, :, ::1] y, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
            Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, bint has_bias, bint relu,
            int num_threads):
    """y = conv(x, weight) (+ bias) (then ReLU); shapes validated by the caller, no size is 0."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = weight.shape[0], KH = weight.shape[2], KW = weight.shape[3]
    cdef Py_ssize_t OH = y.shape[2], OW = y.shape[3], K = C * KH * KW
    cdef bint pointwise = KH == 1 and KW == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 \
        and OH == H and OW == W
    cdef Py_ssize_t rows = _rows_per_tile(K, N, OH, OW)
    cdef Py_ssize_t n_items = _n_tiles(rows, N, OH)
    cdef Py_ssize_t stride = (K + F) * min(rows, N * OH) * OW
    cdef int nt = <int>min(<Py_ssize_t>num_threads, n_items)
    cdef Py_ssize_t item, q0, q1
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64", stride * nt)
    cdef real* work
    cdef const real* b = &bias[0] if has_bias else NULL
    with nogil, parallel(num_threads=nt):
        work = &ws[0] + omp_get_thread_num() * stride
        for item in prange(n_items, schedule="dynamic"):
            q0 = _tile_start(item, rows, OH)
            q1 = _tile_end(item, rows, N, OH)
            _forward_tile(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], b, &y[0, 0, 0, 0], work,
                          N, C, H, W, F, KH, KW, OH, OW, sh, sw, pt, pl, dh, dw, groups,
                          pointwise, has_bias, relu, q0, q1)


def grad_input(const real[:, :, :, ::1] grad_y, const real[:, :, :, ::1] weight,
               real[:, :, :, ::1] grad_x, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
               Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int num_threads):
    """grad_x = conv_transpose(grad_y, weight): per (image, group, channel chunk) a GEMM into
    that chunk's columns, then a col2im that only touches the chunk's own channels."""
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], H = grad_x.shape[2]
    cdef Py_ssize_t W = grad_x.shape[3], F = weight.shape[0], KH = weight.shape[2]
    cdef Py_ssize_t KW = weight.shape[3], OH = grad_y.shape[2], OW = grad_y.shape[3]
    cdef Py_ssize_t G = groups, Cg = C // G, Fg = F // G, KK = KH * KW, Kg = Cg * KK
    cdef Py_ssize_t OHW = OH * OW, HW = H * W
    cdef bint pointwise = KK == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 \
        and OH == H and OW == W
    cdef Py_ssize_t chunks = max((Cg * KK * OHW + DCOLS_ELEMENTS - 1) // DCOLS_ELEMENTS,
                                 (INPUT_ITEMS + N * G - 1) // (N * G))
    chunks = min(Cg, chunks)
    cdef Py_ssize_t cc = (Cg + chunks - 1) // chunks
    chunks = (Cg + cc - 1) // cc
    cdef Py_ssize_t n_items = N * G * chunks
    cdef Py_ssize_t stride = 0 if pointwise else cc * KK * OHW
    cdef int nt = <int>min(<Py_ssize_t>num_threads, n_items)
    cdef Py_ssize_t item, n, g, k, c0, c1
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64", max(1, stride * nt))
    cdef real* dcols
    cdef const real* w = &weight[0, 0, 0, 0]
    cdef const real* dy = &grad_y[0, 0, 0, 0]
    cdef real* dx = &grad_x[0, 0, 0, 0]
    with nogil, parallel(num_threads=nt):
        dcols = &ws[0] + omp_get_thread_num() * stride
        for item in prange(n_items, schedule="dynamic"):
            n = item // (G * chunks)
            g = (item // chunks) % G
            k = item % chunks
            c0 = g * Cg + k * cc
            c1 = min(c0 + cc, (g + 1) * Cg)
            if pointwise:
                gemm(True, False, <int>(c1 - c0), <int>OHW, <int>Fg, <real>1,
                     w + g * Fg * Kg + (c0 - g * Cg), <int>Kg, dy + (n * F + g * Fg) * OHW,
                     <int>OHW, <real>0, dx + (n * C + c0) * HW, <int>HW)
            else:
                gemm(True, False, <int>((c1 - c0) * KK), <int>OHW, <int>Fg, <real>1,
                     w + g * Fg * Kg + (c0 - g * Cg) * KK, <int>Kg,
                     dy + (n * F + g * Fg) * OHW, <int>OHW, <real>0, dcols, <int>OHW)
                memset(dx + (n * C + c0) * HW, 0, (c1 - c0) * HW * sizeof(real))
                col2im_add(dcols, c0, c1, H, W, KH, KW, OH, OW, sh, sw, pt, pl, dh, dw,
                           dx + n * C * HW)


cdef void _weight_tile(const real* x, const real* dy, real* dw_out, Py_ssize_t ld_dw,
                       real* work, bint accumulate,
                       Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t F,
                       Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                       Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                       Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t G, bint pointwise,
                       Py_ssize_t c0, Py_ssize_t c1, Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    """dW[g, :, chunk] (+)= dY_tile[g] @ cols_tile[chunk]^T for channels [c0, c1) of a tile.

    The chunk lies in one group unless it is all channels (c0 = 0, c1 = C), then every group."""
    cdef Py_ssize_t T = (q1 - q0) * OW, OHW = OH * OW, KK = KH * KW
    cdef Py_ssize_t Cg = C // G, Fg = F // G, n0 = q0 // OH
    cdef Py_ssize_t g_first = c0 // Cg, g_last = (c1 - 1) // Cg, g, ldb, lda, cg0, cg1
    cdef bint single = (q1 - 1) // OH == n0
    cdef const real* cols
    cdef const real* A
    cdef real* dybuf = work + (c1 - c0) * KK * T
    cdef real beta = 1 if accumulate else 0
    if pointwise and single:
        cols = x + (n0 * C + c0) * OHW + (q0 - n0 * OH) * OW
        ldb = OHW
    else:
        im2col(x, C, H, W, c0, c1, KH, KW, OH, OW, q0, q1, sh, sw, pt, pl, dh, dw, work)
        cols = work
        ldb = T
    if not single:
        _gather_rows(dy, F, g_first * Fg, (g_last + 1) * Fg, OH, OW, q0, q1, dybuf)
    for g in range(g_first, g_last + 1):
        cg0 = max(c0, g * Cg)
        cg1 = min(c1, (g + 1) * Cg)
        if single:
            A = dy + (n0 * F + g * Fg) * OHW + (q0 - n0 * OH) * OW
            lda = OHW
        else:
            A = dybuf + (g - g_first) * Fg * T
            lda = T
        gemm(False, True, <int>Fg, <int>((cg1 - cg0) * KK), <int>T, <real>1, A, <int>lda,
             cols + (cg0 - c0) * KK * ldb, <int>ldb, beta,
             dw_out + g * Fg * ld_dw + (cg0 - g * Cg) * KK, <int>ld_dw)


def grad_weight(const real[:, :, :, ::1] grad_y, const real[:, :, :, ::1] x,
                real[:, :, :, ::1] grad_w, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int num_threads):
    """grad_w = sum over images and positions of dY x cols^T.

    With enough channels, each work item owns a chunk of grad_w's columns and walks every tile in
    order (no reduction). With few channels (grad_w is then small), items own a fixed part of the
    batch and a private partial sum, added up in a fixed order at the end."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = grad_w.shape[0], KH = grad_w.shape[2], KW = grad_w.shape[3]
    cdef Py_ssize_t OH = grad_y.shape[2], OW = grad_y.shape[3], KK = KH * KW
    cdef Py_ssize_t G = groups, Cg = C // G, Fg = F // G, Kg = Cg * KK
    cdef bint pointwise = KK == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 \
        and OH == H and OW == W
    cdef bint split = C >= MIN_CHANNELS_FOR_SPLIT and F * Kg > PARTIALS_MAX_WEIGHT
    cdef Py_ssize_t chunks = 1, cc = 1, rows, tiles, n_items, stride, partials, per_item
    cdef Py_ssize_t item, g, k, c0, c1, t, t0, t1, q0, q1, e, p, size = F * Kg
    cdef real s
    if split:
        chunks = min(Cg, max(1, (WEIGHT_CHUNKS + G - 1) // G))
        cc = (Cg + chunks - 1) // chunks
        chunks = (Cg + cc - 1) // cc
        n_items = G * chunks
        rows = _rows_per_tile(cc * KK, N, OH, OW)
        stride = (cc * KK + Fg) * min(rows, N * OH) * OW
        partials = 0
    else:
        rows = _rows_per_tile(C * KK, N, OH, OW)
        n_items = min(_n_tiles(rows, N, OH), WEIGHT_PARTIALS)
        stride = (C * KK + F) * min(rows, N * OH) * OW
        partials = n_items
    tiles = _n_tiles(rows, N, OH)
    per_item = (tiles + n_items - 1) // n_items
    cdef int nt = <int>min(<Py_ssize_t>num_threads, n_items)
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64",
                                      stride * nt + partials * size)
    cdef real* work
    cdef real* part = &ws[0] + stride * nt
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef const real* dyp = &grad_y[0, 0, 0, 0]
    cdef real* dwp = &grad_w[0, 0, 0, 0]
    with nogil, parallel(num_threads=nt):
        work = &ws[0] + omp_get_thread_num() * stride
        for item in prange(n_items, schedule="dynamic"):
            if split:
                g = item // chunks
                k = item - g * chunks
                c0 = g * Cg + k * cc
                c1 = min(c0 + cc, (g + 1) * Cg)
                for t in range(tiles):
                    q0 = _tile_start(t, rows, OH)
                    q1 = _tile_end(t, rows, N, OH)
                    _weight_tile(xp, dyp, dwp, Kg, work, t > 0, N, C, H, W, F, KH, KW,
                                 OH, OW, sh, sw, pt, pl, dh, dw, G, pointwise, c0, c1, q0, q1)
            else:
                t0 = item * per_item
                t1 = min(tiles, t0 + per_item)
                if t0 >= t1:
                    memset(part + item * size, 0, size * sizeof(real))
                for t in range(t0, t1):
                    q0 = _tile_start(t, rows, OH)
                    q1 = _tile_end(t, rows, N, OH)
                    _weight_tile(xp, dyp, part + item * size, Kg, work, t > t0, N, C, H, W,
                                 F, KH, KW, OH, OW, sh, sw, pt, pl, dh, dw, G, pointwise,
                                 0, C, q0, q1)
    if not split:
        with nogil:
            for e in prange(size, num_threads=num_threads, schedule="static"):
                s = 0
                for p in range(partials):
                    s = s + part[p * size + e]
                dwp[e] = s


def grad_bias(const real[:, :, :, ::1] grad_y, real[::1] grad_b, int num_threads):
    """grad_b[f] = sum of grad_y[:, f]; accumulated in double, in a fixed order.

    Eight interleaved partial sums: one running sum is a chain of dependent adds (4 cycles each)."""
    cdef Py_ssize_t N = grad_y.shape[0], F = grad_y.shape[1]
    cdef Py_ssize_t OHW = grad_y.shape[2] * grad_y.shape[3], f, n, j, k
    cdef double s0, s1, s2, s3, s4, s5, s6, s7
    cdef const real* plane
    cdef const real* dy = &grad_y[0, 0, 0, 0]
    with nogil:
        for f in prange(F, num_threads=num_threads, schedule="static"):
            s0 = 0
            s1 = 0
            s2 = 0
            s3 = 0
            s4 = 0
            s5 = 0
            s6 = 0
            s7 = 0
            for n in range(N):
                plane = dy + (n * F + f) * OHW
                for j in range(0, OHW - 7, 8):
                    s0 = s0 + plane[j]
                    s1 = s1 + plane[j + 1]
                    s2 = s2 + plane[j + 2]
                    s3 = s3 + plane[j + 3]
                    s4 = s4 + plane[j + 4]
                    s5 = s5 + plane[j + 5]
                    s6 = s6 + plane[j + 6]
                    s7 = s7 + plane[j + 7]
                for k in range(OHW - OHW % 8, OHW):
                    s0 = s0 + plane[k]
            grad_b[f] = <real>(((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)))
