# im2col / col2im over one tile, as inline nogil helpers shared by the conv kernels.
# Column j of a tile is the output position (q, ow) with q = n * OH + oh running over [q0, q1):
# a tile is whole output rows, possibly spanning several images.
from _types cimport real
from geometry cimport Geometry, TapRange, tap_cols, tap_rows
from taps cimport tap_axpy


cdef inline void im2col(const real* x, Geometry g, Py_ssize_t c0, Py_ssize_t c1,
                        Py_ssize_t q0, Py_ssize_t q1, real* cols) noexcept nogil:
    """cols[((c - c0) * KH + kh) * KW + kw, (q - q0) * OW + ow] = x_padded[n, c, ih, iw]."""
    cdef Py_ssize_t OW = g.OW, OH = g.OH, sw = g.sw, T = (q1 - q0) * OW
    cdef Py_ssize_t c, kh, kw, q, n, oh, ow
    cdef TapRange r, t
    cdef real* dst
    cdef const real* src
    for c in range(c0, c1):
        for kh in range(g.KH):
            r = tap_rows(g, kh)
            for kw in range(g.KW):
                t = tap_cols(g, kw)
                # (n, oh) advance together: a division per row costs more than a short row's copy.
                n = q0 // OH
                oh = q0 - n * OH
                dst = cols + ((c - c0) * g.KH * g.KW + kh * g.KW + kw) * T
                for q in range(q0, q1):
                    if oh < r.lo or oh >= r.hi:
                        for ow in range(OW):
                            dst[ow] = 0
                    else:
                        src = x + ((n * g.C + c) * g.H + oh * g.sh + r.offset) * g.W + t.offset
                        for ow in range(t.lo):
                            dst[ow] = 0
                        # Plain loops, not memcpy/memset: rows are often a few elements long
                        # (LeNet: OW = 10), where a library call per row costs more than the copy.
                        if sw == 1:
                            for ow in range(t.lo, t.hi):
                                dst[ow] = src[ow]
                        else:
                            for ow in range(t.lo, t.hi):
                                dst[ow] = src[ow * sw]
                        for ow in range(t.hi, OW):
                            dst[ow] = 0
                    dst = dst + OW
                    oh = oh + 1
                    if oh == OH:
                        oh = 0
                        n = n + 1


cdef inline void col2im_add(const real* dcols, Geometry g, Py_ssize_t c0, Py_ssize_t c1,
                            real* dx_image) noexcept nogil:
    """dx_image[c, ih, iw] += dcols[...] for channels [c0, c1) of one image (dcols: whole image)."""
    cdef Py_ssize_t c, k, KK = g.KH * g.KW, OHW = g.OH * g.OW
    for c in range(c0, c1):
        for k in range(KK):
            tap_axpy(g, k // g.KW, k % g.KW, <real>1, dcols + ((c - c0) * KK + k) * OHW,
                     dx_image + c * g.H * g.W, True)
