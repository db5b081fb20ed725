# One kernel tap (kh, kw) over a whole plane: the loops of the scalar direct kernels (depthwise,
# col2im). They visit only the output rows and columns whose input is inside the image (the
# tap's ranges, geometry.pxd), so no padding is read or written. A plane is one channel:
# x_plane (H, W), y_plane (OH, OW). Every element gets its terms in (kh, kw, oh) order, as the
# per-kernel loops these replaced did: results are bitwise those.
from _types cimport real
from geometry cimport Geometry, TapRange, tap_cols, tap_rows


cdef inline void _axpy(Py_ssize_t n, real a, const real* src, Py_ssize_t inc_src, real* dst,
                       Py_ssize_t inc_dst) noexcept nogil:
    """dst[i * inc_dst] += a * src[i * inc_src] for i < n."""
    cdef Py_ssize_t i
    if inc_src == 1 and inc_dst == 1:  # its own loop: unit strides vectorise
        for i in range(n):
            dst[i] = dst[i] + a * src[i]
    else:
        for i in range(n):
            dst[i * inc_dst] = dst[i * inc_dst] + a * src[i * inc_src]


cdef inline void tap_axpy(Geometry g, Py_ssize_t kh, Py_ssize_t kw, real a, const real* src,
                          real* dst, bint to_input) noexcept nogil:
    """y_plane[oh, ow] += a * x_plane[ih, iw] (a forward pass: src = x_plane, dst = y_plane), or
    with to_input x_plane[ih, iw] += a * y_plane[oh, ow] (a gradient with respect to the input:
    src = y_plane, dst = x_plane; col2im with a = 1, exact)."""
    cdef TapRange rows = tap_rows(g, kh), cols = tap_cols(g, kw)
    cdef Py_ssize_t oh, n = cols.hi - cols.lo
    cdef Py_ssize_t yoff, xoff
    for oh in range(rows.lo, rows.hi):
        yoff = oh * g.OW + cols.lo
        xoff = (oh * g.sh + rows.offset) * g.W + cols.offset + cols.lo * g.sw
        if to_input:
            _axpy(n, a, src + yoff, 1, dst + xoff, g.sw)
        else:
            _axpy(n, a, src + xoff, g.sw, dst + yoff, 1)


cdef inline void tap_products(Geometry g, Py_ssize_t kh, Py_ssize_t kw, const real* y_plane,
                              const real* x_plane, real* acc, Py_ssize_t oh0,
                              Py_ssize_t oh1) noexcept nogil:
    """acc[ow] += y_plane[oh, ow] * x_plane[ih, iw] over the output rows [oh0, oh1) (a gradient
    with respect to the weight: per-column partial sums, a vectorisable multiply-add where a
    dot product would be one dependent add per element)."""
    cdef TapRange rows = tap_rows(g, kh), cols = tap_cols(g, kw)
    cdef Py_ssize_t oh, ow, sw = g.sw
    cdef const real* dy
    cdef const real* x
    for oh in range(max(oh0, rows.lo), min(oh1, rows.hi)):
        dy = y_plane + oh * g.OW
        x = x_plane + (oh * g.sh + rows.offset) * g.W + cols.offset
        if sw == 1:
            for ow in range(cols.lo, cols.hi):
                acc[ow] = acc[ow] + dy[ow] * x[ow]
        else:
            for ow in range(cols.lo, cols.hi):
                acc[ow] = acc[ow] + dy[ow] * x[ow * sw]
