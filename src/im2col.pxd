# im2col / col2im over one tile, as inline nogil helpers shared by the conv kernels.
# Column j of a tile is the output position (q, ow) with q = n * OH + oh running over [q0, q1):
# a tile is whole output rows, possibly spanning several images.
from _types cimport real


# The output columns ow whose input column ow * sw + offset lies in [0, W) are
# [first_valid(...), end_valid(...)). Returned by value: a prange body must assign its private
# variables, and Cython treats a variable written only through a pointer as shared.
cdef inline Py_ssize_t end_valid(Py_ssize_t OW, Py_ssize_t W, Py_ssize_t sw,
                                 Py_ssize_t offset) noexcept nogil:
    if W - 1 - offset < 0:
        return 0
    return min(OW, (W - 1 - offset) // sw + 1)


cdef inline Py_ssize_t first_valid(Py_ssize_t OW, Py_ssize_t W, Py_ssize_t sw,
                                   Py_ssize_t offset) noexcept nogil:
    cdef Py_ssize_t first = 0
    if offset < 0:
        first = (-offset + sw - 1) // sw
    return min(first, end_valid(OW, W, sw, offset))


cdef inline void im2col(const real* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                        Py_ssize_t c0, Py_ssize_t c1, Py_ssize_t KH, Py_ssize_t KW,
                        Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t q0, Py_ssize_t q1,
                        Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                        Py_ssize_t dh, Py_ssize_t dw, real* cols) noexcept nogil:
    """cols[((c - c0) * KH + kh) * KW + kw, (q - q0) * OW + ow] = x_padded[n, c, ih, iw]."""
    cdef Py_ssize_t T = (q1 - q0) * OW
    cdef Py_ssize_t c, kh, kw, q, n, oh, ih, ow, lo, hi, offset
    cdef real* row
    cdef real* dst
    cdef const real* src
    for c in range(c0, c1):
        for kh in range(KH):
            for kw in range(KW):
                row = cols + ((c - c0) * KH * KW + kh * KW + kw) * T
                offset = kw * dw - pl
                lo = first_valid(OW, W, sw, offset)
                hi = end_valid(OW, W, sw, offset)
                # (n, oh) advance together: a division per row costs more than a short row's copy.
                n = q0 // OH
                oh = q0 - n * OH
                dst = row
                for q in range(q0, q1):
                    ih = oh * sh - pt + kh * dh
                    if ih < 0 or ih >= H:
                        for ow in range(OW):
                            dst[ow] = 0
                    else:
                        src = x + ((n * C + c) * H + ih) * W + offset
                        for ow in range(lo):
                            dst[ow] = 0
                        # Plain loops, not memcpy/memset: rows are often a few elements long
                        # (LeNet: OW = 10), where a library call per row costs more than the copy.
                        if sw == 1:
                            for ow in range(lo, hi):
                                dst[ow] = src[ow]
                        else:
                            for ow in range(lo, hi):
                                dst[ow] = src[ow * sw]
                        for ow in range(hi, OW):
                            dst[ow] = 0
                    dst = dst + OW
                    oh = oh + 1
                    if oh == OH:
                        oh = 0
                        n = n + 1


cdef inline void col2im_add(const real* dcols, Py_ssize_t c0, Py_ssize_t c1,
                            Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW,
                            Py_ssize_t OH, Py_ssize_t OW,
                            Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                            Py_ssize_t dh, Py_ssize_t dw, real* dx_image) noexcept nogil:
    """dx_image[c, ih, iw] += dcols[...] for channels [c0, c1) of one image (dcols: whole image)."""
    cdef Py_ssize_t OHW = OH * OW
    cdef Py_ssize_t c, kh, kw, oh, ih, ow, lo, hi, offset
    cdef const real* src
    cdef real* dst
    for c in range(c0, c1):
        for kh in range(KH):
            for kw in range(KW):
                offset = kw * dw - pl
                lo = first_valid(OW, W, sw, offset)
                hi = end_valid(OW, W, sw, offset)
                for oh in range(OH):
                    ih = oh * sh - pt + kh * dh
                    if ih < 0 or ih >= H:
                        continue
                    src = dcols + ((c - c0) * KH * KW + kh * KW + kw) * OHW + oh * OW
                    dst = dx_image + (c * H + ih) * W + offset
                    for ow in range(lo, hi):
                        dst[ow * sw] += src[ow]
