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
from geometry cimport Geometry, geometry
from im2col cimport im2col, col2im_add
from tiles cimport Tile, Tiling, tile, tile_columns, tiling

from fastconv._kernels.workspace import get_workspace

cdef enum:
    # Grad-weight: split by channel chunks (no reduction) from this many channels on; else a fixed
    # number of partial sums.
    MIN_CHANNELS_FOR_SPLIT = 4
    WEIGHT_CHUNKS = 16
    WEIGHT_PARTIALS = 8
    PARTIALS_MAX_WEIGHT = 131072
    # Grad-input: work items aimed at, and the dcols budget of one item.
    INPUT_ITEMS = 8
    DCOLS_ELEMENTS = 262144


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


cdef inline real* _thread_work(real* ws, Py_ssize_t stride) noexcept nogil:
    """This OpenMP thread's part of a workspace of `stride` elements per thread."""
    return ws + omp_get_thread_num() * stride


cdef void _forward_tile(const real* x, const real* w, const real* bias, real* y, real* work,
                        Geometry g, bint has_bias, bint relu, Tile s) noexcept nogil:
    cdef Py_ssize_t OH = g.OH, OW = g.OW, F = g.F, C = g.C, G = g.G, q0 = s.q0, q1 = s.q1
    cdef Py_ssize_t T = (q1 - q0) * (s.ow1 - s.ow0), OHW = OH * OW
    cdef Py_ssize_t at = (q0 - q0 // OH * OH) * OW + s.ow0  # the tile's first column in its image
    cdef Py_ssize_t Cg = C // G, Fg = F // G, Kg = Cg * g.KH * g.KW
    cdef Py_ssize_t n0 = q0 // OH, grp, ldb, ldc
    cdef bint single = (q1 - 1) // OH == n0
    cdef const real* cols
    cdef real* out
    cdef real* ybuf = work + C * g.KH * g.KW * T
    if g.pointwise and single:
        cols = x + n0 * C * OHW + at  # a 1x1 stride-1 conv reads x as is
        ldb = OHW
    else:
        im2col(x, g, 0, C, s, work)
        cols = work
        ldb = T
    for grp in range(G):
        if single:
            out = y + (n0 * F + grp * Fg) * OHW + at
            ldc = OHW
        else:
            out = ybuf + grp * Fg * T
            ldc = T
        gemm(False, False, <int>Fg, <int>T, <int>Kg, <real>1, w + grp * Fg * Kg, <int>Kg,
             cols + grp * Kg * ldb, <int>ldb, <real>0, out, <int>ldc)
    if not single:
        _scatter_rows(ybuf, F, OH, OW, q0, q1, y)
    if has_bias or relu:
        _bias_relu(y, bias, has_bias, relu, F, OH, OW, s)


def forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] weight, const real[::1] bias,
            real[:, :, :, ::1] y, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
            Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, bint has_bias, bint relu,
            int num_threads):
    """y = conv(x, weight) (+ bias) (then ReLU); shapes validated by the caller, no size is 0."""
    cdef Geometry g = geometry(x.shape, weight.shape, y.shape, sh, sw, pt, pl, dh, dw, groups)
    cdef Py_ssize_t K = g.C * g.KH * g.KW
    cdef Tiling t = tiling(K, g.N, g.OH, g.OW)
    cdef Py_ssize_t n_items = t.count, stride = (K + g.F) * tile_columns(t)
    cdef int nt = <int>min(<Py_ssize_t>num_threads, n_items)
    cdef Py_ssize_t item
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64", stride * nt)
    cdef real* work
    cdef const real* b = &bias[0] if has_bias else NULL
    with nogil, parallel(num_threads=nt):
        work = _thread_work(&ws[0], stride)
        for item in prange(n_items, schedule="dynamic"):
            _forward_tile(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], b, &y[0, 0, 0, 0], work, g,
                          has_bias, relu, tile(t, item))


cdef void _input_item(const real* dy, const real* w, real* dx, real* dcols, Geometry g,
                      Py_ssize_t n, Py_ssize_t grp, Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """grad_x[n, c0:c1] for channels [c0, c1) of group grp: a GEMM into their columns, then a
    col2im that touches only those channels."""
    cdef Py_ssize_t Cg = g.C // g.G, Fg = g.F // g.G, KK = g.KH * g.KW, Kg = Cg * KK
    cdef Py_ssize_t OHW = g.OH * g.OW, HW = g.H * g.W
    if g.pointwise:
        gemm(True, False, <int>(c1 - c0), <int>OHW, <int>Fg, <real>1,
             w + grp * Fg * Kg + (c0 - grp * Cg), <int>Kg, dy + (n * g.F + grp * Fg) * OHW,
             <int>OHW, <real>0, dx + (n * g.C + c0) * HW, <int>HW)
        return
    gemm(True, False, <int>((c1 - c0) * KK), <int>OHW, <int>Fg, <real>1,
         w + grp * Fg * Kg + (c0 - grp * Cg) * KK, <int>Kg,
         dy + (n * g.F + grp * Fg) * OHW, <int>OHW, <real>0, dcols, <int>OHW)
    memset(dx + (n * g.C + c0) * HW, 0, (c1 - c0) * HW * sizeof(real))
    col2im_add(dcols, g, c0, c1, dx + n * g.C * HW)


def grad_input(const real[:, :, :, ::1] grad_y, const real[:, :, :, ::1] weight,
               real[:, :, :, ::1] grad_x, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
               Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int num_threads):
    """grad_x = conv_transpose(grad_y, weight): per (image, group, channel chunk) a GEMM into
    that chunk's columns, then a col2im that only touches the chunk's own channels."""
    cdef Geometry g = geometry(grad_x.shape, weight.shape, grad_y.shape, sh, sw, pt, pl, dh, dw,
                               groups)
    cdef Py_ssize_t N = g.N, G = g.G, Cg = g.C // G, KK = g.KH * g.KW, OHW = g.OH * g.OW
    cdef Py_ssize_t chunks = max((Cg * KK * OHW + DCOLS_ELEMENTS - 1) // DCOLS_ELEMENTS,
                                 (INPUT_ITEMS + N * G - 1) // (N * G))
    chunks = min(Cg, chunks)
    cdef Py_ssize_t cc = (Cg + chunks - 1) // chunks
    chunks = (Cg + cc - 1) // cc
    cdef Py_ssize_t n_items = N * G * chunks
    cdef Py_ssize_t stride = 0 if g.pointwise else cc * KK * OHW
    cdef int nt = <int>min(<Py_ssize_t>num_threads, n_items)
    cdef Py_ssize_t item, grp, c0
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64", max(1, stride * nt))
    cdef real* dcols
    with nogil, parallel(num_threads=nt):
        dcols = _thread_work(&ws[0], stride)
        for item in prange(n_items, schedule="dynamic"):
            grp = (item // chunks) % G
            c0 = grp * Cg + (item % chunks) * cc
            _input_item(&grad_y[0, 0, 0, 0], &weight[0, 0, 0, 0], &grad_x[0, 0, 0, 0], dcols,
                        g, item // (G * chunks), grp, c0, min(c0 + cc, (grp + 1) * Cg))


cdef void _weight_tile(const real* x, const real* dy, real* dw_out, Py_ssize_t ld_dw,
                       real* work, bint accumulate, Geometry g, Py_ssize_t c0, Py_ssize_t c1,
                       Tile s) noexcept nogil:
    """dW[grp, :, chunk] (+)= dY_tile[grp] @ cols_tile[chunk]^T for channels [c0, c1) of a tile.

    The chunk lies in one group unless it is all channels (c0 = 0, c1 = C), then every group."""
    cdef Py_ssize_t OH = g.OH, OW = g.OW, F = g.F, q0 = s.q0, q1 = s.q1
    cdef Py_ssize_t T = (q1 - q0) * (s.ow1 - s.ow0), OHW = OH * OW, KK = g.KH * g.KW
    cdef Py_ssize_t at = (q0 - q0 // OH * OH) * OW + s.ow0  # the tile's first column in its image
    cdef Py_ssize_t Cg = g.C // g.G, Fg = F // g.G, n0 = q0 // OH
    cdef Py_ssize_t g_first = c0 // Cg, g_last = (c1 - 1) // Cg, grp, ldb, lda, cg0, cg1
    cdef bint single = (q1 - 1) // OH == n0
    cdef const real* cols
    cdef const real* A
    cdef real* dybuf = work + (c1 - c0) * KK * T
    cdef real beta = 1 if accumulate else 0
    if g.pointwise and single:
        cols = x + (n0 * g.C + c0) * OHW + at
        ldb = OHW
    else:
        im2col(x, g, c0, c1, s, work)
        cols = work
        ldb = T
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


cdef void _weight_tiles(const real* x, const real* dy, real* dw_out, Py_ssize_t ld_dw,
                        real* work, Geometry g, Tiling t, Py_ssize_t t0, Py_ssize_t t1,
                        Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """Channels [c0, c1) of dW = the sum over tiles [t0, t1), in order (zero if none)."""
    cdef Py_ssize_t item
    if t0 >= t1:
        memset(dw_out, 0, g.F * ld_dw * sizeof(real))
    for item in range(t0, t1):
        _weight_tile(x, dy, dw_out, ld_dw, work, item > t0, g, c0, c1, tile(t, item))


def grad_weight(const real[:, :, :, ::1] grad_y, const real[:, :, :, ::1] x,
                real[:, :, :, ::1] grad_w, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int num_threads):
    """grad_w = sum over images and positions of dY x cols^T.

    With enough channels, each work item owns a chunk of grad_w's columns and walks every tile in
    order (no reduction). With few channels (grad_w is then small), items own a fixed part of the
    batch and a private partial sum, added up in a fixed order at the end."""
    cdef Geometry g = geometry(x.shape, grad_w.shape, grad_y.shape, sh, sw, pt, pl, dh, dw, groups)
    cdef Py_ssize_t N = g.N, C = g.C, F = g.F, OH = g.OH, KK = g.KH * g.KW
    cdef Py_ssize_t G = g.G, Cg = C // G, Fg = F // G, Kg = Cg * KK
    cdef bint split = C >= MIN_CHANNELS_FOR_SPLIT and F * Kg > PARTIALS_MAX_WEIGHT
    cdef Py_ssize_t chunks = 1, cc = 1, tiles, n_items, stride, partials, per_item
    cdef Tiling t
    cdef Py_ssize_t item, grp, c0, e, p, size = F * Kg
    cdef real s
    if split:
        chunks = min(Cg, max(1, (WEIGHT_CHUNKS + G - 1) // G))
        cc = (Cg + chunks - 1) // chunks
        chunks = (Cg + cc - 1) // cc
        n_items = G * chunks
        t = tiling(cc * KK, N, OH, g.OW)
        stride = (cc * KK + Fg) * tile_columns(t)
        partials = 0
    else:
        t = tiling(C * KK, N, OH, g.OW)
        n_items = min(t.count, WEIGHT_PARTIALS)
        stride = (C * KK + F) * tile_columns(t)
        partials = n_items
    tiles = t.count
    per_item = (tiles + n_items - 1) // n_items
    cdef int nt = <int>min(<Py_ssize_t>num_threads, n_items)
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64",
                                      stride * nt + partials * size)
    cdef real* work
    cdef real* part = &ws[0] + stride * nt
    cdef real* dwp = &grad_w[0, 0, 0, 0]
    with nogil, parallel(num_threads=nt):
        work = _thread_work(&ws[0], stride)
        for item in prange(n_items, schedule="dynamic"):
            if split:
                grp = item // chunks
                c0 = grp * Cg + (item - grp * chunks) * cc
                _weight_tiles(&x[0, 0, 0, 0], &grad_y[0, 0, 0, 0], dwp, Kg, work, g, t, 0,
                              tiles, c0, min(c0 + cc, (grp + 1) * Cg))
            else:
                _weight_tiles(&x[0, 0, 0, 0], &grad_y[0, 0, 0, 0], part + item * size, Kg,
                              work, g, t, item * per_item, min(tiles, (item + 1) * per_item),
                              0, C)
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
