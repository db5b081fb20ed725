# im2col / col2im over one tile, as inline nogil helpers shared by the conv kernels.
# Column j of a tile is the output position (q, ow) with q = n * OH + oh running over [q0, q1):
# a tile is whole output rows, possibly spanning several images.
from _types cimport real
from geometry cimport Geometry, TapRange, tap_cols, tap_rows
from tiles cimport Tile

cdef extern from "im2col_rows.h" nogil:
    void fc_im2col_rows_float(int level, float* dst, const float* src, Py_ssize_t lo,
                              Py_ssize_t hi, Py_ssize_t n, Py_ssize_t stride, Py_ssize_t rows,
                              Py_ssize_t sstep, Py_ssize_t dstep)
    void fc_im2col_rows_double(int level, double* dst, const double* src, Py_ssize_t lo,
                               Py_ssize_t hi, Py_ssize_t n, Py_ssize_t stride, Py_ssize_t rows,
                               Py_ssize_t sstep, Py_ssize_t dstep)
    void fc_col2im_plane_float(int level, const float* dcols, Py_ssize_t OH, Py_ssize_t OW,
                               float* dx, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH,
                               Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                               Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, float* buf)
    void fc_col2im_plane_double(int level, const double* dcols, Py_ssize_t OH, Py_ssize_t OW,
                                double* dx, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH,
                                Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                                Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, double* buf)


cdef inline void _rows(real* dst, const real* src, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t n,
                       Py_ssize_t stride, Py_ssize_t rows, Py_ssize_t sstep,
                       int lvl) noexcept nogil:
    """For r < rows: dst[r n:][:lo] = 0, dst[r n:][lo:hi] = src[r sstep:][lo * stride:hi *
    stride:stride], dst[r n:][hi:n] = 0 (by the copy of SIMD level lvl)."""
    if real is float:
        fc_im2col_rows_float(lvl, dst, src, lo, hi, n, stride, rows, sstep, n)
    else:
        fc_im2col_rows_double(lvl, dst, src, lo, hi, n, stride, rows, sstep, n)


cdef inline void im2col(const real* x, Geometry g, Py_ssize_t c0, Py_ssize_t c1, Tile s,
                        real* cols, Py_ssize_t ld, int lvl) noexcept nogil:
    """cols[((c - c0) * KH + kh) * KW + kw, (q - q0) * TW + ow - ow0] = x_padded[n, c, ih, iw]
    over the tile's rows q (of the flattened (n, oh)) and columns ow in [ow0, ow1), TW wide;
    rows ld >= (q1 - q0) * TW apart; copied by the row kernels of SIMD level lvl (the same
    values at any level)."""
    cdef Py_ssize_t OH = g.OH, sw = g.sw, q0 = s.q0, TW = s.ow1 - s.ow0, T = ld
    cdef Py_ssize_t c, kh, kw, q, n, oh, lo, hi, run
    cdef TapRange r, t
    cdef real* dst
    for c in range(c0, c1):
        for kh in range(g.KH):
            r = tap_rows(g, kh)
            for kw in range(g.KW):
                t = tap_cols(g, kw)
                lo = min(TW, max(0, t.lo - s.ow0))  # the tap's columns within the tile's
                hi = max(lo, min(TW, t.hi - s.ow0))
                # (n, oh) advance together: a division per row costs more than a short row's copy.
                n = q0 // OH
                oh = q0 - n * OH
                dst = cols + ((c - c0) * g.KH * g.KW + kh * g.KW + kw) * T
                q = q0
                while q < s.q1:
                    if oh < r.lo or oh >= r.hi:
                        run = 1
                        _rows(dst, x, 0, 0, TW, sw, 1, 0, lvl)
                    else:
                        # the rows of this image that read the input (plain loops, not
                        # memcpy/memset: rows are often a few elements long, LeNet: OW = 10,
                        # where a library call per row costs more than the copy)
                        run = min(r.hi - oh, s.q1 - q)
                        _rows(dst, x + ((n * g.C + c) * g.H + oh * g.sh + r.offset) * g.W
                              + t.offset + s.ow0 * sw, lo, hi, TW, sw, run, g.sh * g.W, lvl)
                    dst = dst + run * TW
                    q = q + run
                    oh = oh + run
                    if oh == OH:
                        oh = 0
                        n = n + 1


cdef inline Py_ssize_t col2im_buffer(Geometry g) noexcept nogil:
    """Elements of col2im's buffer: the sw column phases of every row of a plane (none for
    sw = 1, which adds into the plane itself)."""
    return 0 if g.sw == 1 else g.H * ((g.W + g.sw - 1) // g.sw * g.sw)


cdef inline void col2im(const real* dcols, Geometry g, Py_ssize_t c0, Py_ssize_t c1,
                        real* dx_image, real* buf, int level) noexcept nogil:
    """dx_image[c] = col2im of dcols for channels [c0, c1) of one image (dcols: their rows, every
    position), every element written, each tap adding contiguous runs (im2col_rows.h).
    buf: col2im_buffer(g) elements."""
    cdef Py_ssize_t c, KK = g.KH * g.KW, OHW = g.OH * g.OW, HW = g.H * g.W
    for c in range(c0, c1):
        if real is float:
            fc_col2im_plane_float(level, dcols + (c - c0) * KK * OHW, g.OH, g.OW,
                                  dx_image + c * HW, g.H, g.W, g.KH, g.KW, g.sh, g.sw, g.pt,
                                  g.pl, g.dh, g.dw, buf)
        else:
            fc_col2im_plane_double(level, dcols + (c - c0) * KK * OHW, g.OH, g.OW,
                                   dx_image + c * HW, g.H, g.W, g.KH, g.KW, g.sh, g.sw, g.pt,
                                   g.pl, g.dh, g.dw, buf)
