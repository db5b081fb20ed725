# Max and average pooling over NCHW planes, and their gradients. One work item is one (n, c) plane:
# each output and each input-gradient element is written by exactly one thread, in a fixed order.
from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.string cimport memset

from _types cimport real


def max_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, long long[:, :, :, ::1] indices,
                Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                Py_ssize_t pw, int num_threads):
    """y = window max, indices = ih * W + iw of it (first max wins; a NaN wins and stays)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = y.shape[2], OW = y.shape[3]
    cdef Py_ssize_t plane, oh, ow, ih, iw, ih0, iw0, best_index
    cdef real best, v
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    cdef long long* ip = &indices[0, 0, 0, 0]
    with nogil:
        for plane in prange(N * C, num_threads=num_threads, schedule="static"):
            for oh in range(OH):
                ih0 = oh * sh - ph
                for ow in range(OW):
                    iw0 = ow * sw - pw
                    best = -INFINITY
                    best_index = -1
                    for ih in range(max(ih0, 0), min(ih0 + kh, H)):
                        for iw in range(max(iw0, 0), min(iw0 + kw, W)):
                            v = xp[(plane * H + ih) * W + iw]
                            if best_index < 0 or v > best or (v != v and best == best):
                                best = v
                                best_index = ih * W + iw
                    yp[(plane * OH + oh) * OW + ow] = best
                    ip[(plane * OH + oh) * OW + ow] = best_index


def max_backward(const real[:, :, :, ::1] grad_y, const long long[:, :, :, ::1] indices,
                 real[:, :, :, ::1] grad_x, int num_threads):
    """grad_x[n, c].flat[indices] += grad_y (scatter within the plane)."""
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1]
    cdef Py_ssize_t HW = grad_x.shape[2] * grad_x.shape[3]
    cdef Py_ssize_t OHW = grad_y.shape[2] * grad_y.shape[3], plane, j
    cdef const real* dy = &grad_y[0, 0, 0, 0]
    cdef const long long* ip = &indices[0, 0, 0, 0]
    cdef real* dx = &grad_x[0, 0, 0, 0]
    with nogil:
        for plane in prange(N * C, num_threads=num_threads, schedule="static"):
            memset(dx + plane * HW, 0, HW * sizeof(real))
            for j in range(OHW):
                dx[plane * HW + ip[plane * OHW + j]] += dy[plane * OHW + j]


cdef inline Py_ssize_t _divisor(Py_ssize_t ih0, Py_ssize_t iw0, Py_ssize_t kh, Py_ssize_t kw,
                                Py_ssize_t H, Py_ssize_t W, bint count_include_pad) noexcept nogil:
    if count_include_pad:
        return kh * kw
    return (min(ih0 + kh, H) - max(ih0, 0)) * (min(iw0 + kw, W) - max(iw0, 0))


def avg_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, Py_ssize_t kh, Py_ssize_t kw,
                Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                bint count_include_pad, int num_threads):
    """y = window sum / divisor (KH*KW with count_include_pad, else the in-image cell count)."""
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
                    yp[(plane * OH + oh) * OW + ow] = s / <real>_divisor(ih0, iw0, kh, kw, H, W,
                                                                   count_include_pad)


def avg_backward(const real[:, :, :, ::1] grad_y, real[:, :, :, ::1] grad_x, Py_ssize_t kh,
                 Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                 bint count_include_pad, int num_threads):
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
                    g = dy[(plane * OH + oh) * OW + ow] / <real>_divisor(ih0, iw0, kh, kw, H, W,
                                                                         count_include_pad)
                    for ih in range(max(ih0, 0), min(ih0 + kh, H)):
                        for iw in range(max(iw0, 0), min(iw0 + kw, W)):
                            dx[(plane * H + ih) * W + iw] += g
