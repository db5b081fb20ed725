"""Pooling and its gradients over Dask arrays."""

import numpy as np

from ..._validation import pool_geometry
from ._common import _as_dask, _bounds, _import_dask, _in_task, _meta, _out_ranges, _window


def _pool_block(xb, fn, kernel, stride, padding, kwargs):
    return fn(xb, kernel, stride, padding, **kwargs)


def pool2d(
    fn, x, kernel_size, stride, padding, ceil_mode=False, *, dtype=None, with_origin=False, **kwargs
):
    """Lazy `fn` (max/avg pooling) over blocks of x, cut along N and C, and along H and W when
    padding is 0 and not ceil_mode (otherwise each plane stays in one chunk). `dtype`: the
    result's (default: pooling's dtype rule); `with_origin`: each block is also told its top-left
    cell in the plane (`origin=`)."""
    da = _import_dask()
    from ..._validation import arrays as _arrays

    geom = pool_geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    if geom.padding != (0, 0) or ceil_mode:  # windows past the border: whole planes
        x = x.rechunk({2: -1, 3: -1})
    kwargs = dict(kwargs, ceil_mode=ceil_mode)
    dtype = _arrays.compute_dtype(x=x) if dtype is None else dtype
    (kh, kw), (sh, sw) = geom.kernel, geom.stride
    rows = _out_ranges(x.chunks[2], geom.output_shape[2], sh, geom.padding[0])
    cols = _out_ranges(x.chunks[3], geom.output_shape[3], sw, geom.padding[1])
    run = _in_task(_pool_block)
    meta = _meta(x, dtype, 4)
    n_blocks = []
    for n0, n1 in zip(_bounds(x.chunks[0]), _bounds(x.chunks[0])[1:]):
        c_blocks = []
        for c0, c1 in zip(_bounds(x.chunks[1]), _bounds(x.chunks[1])[1:]):
            grid = []
            for r in rows:
                row = []
                for q in cols:
                    _, _, a0, a1 = _window(*r, sh, geom.padding[0], kh, 1, x.shape[2])
                    _, _, b0, b1 = _window(*q, sw, geom.padding[1], kw, 1, x.shape[3])
                    xb = x[n0:n1, c0:c1, a0:a1, b0:b1]
                    shape = (n1 - n0, c1 - c0, r[1] - r[0], q[1] - q[0])
                    where = dict(kwargs, origin=(a0, b0)) if with_origin else kwargs
                    row.append(
                        xb.rechunk(xb.shape).map_blocks(
                            run,
                            fn,
                            geom.kernel,
                            geom.stride,
                            geom.padding,
                            where,
                            chunks=shape,
                            dtype=dtype,
                            meta=meta,
                        )
                    )
                grid.append(row)
            c_blocks.append(da.block(grid))
        n_blocks.append(da.concatenate(c_blocks, axis=1))
    return da.concatenate(n_blocks, axis=0)


def planes(fn, x, out_plane, dtype, **kwargs):
    """`fn(x_block, **kwargs)` over whole (N-chunk, C-chunk) planes of x, each giving
    (n, c) + out_plane: ops whose windows span the plane (adaptive pooling)."""
    x = _as_dask(x).rechunk({2: -1, 3: -1})
    return x.map_blocks(
        _in_task(fn),
        chunks=(x.chunks[0], x.chunks[1], (out_plane[0],), (out_plane[1],)),
        dtype=dtype,
        meta=_meta(x, dtype, 4),
        **kwargs,
    )


def _plane_call(first, *others, fn, plane, kwargs):
    return fn(first, *others, input_shape=tuple(first.shape[:2]) + tuple(plane), **kwargs)


def per_plane(fn, first, *others, plane, dtype, **kwargs):
    """`fn(first_block, *other_blocks, input_shape=(n, c) + plane, **kwargs)` over whole
    (N-chunk, C-chunk) planes: the pooling gradients, whose indices or windows span the plane."""
    first = _as_dask(first).rechunk({2: -1, 3: -1})
    others = [_as_dask(o).rechunk(first.chunks) for o in others]
    chunks = (first.chunks[0], first.chunks[1], (plane[0],), (plane[1],))
    return first.map_blocks(
        _in_task(_plane_call),
        *others,
        fn=fn,
        plane=plane,
        kwargs=kwargs,
        chunks=chunks,
        dtype=dtype,
        meta=_meta(first, dtype, 4),
    )


def _global_indices(x, kernel_size, stride, padding, *, ceil_mode, plane, origin):
    """max_pool2d's indices for a block of a larger plane (H, W) whose top-left cell is at
    `origin`: ih * W + iw in the whole plane."""
    from ...pool import max_pool2d

    _, idx = max_pool2d(x, kernel_size, stride, padding, ceil_mode=ceil_mode, return_indices=True)
    W_block = x.shape[3]
    return (idx // W_block + origin[0]) * plane[1] + idx % W_block + origin[1]


def max_pool2d_indices(x, kernel_size, stride, padding, ceil_mode):
    """Lazy indices of max_pool2d(x, ..., return_indices=True), global to each plane."""
    return pool2d(
        _global_indices,
        x,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        dtype=np.int64,
        with_origin=True,
        plane=x.shape[2:],
    )
