"""Pooling and its gradients over Dask arrays."""

import numpy as np

from ._common import (
    _as_dask,
    _bounds,
    _contiguous,
    _eager,
    _import_dask,
    _in_task,
    _meta,
    _out_ranges,
    _window,
)


def _pool_block(xb, op, geom, kwargs):
    """op (a backend's max_pool2d / avg_pool2d) over one block, whose outputs are those of its
    chunk in `geom` (N, C, OH, OW of the block)."""
    (xb,) = _contiguous(xb)
    return getattr(_eager(xb), op)(xb, geom, **kwargs)


def _indices_block(xb, geom, plane, origin):
    """max_pool2d's indices for a block of a larger plane (H, W) whose top-left cell is at
    `origin`: ih * W + iw in the whole plane."""
    (xb,) = _contiguous(xb)
    _, idx = _eager(xb).max_pool2d(xb, geom, True, None)
    W_block = xb.shape[3]
    return (idx // W_block + origin[0]) * plane[1] + idx % W_block + origin[1]


def pool2d(op, x, geom, dtype, **kwargs):
    """Lazy `op` ("max_pool2d", "avg_pool2d", or "indices": max_pool2d's plane indices) over
    blocks of x, cut along N and C, and along H and W when unpadded (otherwise each plane stays
    in one chunk: windows past the border, or a ceil-mode window, see the whole plane)."""
    da = _import_dask()
    x = _as_dask(x)
    N, C, OH, OW = geom.output_shape
    (kh, kw), (sh, sw), (ph, pw) = geom.kernel, geom.stride, geom.padding
    dh, dw = geom.dilation
    # the dilated windows' extent: (k - 1) * d + 1 input cells
    whole_planes = (ph, pw) != (0, 0) or (OH - 1) * sh + (kh - 1) * dh + 1 > x.shape[2]
    whole_planes = whole_planes or (OW - 1) * sw + (kw - 1) * dw + 1 > x.shape[3]
    if whole_planes:
        x = x.rechunk({2: -1, 3: -1})
    rows = _out_ranges(x.chunks[2], OH, sh, ph)
    cols = _out_ranges(x.chunks[3], OW, sw, pw)
    run = _in_task(_indices_block if op == "indices" else _pool_block)
    meta = _meta(x, dtype, 4)
    n_blocks = []
    for n0, n1 in zip(_bounds(x.chunks[0]), _bounds(x.chunks[0])[1:]):
        c_blocks = []
        for c0, c1 in zip(_bounds(x.chunks[1]), _bounds(x.chunks[1])[1:]):
            grid = []
            for r in rows:
                row = []
                for q in cols:
                    _, _, a0, a1 = _window(*r, sh, ph, kh, dh, x.shape[2])
                    _, _, b0, b1 = _window(*q, sw, pw, kw, dw, x.shape[3])
                    xb = x[n0:n1, c0:c1, a0:a1, b0:b1]
                    shape = (n1 - n0, c1 - c0, r[1] - r[0], q[1] - q[0])
                    block_geom = geom._replace(output_shape=shape)
                    if op == "indices":
                        args = (block_geom, x.shape[2:], (a0, b0))
                    else:
                        args = (op, block_geom, kwargs)
                    row.append(
                        xb.rechunk(xb.shape).map_blocks(
                            run, *args, chunks=shape, dtype=dtype, meta=meta
                        )
                    )
                grid.append(row)
            c_blocks.append(da.block(grid))
        n_blocks.append(da.concatenate(c_blocks, axis=1))
    return da.concatenate(n_blocks, axis=0)


def planes(op, x, out_plane, dtype, *args, item=None):
    """`op(x_block, *args)` (a backend's op) over whole (N-chunk, C-chunk) planes of x, each
    giving (n, c) + out_plane: ops whose windows span the plane (adaptive pooling). `item`:
    which of the op's results to keep, when it returns several."""
    x = _as_dask(x).rechunk({2: -1, 3: -1})
    return x.map_blocks(
        _in_task(_plane_op),
        op,
        args,
        item,
        chunks=(x.chunks[0], x.chunks[1], (out_plane[0],), (out_plane[1],)),
        dtype=dtype,
        meta=_meta(x, dtype, 4),
    )


def _plane_op(block, op, args, item):
    (block,) = _contiguous(block)
    result = getattr(_eager(block), op)(block, *args)
    return result if item is None else result[item]


def _plane_grad(first, *others, op, plane, args):
    blocks = _contiguous(first, *others)
    input_shape = tuple(first.shape[:2]) + tuple(plane)
    return getattr(_eager(first), op)(*blocks, input_shape, *args)


def per_plane(op, first, *others, plane, dtype, args=()):
    """`op(first_block, *other_blocks, input_shape, *args)` (a backend's gradient op) over whole
    (N-chunk, C-chunk) planes: the pooling gradients, whose indices or windows span the plane."""
    first = _as_dask(first).rechunk({2: -1, 3: -1})
    others = [_as_dask(o).rechunk(first.chunks) for o in others]
    chunks = (first.chunks[0], first.chunks[1], (plane[0],), (plane[1],))
    return first.map_blocks(
        _in_task(_plane_grad),
        *others,
        op=op,
        plane=plane,
        args=args,
        chunks=chunks,
        dtype=dtype,
        meta=_meta(first, dtype, 4),
    )


def max_pool2d(x, geom, return_indices):
    y = pool2d("max_pool2d", x, geom, x.dtype, return_indices=False, out=None)
    if not return_indices:
        return y
    return y, pool2d("indices", x, geom, np.dtype(np.int64))


def adaptive_max_pool2d(x, windows_h, windows_w, return_indices):
    """Over whole planes: the indices (ih * W + iw) are the plane's own."""
    out_plane = (len(windows_h), len(windows_w))
    args = (windows_h, windows_w, True)
    y = planes("adaptive_max_pool2d", x, out_plane, x.dtype, *args, item=0)
    if not return_indices:
        return y
    return y, planes("adaptive_max_pool2d", x, out_plane, np.dtype(np.int64), *args, item=1)
