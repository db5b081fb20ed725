# A zero-padded (or cropped) copy of the input rectangle a direct kernel reads, so that its inner
# loops never test bounds.
from libc.string cimport memcpy, memset

from _types cimport real


cdef inline void copy_window(const real* x_image, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                             Py_ssize_t ih0, Py_ssize_t R, Py_ssize_t iw0, Py_ssize_t XW,
                             real* out) noexcept nogil:
    """out[c, r, j] = x_image[c, ih0 + r, iw0 + j], zero outside the image.

    One memset of the whole window when it has any padding, then one memcpy per image row: three
    library calls per row (pad, copy, pad) cost more than the copying itself on small rows
    (LeNet-5's conv2 grad-input: 18-float rows, ~1.7M instructions of memset calls per batch)."""
    cdef Py_ssize_t c, r, ih, lo, hi, r_lo, r_hi
    lo = min(XW, max(0, -iw0))
    hi = max(lo, min(XW, W - iw0))
    r_lo = min(R, max(0, -ih0))  # window rows [r_lo, r_hi) lie in the image
    r_hi = max(r_lo, min(R, H - ih0))
    if lo > 0 or hi < XW or r_lo > 0 or r_hi < R:
        memset(out, 0, C * R * XW * sizeof(real))
    if hi == lo:
        return
    for c in range(C):
        for r in range(r_lo, r_hi):
            ih = ih0 + r
            memcpy(out + (c * R + r) * XW + lo, x_image + (c * H + ih) * W + iw0 + lo,
                   (hi - lo) * sizeof(real))
