# GEMM-based 2-D convolution (im2col over tiles of output rows, SciPy's BLAS) and its gradients.
#
# Threads: OpenMP owns the cores; the caller (fastconv._backend.cpu) holds BLAS to one thread meanwhile, so
# each OpenMP thread runs its own single-threaded GEMMs on its own tiles.
# Determinism: how work is split depends on the shapes only, never on the thread count, and no
# output element is summed by two threads, so results are bitwise identical for any thread count.
from cython.parallel cimport parallel, prange
from libc.string cimport memset

from _types cimport real
from sums cimport nonfinite_count, run_sum
from _blas cimport gemm
from _omp cimport omp_get_thread_num
from geometry cimport Geometry, geometry
from conv_tiles cimport (fc_conv_gemm_double, fc_conv_gemm_float, fc_gemm_filters, forward_gemms,
                         tile_cols, weight_gemms)
from im2col cimport col2im, col2im_buffer
from tiles cimport Tile, Tiling, tile, tile_columns, tile_ld, tiling

import numpy as np

from fastconv._kernels.workspace import aligned_zeros, get_workspace

cdef extern from "simd.h" nogil:
    int fc_simd_level()

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
    # The SIMD GEMM for weights up to this size and sums of at least this many terms (_simd_gemm).
    SIMD_GEMM_WEIGHT_BYTES = 1048576
    SIMD_GEMM_MIN_K = 16
    # all_finite: elements per work item
    FINITE_CHUNK = 262144


include "simd_level.pxi"

cdef int _gemm = 0  # 0: by shape (_simd_gemm); 1: BLAS; 2: the SIMD GEMM (conv_gemm.h)


def set_gemm(str name):
    """Force the GEMM of the forward's tiles and of grad-input: "blas", "simd" (conv_gemm.h, at
    this module's level; one group) or "auto" (by shape); for tests. Returns the previous
    setting."""
    global _gemm
    names = ("auto", "blas", "simd")
    previous = names[_gemm]
    _gemm = _switch_index(name, names)
    return previous


cdef bint _simd_gemm(Geometry g, Py_ssize_t itemsize, Py_ssize_t K):
    """Whether the forward's tiles and grad-input take the SIMD GEMM (conv_gemm.h) rather than
    BLAS: one group, SIMD, and weights that stay in L2 while the tiles stream past them. Ice
    Lake-SP, one thread, CPU time, medians of 11-21 interleaved reps on a loaded machine, forward,
    BLAS -> SIMD (F x K weights): 1x1 256 -> 64 on 8 x 56 x 56 (64 KB) 0.81x, stride-2 3x3 64 ->
    128 (288 KB) 0.79x, 3x3 64 -> 64 (144 KB) 0.74x, 128 -> 128 (576 KB) 0.86x, 256 -> 256
    (2.3 MB) 0.99x, 512 -> 512 on 7 x 7 (9.4 MB) 1.20x. AVX2 (the same CPU, OpenBLAS's Haswell
    kernels): 0.78-0.99x. Grad-input: 1x1 0.82x, stride-2 3x3 0.80x, 7x7 stride-2 stem (147 rows
    of 64) 0.46x; LeNet-5's conv1 (25 rows of K = 6 filters) 1.07-1.12x: a sum of K terms per
    register block's load and store of y, so K below SIMD_GEMM_MIN_K stays on BLAS."""
    if g.G != 1 or _gemm == 1:
        return False
    if _gemm == 2:
        return True
    return (_level > 0 and g.F * g.C * g.KH * g.KW * itemsize <= SIMD_GEMM_WEIGHT_BYTES
            and K >= SIMD_GEMM_MIN_K)


cdef real[:, :, ::1] _pack_filters(const real[:, :, :, ::1] weight, Py_ssize_t FO):
    """(F, C, KH, KW) -> (ceil(F / FO), C KH KW, FO): blocks of FO filters as columns, the
    filters past F zero (conv_gemm.h's layout)."""
    cdef Py_ssize_t F = weight.shape[0], K = weight.shape[1] * weight.shape[2] * weight.shape[3]
    cdef Py_ssize_t blocks = (F + FO - 1) // FO, f, k
    cdef const real* w = &weight[0, 0, 0, 0]
    cdef real[:, :, ::1] packed = aligned_zeros((blocks, K, FO),
                                                np.float32 if real is float else np.float64)
    for f in range(F):
        for k in range(K):
            packed[f // FO, k, f % FO] = w[f * K + k]
    return packed


cdef real[:, :, :, ::1] _pack_transposed(const real[:, :, :, ::1] weight, Py_ssize_t cc,
                                         Py_ssize_t FO):
    """(F, C, KH, KW) -> (chunks, ceil(cc KH KW / FO), F, FO): per chunk of cc channels, its rows
    (c, kh, kw) of the transposed weights in blocks of FO as columns, rows past C zero
    (conv_gemm.h's layout for grad-input's GEMM, one group)."""
    cdef Py_ssize_t F = weight.shape[0], C = weight.shape[1]
    cdef Py_ssize_t KK = weight.shape[2] * weight.shape[3], rows = cc * KK
    cdef Py_ssize_t chunks = (C + cc - 1) // cc, blocks = (rows + FO - 1) // FO, j, r, f, c
    cdef const real* w = &weight[0, 0, 0, 0]
    cdef real[:, :, :, ::1] packed = aligned_zeros((chunks, blocks, F, FO),
                                                   np.float32 if real is float else np.float64)
    for j in range(chunks):
        for r in range(rows):
            c = j * cc + r // KK
            if c < C:
                for f in range(F):
                    packed[j, r // FO, f, r % FO] = w[(f * C + c) * KK + r % KK]
    return packed


cdef inline Py_ssize_t _width(Tile s) noexcept nogil:
    """The tile's positions: the columns of its im2col matrix."""
    return (s.q1 - s.q0) * (s.ow1 - s.ow0)


cdef inline real* _thread_work(real* ws, Py_ssize_t stride) noexcept nogil:
    """This OpenMP thread's part of a workspace of `stride` elements per thread."""
    return ws + omp_get_thread_num() * stride


cdef void _forward_tile(const real* x, const real* w, const real* bias, real* y, real* work,
                        Geometry g, bint has_bias, bint relu, Tile s, const real* wpack,
                        int lvl) noexcept nogil:
    cdef Py_ssize_t ld
    cdef const real* cols = tile_cols(x, g, 0, g.C, s, work, &ld, lvl)
    forward_gemms(cols, ld, w, bias, y, work + g.C * g.KH * g.KW * tile_ld(_width(s)), g,
                  has_bias, relu, s, wpack, lvl)


def forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] weight, const real[::1] bias,
            real[:, :, :, ::1] y, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
            Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, bint has_bias, bint relu,
            int num_threads):
    """y = conv(x, weight) (+ bias) (then ReLU); shapes validated by the caller, no size is 0."""
    cdef Geometry g = geometry(x.shape, weight.shape, y.shape, sh, sw, pt, pl, dh, dw, groups)
    cdef Py_ssize_t K = g.C * g.KH * g.KW
    cdef Tiling t = tiling(K, g.N, g.OH, g.OW)
    cdef Py_ssize_t n_items = t.count, stride = (K + g.F) * tile_ld(tile_columns(t))
    cdef int nt = <int>min(<Py_ssize_t>num_threads, n_items)
    cdef Py_ssize_t item
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64", stride * nt)
    cdef real* work
    cdef const real* b = &bias[0] if has_bias else NULL
    cdef int lvl = _level
    cdef const real[:, :, ::1] packed
    cdef const real* wpack = NULL
    if _simd_gemm(g, sizeof(real), K):
        packed = _pack_filters(weight, fc_gemm_filters(lvl))
        wpack = &packed[0, 0, 0]
    if nt == 1:  # one thread, no region (_omp.pxd)
        with nogil:
            for item in range(n_items):
                _forward_tile(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], b, &y[0, 0, 0, 0], &ws[0], g,
                              has_bias, relu, tile(t, item), wpack, lvl)
        return
    with nogil, parallel(num_threads=nt):
        work = _thread_work(&ws[0], stride)
        for item in prange(n_items, schedule="dynamic"):
            _forward_tile(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], b, &y[0, 0, 0, 0], work, g,
                          has_bias, relu, tile(t, item), wpack, lvl)


cdef void _input_item(const real* dy, const real* w, real* dx, real* dcols, Geometry g,
                      Py_ssize_t n, Py_ssize_t grp, Py_ssize_t c0, Py_ssize_t c1,
                      const real* wpack, int lvl) noexcept nogil:
    """grad_x[n, c0:c1] for channels [c0, c1) of group grp: a GEMM into their columns, then a
    col2im that touches only those channels (its buffer after the columns in dcols). With
    wpack (one group: this chunk's rows of the transposed weights packed for conv_gemm.h) the
    SIMD GEMM, else BLAS."""
    cdef Py_ssize_t Cg = g.C // g.G, Fg = g.F // g.G, KK = g.KH * g.KW, Kg = Cg * KK
    cdef Py_ssize_t OHW = g.OH * g.OW, HW = g.H * g.W
    cdef real* out = dx + (n * g.C + c0) * HW if g.pointwise else dcols
    if wpack != NULL:
        if real is float:
            fc_conv_gemm_float(lvl, wpack, (c1 - c0) * KK, Fg, dy + n * g.F * OHW, OHW, OHW, out,
                               OHW, NULL, 0)
        else:
            fc_conv_gemm_double(lvl, wpack, (c1 - c0) * KK, Fg, dy + n * g.F * OHW, OHW, OHW,
                                out, OHW, NULL, 0)
    if g.pointwise:
        if wpack != NULL:
            return
        gemm(True, False, <int>(c1 - c0), <int>OHW, <int>Fg, <real>1,
             w + grp * Fg * Kg + (c0 - grp * Cg), <int>Kg, dy + (n * g.F + grp * Fg) * OHW,
             <int>OHW, <real>0, dx + (n * g.C + c0) * HW, <int>HW)
        return
    if wpack == NULL:
        gemm(True, False, <int>((c1 - c0) * KK), <int>OHW, <int>Fg, <real>1,
             w + grp * Fg * Kg + (c0 - grp * Cg) * KK, <int>Kg,
             dy + (n * g.F + grp * Fg) * OHW, <int>OHW, <real>0, dcols, <int>OHW)
    col2im(dcols, g, c0, c1, dx + n * g.C * HW, dcols + tile_ld((c1 - c0) * KK * OHW), lvl)


cdef inline void _input_chunk(const real* dy, const real* w, real* dx, real* dcols, Geometry g,
                              Py_ssize_t item, Py_ssize_t chunks, Py_ssize_t cc,
                              const real* wpack, Py_ssize_t chunk_size, int lvl) noexcept nogil:
    """grad_input()'s work item `item`: chunk item % chunks (of cc channels) of the group and
    image it counts (wpack: every chunk's packed weights, chunk_size apart, or NULL)."""
    cdef Py_ssize_t Cg = g.C // g.G, grp = (item // chunks) % g.G
    cdef Py_ssize_t c0 = grp * Cg + (item % chunks) * cc
    _input_item(dy, w, dx, dcols, g, item // (g.G * chunks), grp, c0, min(c0 + cc, (grp + 1) * Cg),
                wpack + (item % chunks) * chunk_size if wpack != NULL else NULL, lvl)


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
    cdef Py_ssize_t stride = 0 if g.pointwise else tile_ld(cc * KK * OHW) + col2im_buffer(g)
    cdef int nt = <int>min(<Py_ssize_t>num_threads, n_items)
    cdef Py_ssize_t item, chunk_size = 0
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64",
                                      max(1, tile_ld(stride) * nt))
    cdef real* dcols
    cdef int lvl = _level
    cdef const real[:, :, :, ::1] packed
    cdef const real* wpack = NULL
    if _simd_gemm(g, sizeof(real), g.F):
        packed = _pack_transposed(weight, cc, fc_gemm_filters(lvl))
        wpack = &packed[0, 0, 0, 0]
        chunk_size = packed.shape[1] * packed.shape[2] * packed.shape[3]
    if nt == 1:  # one thread, no region (_omp.pxd)
        with nogil:
            for item in range(n_items):
                _input_chunk(&grad_y[0, 0, 0, 0], &weight[0, 0, 0, 0], &grad_x[0, 0, 0, 0],
                             &ws[0], g, item, chunks, cc, wpack, chunk_size, lvl)
        return
    with nogil, parallel(num_threads=nt):
        dcols = _thread_work(&ws[0], tile_ld(stride))
        for item in prange(n_items, schedule="dynamic"):
            _input_chunk(&grad_y[0, 0, 0, 0], &weight[0, 0, 0, 0], &grad_x[0, 0, 0, 0], dcols,
                         g, item, chunks, cc, wpack, chunk_size, lvl)


cdef void _weight_tiles(const real* x, const real* dy, real* dw_out, Py_ssize_t ld_dw,
                        real* work, Geometry g, Tiling t, Py_ssize_t t0, Py_ssize_t t1,
                        Py_ssize_t c0, Py_ssize_t c1, const real* w, real* y, const real* wpack,
                        int lvl) noexcept nogil:
    """Channels [c0, c1) of dW = the sum over tiles [t0, t1), in order (zero if none); with w
    (not NULL: all channels) also y = conv(x, w) at those tiles, from the same im2col, by the
    GEMM forward() takes (wpack: the SIMD one)."""
    cdef Py_ssize_t item, ld
    cdef Tile s
    cdef const real* cols
    cdef real* buf
    if t0 >= t1:
        memset(dw_out, 0, g.F * ld_dw * sizeof(real))
    for item in range(t0, t1):
        s = tile(t, item)
        cols = tile_cols(x, g, c0, c1, s, work, &ld, lvl)
        buf = work + (c1 - c0) * g.KH * g.KW * tile_ld(_width(s))  # F x T: y's, then dy's rows
        if w != NULL:
            forward_gemms(cols, ld, w, NULL, y, buf, g, False, False, s, wpack, lvl)
        weight_gemms(cols, ld, dy, dw_out, ld_dw, buf, item > t0, g, c0, c1, s)


cdef bint _by_chunks(Geometry g):
    """Whether grad-weight splits by channel chunks (enough channels: no reduction), rather
    than into partial sums over runs of tiles (few channels: grad_w is then small)."""
    return g.C >= MIN_CHANNELS_FOR_SPLIT and g.F * g.C // g.G * g.KH * g.KW > PARTIALS_MAX_WEIGHT


cdef inline real _sum_parts(const real* first, Py_ssize_t parts, Py_ssize_t stride) noexcept nogil:
    """first[0] + first[stride] + ... (parts terms), in that order, in `real`."""
    cdef real total = 0
    cdef Py_ssize_t p
    for p in range(parts):
        total = total + first[p * stride]
    return total


cdef _partial_sums(const real* x, const real* dy, real* dwp, Geometry g, int num_threads,
                   const real* w, real* y, const real* wpack, int lvl):
    """grad_w as at most WEIGHT_PARTIALS partial sums over fixed runs of tiles (by the shapes,
    not the threads), added up in order; with w (not NULL), y = conv(x, w) on the way."""
    cdef Tiling t = tiling(g.C * g.KH * g.KW, g.N, g.OH, g.OW)
    cdef Py_ssize_t n_items = min(t.count, WEIGHT_PARTIALS), per_item = (t.count + n_items - 1) // n_items
    cdef Py_ssize_t stride = (g.C * g.KH * g.KW + g.F) * tile_ld(tile_columns(t)), item, e
    cdef Py_ssize_t size = g.F * g.C // g.G * g.KH * g.KW
    cdef int nt = <int>min(<Py_ssize_t>num_threads, n_items)
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64",
                                      stride * nt + n_items * size)
    cdef real* work
    cdef real* part = &ws[0] + stride * nt
    if nt == 1:  # one thread, no region (_omp.pxd)
        with nogil:
            for item in range(n_items):
                _weight_tiles(x, dy, part + item * size, size // g.F, &ws[0], g, t,
                              item * per_item, min(t.count, (item + 1) * per_item), 0, g.C, w, y,
                              wpack, lvl)
            for e in range(size):
                dwp[e] = _sum_parts(part + e, n_items, size)
        return
    with nogil, parallel(num_threads=nt):
        work = _thread_work(&ws[0], stride)
        for item in prange(n_items, schedule="dynamic"):
            _weight_tiles(x, dy, part + item * size, size // g.F, work, g, t, item * per_item,
                          min(t.count, (item + 1) * per_item), 0, g.C, w, y, wpack, lvl)
    with nogil:
        for e in prange(size, num_threads=num_threads, schedule="static"):
            dwp[e] = _sum_parts(part + e, n_items, size)


cdef inline void _weight_chunk(const real* x, const real* dy, real* dw_out, real* work,
                               Geometry g, Tiling t, Py_ssize_t item, Py_ssize_t chunks,
                               Py_ssize_t cc) noexcept nogil:
    """grad_weight()'s work item `item`: chunk item % chunks (of cc channels) of a group's
    columns of grad_w, over every tile."""
    cdef Py_ssize_t Cg = g.C // g.G, grp = item // chunks
    cdef Py_ssize_t c0 = grp * Cg + (item - grp * chunks) * cc
    _weight_tiles(x, dy, dw_out, Cg * g.KH * g.KW, work, g, t, 0, t.count, c0,
                  min(c0 + cc, (grp + 1) * Cg), NULL, NULL, NULL, 0)


def grad_weight(const real[:, :, :, ::1] grad_y, const real[:, :, :, ::1] x,
                real[:, :, :, ::1] grad_w, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int num_threads):
    """grad_w = sum over images and positions of dY x cols^T.

    With enough channels, each work item owns a chunk of grad_w's columns and walks every tile in
    order (no reduction). With few channels, _partial_sums."""
    cdef Geometry g = geometry(x.shape, grad_w.shape, grad_y.shape, sh, sw, pt, pl, dh, dw, groups)
    if not _by_chunks(g):
        _partial_sums(&x[0, 0, 0, 0], &grad_y[0, 0, 0, 0], &grad_w[0, 0, 0, 0], g, num_threads,
                      NULL, NULL, NULL, 0)
        return
    cdef Py_ssize_t KK = g.KH * g.KW, G = g.G, Cg = g.C // G, Fg = g.F // G
    cdef Py_ssize_t chunks = min(Cg, max(1, (WEIGHT_CHUNKS + G - 1) // G))
    cdef Py_ssize_t cc = (Cg + chunks - 1) // chunks
    chunks = (Cg + cc - 1) // cc
    cdef Tiling t = tiling(cc * KK, g.N, g.OH, g.OW)
    cdef Py_ssize_t n_items = G * chunks, item
    cdef Py_ssize_t stride = (cc * KK + Fg) * tile_ld(tile_columns(t))
    cdef int nt = <int>min(<Py_ssize_t>num_threads, n_items)
    cdef real[::1] ws = get_workspace("float32" if real is float else "float64", stride * nt)
    cdef real* work
    if nt == 1:  # one thread, no region (_omp.pxd)
        with nogil:
            for item in range(n_items):
                _weight_chunk(&x[0, 0, 0, 0], &grad_y[0, 0, 0, 0], &grad_w[0, 0, 0, 0], &ws[0],
                              g, t, item, chunks, cc)
        return
    with nogil, parallel(num_threads=nt):
        work = _thread_work(&ws[0], stride)
        for item in prange(n_items, schedule="dynamic"):
            _weight_chunk(&x[0, 0, 0, 0], &grad_y[0, 0, 0, 0], &grad_w[0, 0, 0, 0], work, g, t,
                          item, chunks, cc)


def forward_and_grad_weight(const real[:, :, :, ::1] x, const real[:, :, :, ::1] weight,
                            real[:, :, :, ::1] y, const real[:, :, :, ::1] grad_y,
                            real[:, :, :, ::1] grad_w, Py_ssize_t sh, Py_ssize_t sw,
                            Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                            Py_ssize_t groups, int num_threads):
    """y = conv(x, weight) and grad_w = grad_weight(grad_y, x) (grad_y shaped like y), bitwise
    what forward (no bias) and grad_weight give, with one im2col per tile for both: the two
    gradients of a transposed convolution read the same columns. When grad-weight goes by
    channel chunks (no shared tiles), the two calls. (The forward part then runs in at most
    WEIGHT_PARTIALS items: fine for the few cores this is measured on.)"""
    cdef Geometry g = geometry(x.shape, weight.shape, y.shape, sh, sw, pt, pl, dh, dw, groups)
    if _by_chunks(g):
        forward(x, weight, weight[0, 0, 0, :0], y, sh, sw, pt, pl, dh, dw, groups, False, False,
                num_threads)
        grad_weight(grad_y, x, grad_w, sh, sw, pt, pl, dh, dw, groups, num_threads)
        return
    cdef int lvl = _level
    cdef const real[:, :, ::1] packed
    cdef const real* wpack = NULL
    if _simd_gemm(g, sizeof(real), g.C * g.KH * g.KW):  # as forward() decides
        packed = _pack_filters(weight, fc_gemm_filters(lvl))
        wpack = &packed[0, 0, 0]
    _partial_sums(&x[0, 0, 0, 0], &grad_y[0, 0, 0, 0], &grad_w[0, 0, 0, 0], g, num_threads,
                  &weight[0, 0, 0, 0], &y[0, 0, 0, 0], wpack, lvl)


def grad_bias(const real[:, :, :, ::1] grad_y, real[::1] grad_b, int num_threads):
    """grad_b[f] = sum of grad_y[:, f]; in double, plane by plane (sums.pxd), in a fixed order."""
    cdef Py_ssize_t N = grad_y.shape[0], F = grad_y.shape[1]
    cdef Py_ssize_t OHW = grad_y.shape[2] * grad_y.shape[3], f, n
    cdef double s
    cdef const real* dy = &grad_y[0, 0, 0, 0]
    with nogil:
        for f in prange(F, num_threads=num_threads, schedule="static"):
            s = 0
            for n in range(N):
                s = s + run_sum(dy + (n * F + f) * OHW, OHW)
            grad_b[f] = <real>s


def all_finite(const real[::1] a, int num_threads):
    """Whether no element of `a` is inf or NaN: counted per chunk of FINITE_CHUNK elements over
    the threads. What the planner asks of a transform's operands (fastconv._backend.cpu.ops):
    NumPy's sum that answered it ran on one thread, 0.38 ms of a 2-thread backward's ~13 ms on
    8 x 64 x 56 x 56 (Ice Lake-SP)."""
    cdef Py_ssize_t n = a.shape[0], chunks = (n + FINITE_CHUNK - 1) // FINITE_CHUNK, i
    cdef Py_ssize_t bad = 0
    if n == 0:
        return True
    cdef const real* p = &a[0]
    cdef int nt = <int>min(<Py_ssize_t>num_threads, chunks)
    with nogil:
        if nt == 1:  # one thread, no region (_omp.pxd)
            for i in range(chunks):
                bad += nonfinite_count(p + i * FINITE_CHUNK, min(<Py_ssize_t>FINITE_CHUNK,
                                                                 n - i * FINITE_CHUNK))
        else:
            for i in prange(chunks, num_threads=nt, schedule="static"):
                bad += nonfinite_count(p + i * FINITE_CHUNK, min(<Py_ssize_t>FINITE_CHUNK,
                                                                 n - i * FINITE_CHUNK))
    return bad == 0
