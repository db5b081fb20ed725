# A zero-padded (or cropped) copy of the input rectangle a direct kernel reads, so that its inner
# loops never test bounds.
from libc.string cimport memcpy, memset

from _types cimport real

cdef enum:
    # Rows up to this many elements: one memset of the whole window, then a memcpy per image
    # row. Three library calls per row (pad, copy, pad) cost more than the copying on LeNet-5's
    # 18-float rows; on wide rows zeroing the whole window doubles the writes (depthwise 3x3 on
    # 112x112 planes: backward 10.3 -> 13.7 ms), so those pad each row.
    NARROW_ROW = 64


cdef inline void copy_window(const real* x_image, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                             Py_ssize_t ih0, Py_ssize_t R, Py_ssize_t iw0, Py_ssize_t XW,
                             real* out) noexcept nogil:
    """out[c, r, j] = x_image[c, ih0 + r, iw0 + j], zero outside the image."""
    cdef Py_ssize_t c, r, ih, lo, hi
    cdef real* row
    cdef bint narrow = XW <= NARROW_ROW
    lo = min(XW, max(0, -iw0))
    hi = max(lo, min(XW, W - iw0))
    if narrow and (lo > 0 or hi < XW or ih0 < 0 or ih0 + R > H):
        memset(out, 0, C * R * XW * sizeof(real))
    for c in range(C):
        for r in range(R):
            row = out + (c * R + r) * XW
            ih = ih0 + r
            if ih < 0 or ih >= H:
                if not narrow:
                    memset(row, 0, XW * sizeof(real))
                continue
            if not narrow:
                memset(row, 0, lo * sizeof(real))
                memset(row + hi, 0, (XW - hi) * sizeof(real))
            memcpy(row + lo, x_image + (c * H + ih) * W + iw0 + lo, (hi - lo) * sizeof(real))
