# How the GEMM convolution (conv.pyx) cuts its output into tiles, one im2col + GEMM each.
# A tile is output rows [q0, q1) of the flattened (n, oh) index, columns [ow0, ow1) of each:
# - whole images (small images: several per tile, at least MIN_TILES tiles when N allows),
# - a run of rows of one image, all columns,
# - or, when one row alone holds more columns than a tile should (1-D convolutions: H = 1, a
#   4088-column row of K = 576 would fill a 9.4 MB im2col buffer), a run of columns of one row.
# The cut depends on the shapes only, never on the thread count (results are bitwise the same
# for any number of threads).

cdef enum:
    # Columns per tile aim at a cols buffer of about this many elements (about L2-sized).
    TILE_ELEMENTS = 262144
    MIN_TILE_COLUMNS = 256
    MAX_TILE_COLUMNS = 8192
    MIN_TILES = 8


ctypedef struct Tiling:
    Py_ssize_t N, OH, OW
    Py_ssize_t rows    # output rows per tile (a multiple of OH when tiles are whole images)
    Py_ssize_t width   # output columns per tile: OW, or a part of one row (then rows == 1)
    Py_ssize_t chunks  # tiles per row (1, or OW / width rounded up)
    Py_ssize_t count   # tiles in all


ctypedef struct Tile:
    Py_ssize_t q0, q1    # rows of the flattened (n, oh) index
    Py_ssize_t ow0, ow1  # columns of each row


cdef inline Py_ssize_t _split(Py_ssize_t length, Py_ssize_t target) noexcept nogil:
    """The part size that cuts `length` into equal parts of at most `target` (at least 1)."""
    cdef Py_ssize_t parts = (length + max(1, target) - 1) // max(1, target)
    return (length + parts - 1) // parts


cdef inline Tiling tiling(Py_ssize_t K, Py_ssize_t N, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """Tiles for im2col matrices of K rows: about TILE_ELEMENTS elements each."""
    cdef Tiling t
    cdef Py_ssize_t target = max(MIN_TILE_COLUMNS, min(MAX_TILE_COLUMNS, TILE_ELEMENTS // K))
    t.N, t.OH, t.OW = N, OH, OW
    t.width, t.chunks = OW, 1
    if OW > target:
        t.rows = 1
        t.width = _split(OW, target)
        t.chunks = (OW + t.width - 1) // t.width
    elif OH * OW >= target:
        t.rows = _split(OH, target // OW)  # balance the tiles of an image
    else:  # whole images per tile, but at least MIN_TILES tiles (when N allows)
        t.rows = OH * max(1, min(N, target // (OH * OW), (N + MIN_TILES - 1) // MIN_TILES))
    if t.rows <= OH:
        t.count = N * ((OH + t.rows - 1) // t.rows) * t.chunks
    else:
        t.count = (N * OH + t.rows - 1) // t.rows
    return t


cdef inline Py_ssize_t tile_columns(Tiling t) noexcept nogil:
    """The most output positions a tile holds (the im2col buffer's width)."""
    return min(t.rows, t.N * t.OH) * t.width


cdef inline Py_ssize_t tile_ld(Py_ssize_t columns) noexcept nogil:
    """The row stride of an im2col buffer (and the spacing of per-thread buffers) for `columns`:
    rounded up to 16 elements, so that rows start on cache lines as the buffer does (64-byte
    vector loads split across two lines cost the SIMD GEMM a fifth of its time)."""
    return (columns + 15) // 16 * 16


cdef inline Tile tile(Tiling t, Py_ssize_t item) noexcept nogil:
    """Tile number `item` (returned by value: a prange body must assign its private
    variables, and Cython treats a variable written only through a pointer as shared)."""
    cdef Tile s
    cdef Py_ssize_t per_image, r, k
    s.ow0, s.ow1 = 0, t.OW
    if t.rows > t.OH:
        s.q0 = item * t.rows
        s.q1 = min(t.N * t.OH, s.q0 + t.rows)
        return s
    k = item % t.chunks
    item = item // t.chunks
    per_image = (t.OH + t.rows - 1) // t.rows
    r = item % per_image
    s.q0 = (item // per_image) * t.OH + r * t.rows
    s.q1 = (item // per_image) * t.OH + min(t.OH, (r + 1) * t.rows)
    s.ow0 = k * t.width
    s.ow1 = min(t.OW, s.ow0 + t.width)
    return s
