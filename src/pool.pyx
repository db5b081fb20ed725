# Max and average pooling over NCHW planes, and their gradients. One work item is one (n, c) plane:
# each output and each input-gradient element is written by exactly one thread, in a fixed order.
from cython.parallel cimport prange
from libc.string cimport memset

from _types cimport real
from _select cimport fc_select_index, select
from geometry cimport TapRange, tap_range


cdef inline bint _takes(real v, real best) noexcept nogil:
    """Does v replace the running max? Strictly greater (the first max wins), or the first NaN."""
    return (v > best) | ((v != v) & (best == best))


cdef extern from "pool_2x2.h" nogil:
    int fc_simd_level()
    Py_ssize_t fc_max_2x2_float(int level, const float* x, float* y, long long* idx,
                                Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW)


include "simd_level.pxi"


cdef void _max_2x2(int level, const real* xplane, real* yplane, long long* iplane,
                   Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """The 2x2, stride-2, unpadded window (LeNet's, and most CNNs'): float32 columns by the SIMD
    steps of pool_2x2.h at level >= 1, the rest here, unrolled and branch-free (the same rule)."""
    cdef Py_ssize_t oh, ow, i, ow0 = 0
    cdef real best, v
    cdef long long best_index
    cdef int take
    if real is float:
        ow0 = fc_max_2x2_float(level, xplane, yplane, iplane, W, OH, OW)
    for oh in range(OH):
        for ow in range(ow0, OW):
            i = 2 * oh * W + 2 * ow
            best = xplane[i]
            best_index = i
            v = xplane[i + 1]
            take = _takes(v, best)
            best = select(take, v, best)
            best_index = fc_select_index(take, i + 1, best_index)
            v = xplane[i + W]
            take = _takes(v, best)
            best = select(take, v, best)
            best_index = fc_select_index(take, i + W, best_index)
            v = xplane[i + W + 1]
            take = _takes(v, best)
            best = select(take, v, best)
            best_index = fc_select_index(take, i + W + 1, best_index)
            yplane[oh * OW + ow] = best
            iplane[oh * OW + ow] = best_index


cdef inline void _window_max(const real* xplane, Py_ssize_t W, Py_ssize_t ih0, Py_ssize_t nh,
                             Py_ssize_t dh, Py_ssize_t iw0, Py_ssize_t nw, Py_ssize_t dw,
                             real* y, long long* index) noexcept nogil:
    """*y, *index = the max of the nh rows ih0, ih0 + dh, .. and the nw columns iw0, iw0 + dw,
    .. of the plane (nh, nw >= 1), scanned in row-major order by the rule of _takes."""
    cdef Py_ssize_t i, j, at
    cdef Py_ssize_t best_index = ih0 * W + iw0
    cdef real best = xplane[best_index], v
    cdef int take
    # Small windows: branch-free selects (on random data a branch mispredicts about every other
    # cell of a 2x2 window). From 16 cells a branch: the running max changes only ~ln(cells)
    # times, so it predicts well, while the selects chain every cell on the last (measured,
    # one thread, random float32: 7x7 windows 2x faster, adaptive ~8x8 windows 6x).
    if nh * nw < 16:
        for i in range(nh):
            at = (ih0 + i * dh) * W + iw0
            for j in range(nw):
                v = xplane[at]
                take = _takes(v, best)
                best = select(take, v, best)
                best_index = fc_select_index(take, at, best_index)
                at = at + dw
    else:
        for i in range(nh):
            at = (ih0 + i * dh) * W + iw0
            for j in range(nw):
                v = xplane[at]
                if _takes(v, best):
                    best = v
                    best_index = at
                at = at + dw
    y[0] = best
    index[0] = best_index


def max_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, long long[:, :, :, ::1] indices,
                Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, int num_threads):
    """y = window max, indices = ih * W + iw of it (first max wins; a NaN wins and stays).
    Window (oh, ow) reads rows oh * sh - ph + i * dh, i < kh (columns alike) inside the input."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = y.shape[2], OW = y.shape[3]
    cdef Py_ssize_t plane, oh, ow, ih0, iw0, o
    cdef TapRange rows, cols
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef const real* xplane
    cdef real* yp = &y[0, 0, 0, 0]
    cdef long long* ip = &indices[0, 0, 0, 0]
    cdef int simd = _level
    with nogil:
        for plane in prange(N * C, num_threads=num_threads, schedule="static"):
            xplane = xp + plane * H * W
            # (unless ceil mode added a last window that runs past the input: the general loop
            # clips it)
            if (kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0
                    and dh == 1 and dw == 1 and 2 * OH <= H and 2 * OW <= W):
                _max_2x2(simd, xplane, yp + plane * OH * OW, ip + plane * OH * OW, W, OH, OW)
                continue
            for oh in range(OH):
                # the window's taps inside the input: never none (pool_geometry refuses windows
                # all in the padding, and a ceil-mode window starts inside the input)
                ih0 = oh * sh - ph
                rows = tap_range(kh, H, dh, ih0)
                for ow in range(OW):
                    iw0 = ow * sw - pw
                    cols = tap_range(kw, W, dw, iw0)
                    o = (plane * OH + oh) * OW + ow
                    _window_max(xplane, W, ih0 + rows.lo * dh, rows.hi - rows.lo, dh,
                                iw0 + cols.lo * dw, cols.hi - cols.lo, dw, yp + o, ip + o)


def adaptive_max_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y,
                         long long[:, :, :, ::1] indices, const long long[:, ::1] rows,
                         const long long[:, ::1] cols, int num_threads):
    """y = the max over torch's adaptive windows: output (oh, ow) pools the rows
    [rows[oh, 0], rows[oh, 1]) and the columns [cols[ow, 0], cols[ow, 1]) (non-empty, inside
    the input); indices as max_forward's."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = y.shape[2], OW = y.shape[3]
    cdef Py_ssize_t plane, oh, ow, o
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    cdef long long* ip = &indices[0, 0, 0, 0]
    cdef const long long* rp = &rows[0, 0]
    cdef const long long* cp = &cols[0, 0]
    with nogil:
        for plane in prange(N * C, num_threads=num_threads, schedule="static"):
            for oh in range(OH):
                for ow in range(OW):
                    o = (plane * OH + oh) * OW + ow
                    _window_max(xp + plane * H * W, W, rp[2 * oh], rp[2 * oh + 1] - rp[2 * oh],
                                1, cp[2 * ow], cp[2 * ow + 1] - cp[2 * ow], 1, yp + o, ip + o)


def max_backward(const real[:, :, :, ::1] grad_y, const long long[:, :, :, ::1] indices,
                 real[:, :, :, ::1] grad_x, int num_threads):
    """grad_x[n, c].flat[indices] += grad_y (scatter within the plane). Returns the number of
    indices outside [0, H*W), which add nothing: checked here, in the pass that reads them
    anyway, rather than by two reductions over the indices before (the caller raises)."""
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1]
    cdef Py_ssize_t HW = grad_x.shape[2] * grad_x.shape[3]
    cdef Py_ssize_t OHW = grad_y.shape[2] * grad_y.shape[3], plane, j, bad = 0
    cdef long long at
    cdef const real* dy = &grad_y[0, 0, 0, 0]
    cdef const long long* ip = &indices[0, 0, 0, 0]
    cdef real* dx = &grad_x[0, 0, 0, 0]
    with nogil:
        for plane in prange(N * C, num_threads=num_threads, schedule="static"):
            memset(dx + plane * HW, 0, HW * sizeof(real))
            for j in range(OHW):
                at = ip[plane * OHW + j]
                if <unsigned long long>at < <unsigned long long>HW:  # 0 <= at < HW
                    dx[plane * HW + at] += dy[plane * OHW + j]
                else:
                    bad += 1
    return bad


cdef inline Py_ssize_t _divisor(Py_ssize_t ih0, Py_ssize_t iw0, Py_ssize_t kh, Py_ssize_t kw,
                                Py_ssize_t H, Py_ssize_t W, Py_ssize_t ph, Py_ssize_t pw,
                                bint count_include_pad, Py_ssize_t divisor_override) noexcept nogil:
    if divisor_override != 0:  # torch's divisor_override: one divisor for every window
        return divisor_override
    if count_include_pad:
        # The window clipped to the padded input (torch's rule): KH*KW except for a ceil-mode
        # window that runs past the right/bottom padding.
        return (min(ih0 + kh, H + ph) - ih0) * (min(iw0 + kw, W + pw) - iw0)
    return (min(ih0 + kh, H) - max(ih0, 0)) * (min(iw0 + kw, W) - max(iw0, 0))


def avg_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, Py_ssize_t kh, Py_ssize_t kw,
                Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                bint count_include_pad, Py_ssize_t divisor_override, int num_threads):
    """y = window sum / divisor (divisor_override when nonzero; else KH*KW with count_include_pad,
    else the in-image cell count)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = y.shape[2], OW = y.shape[3]
    cdef Py_ssize_t plane, oh, ow, ih, iw, ih0, iw0
    cdef real s
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    with nogil:
        for plane in prange(N * C, num_threads=num_threads, schedule="static"):
            for oh in range(OH):
                ih0 = oh * sh - ph
                for ow in range(OW):
                    iw0 = ow * sw - pw
                    s = 0
                    for ih in range(max(ih0, 0), min(ih0 + kh, H)):
                        for iw in range(max(iw0, 0), min(iw0 + kw, W)):
                            s = s + xp[(plane * H + ih) * W + iw]
                    yp[(plane * OH + oh) * OW + ow] = s / <real>_divisor(
                        ih0, iw0, kh, kw, H, W, ph, pw, count_include_pad, divisor_override)


def avg_backward(const real[:, :, :, ::1] grad_y, real[:, :, :, ::1] grad_x, Py_ssize_t kh,
                 Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                 bint count_include_pad, Py_ssize_t divisor_override, int num_threads):
    """grad_x = each grad_y / divisor spread over its window's in-image cells."""
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], H = grad_x.shape[2]
    cdef Py_ssize_t W = grad_x.shape[3], OH = grad_y.shape[2], OW = grad_y.shape[3]
    cdef Py_ssize_t plane, oh, ow, ih, iw, ih0, iw0
    cdef real g
    cdef const real* dy = &grad_y[0, 0, 0, 0]
    cdef real* dx = &grad_x[0, 0, 0, 0]
    with nogil:
        for plane in prange(N * C, num_threads=num_threads, schedule="static"):
            memset(dx + plane * H * W, 0, H * W * sizeof(real))
            for oh in range(OH):
                ih0 = oh * sh - ph
                for ow in range(OW):
                    iw0 = ow * sw - pw
                    g = dy[(plane * OH + oh) * OW + ow] / <real>_divisor(
                        ih0, iw0, kh, kw, H, W, ph, pw, count_include_pad, divisor_override)
                    for ih in range(max(ih0, 0), min(ih0 + kh, H)):
                        for iw in range(max(iw0, 0), min(iw0 + kw, W)):
                            dx[(plane * H + ih) * W + iw] += g
