# The geometry of one 2-D convolution, built once per kernel call and passed to the helpers
# instead of a dozen scalars each, and the one answer to "which outputs does a tap reach".
#
# Helpers take the struct by value: a copy is a local whose address stays in the function (the
# compiler keeps its fields in registers), where a pointer to the caller's struct, shared by the
# OpenMP threads, would be reloaded after every store to a float array (Python builds with
# -fno-strict-aliasing) and block vectorisation of the inner loops.


ctypedef struct Geometry:
    Py_ssize_t N, C, H, W    # input (or grad_input)
    Py_ssize_t F, KH, KW     # weight (F, C // G, KH, KW)
    Py_ssize_t OH, OW        # output (or grad_output)
    Py_ssize_t sh, sw        # stride
    Py_ssize_t pt, pl        # top and left padding (bottom and right follow from OH, OW)
    Py_ssize_t dh, dw        # dilation
    Py_ssize_t G             # groups
    bint pointwise           # 1x1, stride 1, no padding: x itself is the im2col matrix


cdef inline Geometry geometry(const Py_ssize_t* x_shape, const Py_ssize_t* w_shape,
                              const Py_ssize_t* y_shape, Py_ssize_t sh, Py_ssize_t sw,
                              Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                              Py_ssize_t groups) noexcept nogil:
    """From the shapes of x (N, C, H, W), the weight (F, C // groups, KH, KW), y (N, F, OH, OW)."""
    cdef Geometry g
    g.N, g.C, g.H, g.W = x_shape[0], x_shape[1], x_shape[2], x_shape[3]
    g.F, g.KH, g.KW = w_shape[0], w_shape[2], w_shape[3]
    g.OH, g.OW = y_shape[2], y_shape[3]
    g.sh, g.sw, g.pt, g.pl, g.dh, g.dw, g.G = sh, sw, pt, pl, dh, dw, groups
    g.pointwise = (g.KH == 1 and g.KW == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0
                   and g.OH == g.H and g.OW == g.W)
    return g


# The outputs o (of O) whose input o * stride + offset lies in [0, I) are
# [first_valid(...), end_valid(...)). Returned by value: a prange body must assign its private
# variables, and Cython treats a variable written only through a pointer as shared.
cdef inline Py_ssize_t end_valid(Py_ssize_t O, Py_ssize_t I, Py_ssize_t stride,
                                 Py_ssize_t offset) noexcept nogil:
    if I - 1 - offset < 0:
        return 0
    return min(O, (I - 1 - offset) // stride + 1)


cdef inline Py_ssize_t first_valid(Py_ssize_t O, Py_ssize_t I, Py_ssize_t stride,
                                   Py_ssize_t offset) noexcept nogil:
    cdef Py_ssize_t first = 0
    if offset < 0:
        first = (-offset + stride - 1) // stride
    return min(first, end_valid(O, I, stride, offset))


ctypedef struct TapRange:
    Py_ssize_t offset  # output index o reads input index o * stride + offset
    Py_ssize_t lo, hi  # the outputs [lo, hi) read the input, the others padding


cdef inline TapRange tap_range(Py_ssize_t O, Py_ssize_t I, Py_ssize_t stride,
                               Py_ssize_t offset) noexcept nogil:
    cdef TapRange t
    t.offset = offset
    t.lo = first_valid(O, I, stride, offset)
    t.hi = end_valid(O, I, stride, offset)
    return t


# The one tap-range rule of every direct loop: the output rows kernel row kh reaches inside the
# image, and the output columns kernel column kw does. (A tap's rows form one range: its input
# row oh * sh + kh * dh - pt grows with oh.)
cdef inline TapRange tap_rows(Geometry g, Py_ssize_t kh) noexcept nogil:
    return tap_range(g.OH, g.H, g.sh, kh * g.dh - g.pt)


cdef inline TapRange tap_cols(Geometry g, Py_ssize_t kw) noexcept nogil:
    return tap_range(g.OW, g.W, g.sw, kw * g.dw - g.pl)
