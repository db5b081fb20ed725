# The row-vectorised direct kernels (direct_rows.h) and the choice between them and the
# filter-vectorised ones; textually included by direct.pyx (its helpers and enums).
cdef extern from "direct_rows.h" nogil:
    int fc_vector_bytes(int level)
    int FC_ROWS_FO
    int fc_rows_block(int level, int itemsize, int two_rows)
    void fc_rows_forward_float(int level, const float* x, Py_ssize_t C, Py_ssize_t R,
                               Py_ssize_t XWP, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh,
                               Py_ssize_t dh, Py_ssize_t dw, const int* khr, const float* wpack,
                               const float* bias, float* y, Py_ssize_t YPLANE, Py_ssize_t FB,
                               Py_ssize_t OW, Py_ssize_t nrows, int relu, int two_rows)
    void fc_rows_forward_double(int level, const double* x, Py_ssize_t C, Py_ssize_t R,
                                Py_ssize_t XWP, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh,
                                Py_ssize_t dh, Py_ssize_t dw, const int* khr,
                                const double* wpack, const double* bias, double* y,
                                Py_ssize_t YPLANE, Py_ssize_t FB, Py_ssize_t OW,
                                Py_ssize_t nrows, int relu, int two_rows)
    int FC_ROWS_GF, FC_ROWS_GK
    void fc_rows_grad_weight_float(int level, const float* x, Py_ssize_t C, Py_ssize_t XH,
                                   Py_ssize_t XW, const float* const* gp, Py_ssize_t OH,
                                   Py_ssize_t OW, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh,
                                   Py_ssize_t dh, Py_ssize_t dw, float* accv)
    void fc_rows_grad_weight_double(int level, const double* x, Py_ssize_t C, Py_ssize_t XH,
                                    Py_ssize_t XW, const double* const* gp, Py_ssize_t OH,
                                    Py_ssize_t OW, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh,
                                    Py_ssize_t dh, Py_ssize_t dw, double* accv)

# 0: by shape (_rows_layout); 1: filters; 2: rows (stride 1 along W), the forward's register
# block by shape (_two_rows); 3: rows, two vectors of one row; 4: rows, a vector of two rows
cdef int _layout = 0


def set_layout(str name):
    """Force the forward and grad-weight kernels' vectorisation: "filters", "rows" (only where the
    stride along W is 1, and for grad-weight output rows of a vector at least; elsewhere
    filters; the forward's register block by shape), "rows1" or "rows2" (rows, the forward's
    block two vectors of one row or one vector of two rows) or "auto" (by shape); for tests.
    Returns the previous setting."""
    global _layout
    names = ("auto", "filters", "rows", "rows1", "rows2")
    if name not in names:
        raise ValueError(f"name must be one of {names}, got {name!r}")
    previous = names[_layout]
    _layout = names.index(name)
    return previous


cdef Geometry _float32_geometry(x_shape, w_shape, y_shape, Py_ssize_t stride,
                               Py_ssize_t padding) except *:
    """The Geometry of uses_rows's and uses_two_rows's arguments."""
    cdef Py_ssize_t[4] xs, ws, ys
    for i in range(4):
        xs[i], ws[i], ys[i] = x_shape[i], w_shape[i], y_shape[i]
    return geometry(xs, ws, ys, stride, stride, padding, padding, 1, 1, 1)


def uses_rows(x_shape, w_shape, y_shape, Py_ssize_t stride, Py_ssize_t padding,
              bint grad_weight=False):
    """Whether forward() (or grad_weight()) on these shapes, float32 at this module's level, runs
    along rows."""
    cdef Geometry g = _float32_geometry(x_shape, w_shape, y_shape, stride, padding)
    return _rows_layout(g, _level, 4, grad_weight)


def uses_two_rows(x_shape, w_shape, y_shape, Py_ssize_t stride, Py_ssize_t padding):
    """Whether the row-vectorised forward on these shapes, float32 at this module's level, takes
    register blocks of one vector of two output rows (else two vectors of one row)."""
    cdef Geometry g = _float32_geometry(x_shape, w_shape, y_shape, stride, padding)
    return _two_rows(g, _level, 4)


cdef double _used(Py_ssize_t n, Py_ssize_t block):
    """The share of `n` rounded up to whole blocks that is n."""
    return n / <double>((n + block - 1) // block * block)


cdef bint _rows_layout(Geometry g, int lvl, Py_ssize_t itemsize, bint grad_weight):
    """Whether the forward (or grad-weight) runs vectorised along output rows (direct_rows.h)
    rather than along filters: stride 1 along W and a larger share of the computed lanes used
    (output columns per vector block, filters and kernel columns per register block, against
    filters per vector). LeNet-5, batch 64, AVX2, one thread (CPU time, interleaved medians on
    a loaded machine), filters -> rows: conv1 forward (28 columns, 6 filters) 880 -> 360 us;
    conv2 grad-input (a forward of 14 columns, 6 output channels) 1010 -> 660 us; conv1
    grad-weight 1205 -> 590 us. conv2 (16 filters, 10 columns) stays on filters: forward 889 us
    there vs 948 us (batch 256: 2661 vs 3231 us); grad-weight 754 vs 2365 us."""
    cdef Py_ssize_t VB = fc_vector_bytes(lvl) // itemsize
    cdef Py_ssize_t VR = fc_vector_bytes(_rows_gw_level(lvl)) // itemsize
    # grad-weight loads a row's last vector ending at the row's end: rows of a vector at least
    if g.sw != 1 or _layout == 1 or (grad_weight and g.OW < VR):
        return False
    if _layout >= 2:
        return True
    # filters per block: one or more vectors (fc_direct_vectors)
    cdef double filters_use = _used(g.F, VB * fc_direct_vectors(lvl, itemsize, g.F)), rows_use
    if grad_weight:
        rows_use = _used(g.OW, VR) * _used(g.F, FC_ROWS_GF) * _used(g.KW, FC_ROWS_GK)
    else:
        rows_use = _used(g.OW, fc_rows_block(lvl, itemsize, _two_rows(g, lvl, itemsize)))
        rows_use *= _used(g.F, FC_ROWS_FO)
    return rows_use > filters_use


cdef inline int _rows_gw_level(int lvl) noexcept nogil:
    """The instruction set the row-vectorised grad-weight runs at: AVX2's vectors where the CPU
    has AVX-512. Each of its FMAs loads a vector at any column offset, and a 64-byte load at
    such an offset nearly always spans two cache lines: at AVX-512 it ran 1.2-1.6x slower than
    at AVX2 over six few-filter shapes (LeNet-5's conv1 among them; one thread, CPU time,
    Ice Lake-SP). The forward's loads are a third of its FMAs: it keeps AVX-512."""
    return min(lvl, 1)


cdef bint _two_rows(Geometry g, int lvl, Py_ssize_t itemsize):
    """Whether the row-vectorised forward's register block is one vector of two output rows
    rather than two vectors of one: where that leaves fewer lanes empty (rows of a vector or
    less; LeNet-5's conv2 grad-input, 14 columns, at AVX-512: 538 -> 313 us at batch 64, two
    threads, Ice Lake-SP)."""
    if _layout == 3 or _layout == 4:
        return _layout == 4
    cdef Py_ssize_t VB = fc_vector_bytes(lvl) // itemsize
    return _used(g.OW, VB) > _used(g.OW, 2 * VB)


cdef _forward_rows(const real[:, :, :, ::1] x, const real[:, :, :, ::1] weight,
                   const real[::1] bias, real[:, :, :, ::1] y, Geometry g, int lvl,
                   bint has_bias, bint relu, int num_threads):
    """forward() by the row-vectorised kernel: a work item is a run of output rows of one image,
    all filter blocks, read from a zero-padded window of rows wide enough for whole blocks."""
    cdef Py_ssize_t C = g.C, H = g.H, F = g.F, OH = g.OH, OW = g.OW
    dtype = np.float32 if real is float else np.float64
    cdef Py_ssize_t FO = FC_ROWS_FO, blocks = (F + FO - 1) // FO
    cdef bint two_rows = _two_rows(g, lvl, sizeof(real))
    cdef Py_ssize_t RB = fc_rows_block(lvl, sizeof(real), two_rows)
    cdef Py_ssize_t rows = max(1, min(OH, PIXELS_PER_ITEM // OW))
    cdef Py_ssize_t runs = (OH + rows - 1) // rows
    rows = (OH + runs - 1) // runs  # balance the runs of an image
    runs = (OH + rows - 1) // rows
    cdef Py_ssize_t R = (rows - 1) * g.sh + (g.KH - 1) * g.dh + 1
    cdef Py_ssize_t XWP = (OW + RB - 1) // RB * RB + (g.KW - 1) * g.dw
    cdef Py_ssize_t n_items = g.N * runs, stride = C * R * XWP
    cdef int nt = <int>max(1, min(<Py_ssize_t>num_threads, n_items))
    cdef real[::1] ws = get_workspace(dtype, stride * nt)
    # Tables (direct.pyx): packed weights (taps in (c, kh, kw) order), packed bias, kernel rows.
    cdef Py_ssize_t K = C * g.KH * g.KW
    cdef real* wpack = <real*>_tables(blocks * FO * (K + 1) * sizeof(real) + 2 * OH * sizeof(int))
    cdef real* bpack = wpack + blocks * K * FO
    cdef int* khr = <int*>(bpack + blocks * FO)
    _pack(&weight[0, 0, 0, 0], F, C, g.KH, g.KW, False, FO, wpack)
    _pack_bias(&bias[0] if has_bias else NULL, F, has_bias, blocks * FO, bpack)
    _kernel_rows(khr, OH, H, g.KH, g.sh, g.pt, g.dh)
    # Kernel rows that read only padding rows are skipped when every weight is finite (else
    # 0 * inf must give NaN, as on the GEMM path).
    cdef bint pads_rows = g.pt > 0 or (OH - 1) * g.sh + (g.KH - 1) * g.dh - g.pt >= H
    cdef bint skip_rows = pads_rows and _all_finite(&weight[0, 0, 0, 0], F * K)
    cdef Py_ssize_t item
    cdef real* window
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    cdef const int* skips = khr if skip_rows else NULL
    if nt == 1:  # one thread, no region (_omp.pxd)
        with nogil:
            for item in range(n_items):
                _rows_item(lvl, g, item, runs, rows, R, XWP, xp, &ws[0], skips, wpack, bpack, yp,
                           relu, two_rows)
    else:
        with nogil, parallel(num_threads=nt):
            window = &ws[0] + omp_get_thread_num() * stride
            for item in prange(n_items, schedule="dynamic"):
                _rows_item(lvl, g, item, runs, rows, R, XWP, xp, window, skips, wpack, bpack, yp,
                           relu, two_rows)
    free(wpack)


cdef void _rows_item(int lvl, Geometry g, Py_ssize_t item, Py_ssize_t runs, Py_ssize_t rows,
                     Py_ssize_t R, Py_ssize_t XWP, const real* xp, real* window, const int* khr,
                     const real* wpack, const real* bpack, real* yp, bint relu,
                     bint two_rows) noexcept nogil:
    """_forward_rows()'s work item `item`: output rows [oh0, oh0 + rows) of one image, every
    block of filters, from its window copied into `window`; khr NULL: no rows skipped."""
    cdef Py_ssize_t n = item // runs, oh0 = (item % runs) * rows, blk, FO = FC_ROWS_FO
    cdef Py_ssize_t K = g.C * g.KH * g.KW, OHW = g.OH * g.OW
    copy_window(xp + n * g.C * g.H * g.W, g.C, g.H, g.W, oh0 * g.sh - g.pt, R, -g.pl, XWP,
                window)
    for blk in range((g.F + FO - 1) // FO):
        _rows_block(lvl, window, g.C, R, XWP, g, khr + 2 * oh0 if khr != NULL else NULL,
                    wpack + blk * K * FO, bpack + blk * FO,
                    yp + (n * g.F + blk * FO) * OHW + oh0 * g.OW, OHW, min(FO, g.F - blk * FO),
                    min(g.OH, oh0 + rows) - oh0, relu, two_rows)


cdef inline void _rows_block(int lvl, const real* x, Py_ssize_t C, Py_ssize_t R, Py_ssize_t XWP,
                             Geometry g, const int* khr, const real* wpack, const real* bias,
                             real* y, Py_ssize_t YPLANE, Py_ssize_t FB, Py_ssize_t nrows,
                             int relu, bint two_rows) noexcept nogil:
    """fc_rows_forward_<dtype> (direct_rows.h): one block of filters over a run of rows."""
    if real is float:
        fc_rows_forward_float(lvl, x, C, R, XWP, g.KH, g.KW, g.sh, g.dh, g.dw, khr, wpack, bias,
                              y, YPLANE, FB, g.OW, nrows, relu, two_rows)
    else:
        fc_rows_forward_double(lvl, x, C, R, XWP, g.KH, g.KW, g.sh, g.dh, g.dw, khr, wpack,
                               bias, y, YPLANE, FB, g.OW, nrows, relu, two_rows)




cdef _grad_weight_rows(const real[:, :, :, ::1] grad_y, const real[:, :, :, ::1] x,
                       real[:, :, :, ::1] grad_w, real[::1] grad_b, bint has_bias, Geometry g,
                       int lvl, int num_threads):
    """grad_weight() by the row-vectorised kernel. A work item is (part of the batch, pair of
    filters): per image it runs the kernel over x (or its zero-padded window) and the pair's
    grad_y planes into the item's vector partial sums (and sums the planes for grad_b); at the
    end the lanes, then the parts, are added up in a fixed order."""
    cdef Py_ssize_t N = g.N, C = g.C, F = g.F, OH = g.OH, OW = g.OW
    cdef Py_ssize_t KH = g.KH, KW = g.KW, OHW = OH * OW
    dtype = np.float32 if real is float else np.float64
    cdef Py_ssize_t VL = fc_vector_bytes(lvl) // sizeof(real), FG = FC_ROWS_GF, KG = FC_ROWS_GK
    cdef Py_ssize_t pairs = (F + FG - 1) // FG, KB = (KW + KG - 1) // KG
    cdef Py_ssize_t R, XW
    cdef bint padded
    R, XW, padded = _window_shape(g, OH)
    cdef Py_ssize_t parts = min(N, WEIGHT_PARTIALS), per_part = (N + parts - 1) // parts
    parts = (N + per_part - 1) // per_part
    cdef Py_ssize_t item_size = C * KH * KB * FG * KG * VL  # one item's vector partial sums
    cdef Py_ssize_t n_items = parts * pairs, stride = C * R * XW if padded else 0
    cdef int nt = <int>max(1, min(<Py_ssize_t>num_threads, n_items))
    # + one zero plane: the missing second filter of an odd F
    cdef real[::1] ws = get_workspace(dtype, stride * nt + n_items * item_size + OHW + VL)
    cdef real* sums = &ws[0] + stride * nt
    cdef real* zero = sums + n_items * item_size
    # Tables (direct.pyx): grad_b per part (in double), then each thread's filter planes.
    cdef double* bparts = <double*>_tables(parts * F * sizeof(double) + nt * FG * sizeof(real*))
    cdef const real** gpp = <const real**>(bparts + parts * F)
    memset(bparts, 0, parts * F * sizeof(double))
    # vectors must be aligned to the element only (the kernel's vector type says so)
    memset(sums, 0, (n_items * item_size + OHW + VL) * sizeof(real))
    cdef Py_ssize_t item, f
    cdef real* window
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef const real* gyp = &grad_y[0, 0, 0, 0]
    cdef real* dwp = &grad_w[0, 0, 0, 0]
    cdef real* gbp = &grad_b[0] if has_bias else NULL
    cdef double* bias_sums = bparts if has_bias else NULL
    if nt == 1:  # one thread, no region (_omp.pxd)
        with nogil:
            for item in range(n_items):
                _rows_gw_item(lvl, g, item, pairs, per_part, padded, R, XW, xp, gyp, zero,
                              &ws[0], gpp, sums + item * item_size, bias_sums)
            for f in range(F):
                _rows_gw_sums(g, f, parts, pairs, item_size, VL, sums, bparts, dwp, gbp)
    else:
        with nogil, parallel(num_threads=nt):
            window = &ws[0] + omp_get_thread_num() * stride
            for item in prange(n_items, schedule="dynamic"):
                _rows_gw_item(lvl, g, item, pairs, per_part, padded, R, XW, xp, gyp, zero,
                              window, gpp + omp_get_thread_num() * FG, sums + item * item_size,
                              bias_sums)
        with nogil:
            for f in prange(F, num_threads=nt, schedule="static"):
                _rows_gw_sums(g, f, parts, pairs, item_size, VL, sums, bparts, dwp, gbp)
    free(bparts)


cdef void _rows_gw_item(int lvl, Geometry g, Py_ssize_t item, Py_ssize_t pairs,
                        Py_ssize_t per_part, bint padded, Py_ssize_t R, Py_ssize_t XW,
                        const real* xp, const real* gyp, const real* zero, real* window,
                        const real** gp, real* accv, double* bparts) noexcept nogil:
    """_grad_weight_rows()'s work item `item` (a part of the batch, a pair of filters) into its
    vector partial sums `accv`; with bparts (not NULL) the pair's grad_y planes summed for
    grad_b. `window`, `gp`: the thread's window and filter planes."""
    cdef Py_ssize_t FG = FC_ROWS_GF, F = g.F, OHW = g.OH * g.OW
    cdef Py_ssize_t part = item // pairs, pair = item % pairs, n, f
    cdef const real* xw
    for n in range(part * per_part, min(g.N, (part + 1) * per_part)):
        if padded:
            copy_window(xp + n * g.C * g.H * g.W, g.C, g.H, g.W, -g.pt, R, -g.pl, XW, window)
            xw = window
        else:
            xw = xp + n * g.C * g.H * g.W
        for f in range(FG):
            gp[f] = gyp + (n * F + pair * FG + f) * OHW if pair * FG + f < F else zero
            if bparts != NULL and pair * FG + f < F:
                bparts[part * F + pair * FG + f] += run_sum(gp[f], OHW)
        _rows_gw_block(lvl, xw, g.C, R if padded else g.H, XW, gp, g, accv)


cdef void _rows_gw_sums(Geometry g, Py_ssize_t f, Py_ssize_t parts, Py_ssize_t pairs,
                        Py_ssize_t item_size, Py_ssize_t VL, const real* sums,
                        const double* bparts, real* dwp, real* gbp) noexcept nogil:
    """grad_w[f] (and grad_b[f] into gbp, not NULL) from the items' lanes, then parts, in
    order."""
    cdef Py_ssize_t FG = FC_ROWS_GF, KG = FC_ROWS_GK, KB = (g.KW + KG - 1) // KG
    cdef Py_ssize_t pair = f // FG, c, kh, kw, part, lane
    cdef real s
    cdef const real* acc
    for c in range(g.C):
        for kh in range(g.KH):
            for kw in range(g.KW):
                s = 0
                for part in range(parts):
                    acc = (sums + (part * pairs + pair) * item_size
                           + ((((c * g.KH + kh) * KB + kw // KG) * FG + f % FG) * KG
                              + kw % KG) * VL)
                    for lane in range(VL):
                        s = s + acc[lane]
                dwp[((f * g.C + c) * g.KH + kh) * g.KW + kw] = s
    if gbp != NULL:
        gbp[f] = <real>_sum_parts(bparts + f, parts, g.F)


cdef inline void _rows_gw_block(int lvl, const real* x, Py_ssize_t C, Py_ssize_t XH,
                                Py_ssize_t XW, const real** gp, Geometry g,
                                real* accv) noexcept nogil:
    """fc_rows_grad_weight_<dtype> (direct_rows.h): one image, one pair of filters."""
    if real is float:
        fc_rows_grad_weight_float(lvl, x, C, XH, XW, gp, g.OH, g.OW, g.KH, g.KW, g.sh, g.dh,
                                  g.dw, accv)
    else:
        fc_rows_grad_weight_double(lvl, x, C, XH, XW, gp, g.OH, g.OW, g.KH, g.KW, g.sh, g.dh,
                                   g.dw, accv)
