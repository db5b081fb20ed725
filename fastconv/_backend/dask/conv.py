"""conv2d and its gradients over Dask arrays (see the package docstring for the cuts)."""

import numpy as np

from ... import _compat
from ..._validation import conv_geometry
from ._common import (
    _as_dask,
    _bounds,
    _concrete,
    _contiguous,
    _eager,
    _import_dask,
    _in_task,
    _meta,
    _out_ranges,
    _tree_sum,
    _window,
)


def _channel_ranges(chunks, groups, Cg):
    """Channel ranges of x's chunks, aligned to whole groups when groups > 1."""
    if groups == 1:
        return [tuple(p) for p in zip(_bounds(chunks), _bounds(chunks)[1:])]
    cuts = sorted({min(groups, round(b / Cg)) for b in _bounds(chunks)} | {0, groups})
    return [(a * Cg, b * Cg) for a, b in zip(cuts, cuts[1:]) if b > a]


class _Plan:
    """A convolution's geometry and how x's chunks cut it into block problems."""

    def __init__(self, x_shape, x_chunks, w_shape, geom):
        self.geom = geom
        self.N, self.C, self.H, self.W = x_shape
        self.F, self.Cg, self.KH, self.KW = w_shape
        self.OH, self.OW = geom.output_shape[2:]
        self.groups = geom.groups
        (self.sh, self.sw), (self.dh, self.dw) = geom.stride, geom.dilation
        self.pt, self.pb, self.pl, self.pr = geom.padding
        self.n_ranges = [tuple(p) for p in zip(_bounds(x_chunks[0]), _bounds(x_chunks[0])[1:])]
        self.c_ranges = _channel_ranges(x_chunks[1], self.groups, self.Cg)
        self.rows = _out_ranges(x_chunks[2], self.OH, self.sh, self.pt)
        self.cols = _out_ranges(x_chunks[3], self.OW, self.sw, self.pl)

    def filters(self, c0, c1):
        """The filters and groups of channel range [c0, c1), and its slice of weight axis 1."""
        if self.groups == 1:
            return (0, self.F), 1, (c0, c1)
        Fg = self.F // self.groups
        g0, g1 = c0 // self.Cg, c1 // self.Cg
        return (g0 * Fg, g1 * Fg), g1 - g0, (0, self.Cg)

    def block(self, rows, cols):
        """Input slice, per-block padding and spanned (rows, cols) of the output block rows x
        cols. A block whose window misses the image on either axis reads only padding: its input
        is then zeros of the whole span (see _x_block), which take no padding of their own."""
        r0, r1, a0, a1 = _window(*rows, self.sh, self.pt, self.KH, self.dh, self.H)
        q0, q1, b0, b1 = _window(*cols, self.sw, self.pl, self.KW, self.dw, self.W)
        span = (r1 - r0, q1 - q0)
        if a1 <= a0 or b1 <= b0:
            return (a0, a1, b0, b1), ((0, 0), (0, 0)), span
        return (a0, a1, b0, b1), ((a0 - r0, r1 - a1), (b0 - q0, q1 - b1)), span

    def kwargs(self, pads, groups):
        """The geometry arguments of a block's convolution (padding ((top, bottom), (left,
        right)))."""
        return dict(
            stride=(self.sh, self.sw), padding=pads, dilation=(self.dh, self.dw), groups=groups
        )


def _block_geometry(x_shape, w_shape, kwargs):
    return conv_geometry(x_shape, w_shape, **kwargs)


def _conv_block(xb, w, b, kwargs, relu, algorithm):
    xb, w, b = _contiguous(xb, w, b)
    geom = _block_geometry(xb.shape, w.shape, kwargs)
    return _eager(xb).conv2d(xb, w, b, geom, relu, algorithm, None)


def _x_block(x, n, c, box, span, dtype):
    """The input block x[n, c, rows, cols] as one chunk, or (when the block reads only padding)
    zeros of the spanned size, which the kernels multiply like padding."""
    da = _import_dask()
    a0, a1, b0, b1 = box
    if a1 <= a0 or b1 <= b0:
        shape = (n[1] - n[0], c[1] - c[0]) + span
        return da.zeros(shape, dtype=dtype, chunks=shape, meta=_meta(x, dtype, 4)), True
    xb = x[n[0] : n[1], c[0] : c[1], a0:a1, b0:b1]
    return xb.rechunk(xb.shape), False


def conv2d(x, weight, bias, geom, relu, algorithm):
    """Lazy conv2d of a Dask x (N, C, H, W) -> Dask y (N, F, OH, OW)."""
    da = _import_dask()
    weight, bias = _concrete(weight), _concrete(bias)
    x = _as_dask(x)
    plan = _Plan(x.shape, x.chunks, weight.shape, geom)
    dtype = x.dtype
    meta = _meta(x, dtype, 4)
    run = _in_task(_conv_block)
    reduce_c = plan.groups == 1 and len(plan.c_ranges) > 1
    n_blocks = []
    for n in plan.n_ranges:
        f_blocks = {}
        for ci, c in enumerate(plan.c_ranges):
            (f0, f1), groups_b, (w0, w1) = plan.filters(*c)
            w = weight[f0:f1, w0:w1]
            b = None if bias is None or (reduce_c and ci) else bias[f0:f1]
            block_relu = relu and not reduce_c
            rows = []
            for r in plan.rows:
                row = []
                for q in plan.cols:
                    box, pads, span = plan.block(r, q)
                    xb, _ = _x_block(x, n, c, box, span, dtype)
                    shape = (n[1] - n[0], f1 - f0, r[1] - r[0], q[1] - q[0])
                    row.append(
                        xb.map_blocks(
                            run,
                            w,
                            b,
                            plan.kwargs(pads, groups_b),
                            block_relu,
                            algorithm,
                            chunks=shape,
                            dtype=dtype,
                            meta=meta,
                        )
                    )
                rows.append(row)
            f_blocks.setdefault((f0, f1), []).append(da.block(rows))
        parts = [_tree_sum(v) for _, v in sorted(f_blocks.items())]
        if reduce_c and relu:
            parts = [p.map_blocks(_in_task(_relu_of), dtype=dtype, meta=meta) for p in parts]
        n_blocks.append(da.concatenate(parts, axis=1) if len(parts) > 1 else parts[0])
    y = da.concatenate(n_blocks, axis=0) if len(n_blocks) > 1 else n_blocks[0]
    assert y.shape == plan.geom.output_shape, (y.shape, plan.geom.output_shape)
    return y


def _relu_of(y):
    return _eager(y).relu(y)


def conv2d_backward(grad_out, x, weight, geom, needs, algorithm):
    """Lazy (grad_input, grad_weight, grad_bias) of conv2d; x chunked like the forward call."""
    weight = _concrete(weight)
    x = _as_dask(x)
    grad_out = _as_dask(grad_out)
    plan = _Plan(x.shape, x.chunks, weight.shape, geom)
    dtype = grad_out.dtype
    gi = _grad_input(grad_out, weight, x, plan, dtype, algorithm) if "input" in needs else None
    gw = (
        _grad_weight(grad_out, x, weight.shape, plan, dtype, algorithm)
        if "weight" in needs
        else None
    )
    gb = grad_bias(grad_out) if "bias" in needs else None
    return gi, gw, gb


def grad_bias(grad_out):
    """Lazy grad_bias: grad_out summed over N, OH, OW (a tree sum over the blocks)."""
    return _as_dask(grad_out).sum(axis=(0, 2, 3))


def _crop_rows_cols(g, lo_r, lo_c, size):
    """g's rows/cols from (lo_r, lo_c), `size` (rows, cols) long, zero where g has none."""
    xp = _compat.array_module(g)
    out = xp.zeros(g.shape[:2] + size, dtype=g.dtype)
    r0, c0 = max(lo_r, 0), max(lo_c, 0)
    r1, c1 = min(lo_r + size[0], g.shape[2]), min(lo_c + size[1], g.shape[3])
    if r1 > r0 and c1 > c0:
        out[:, :, r0 - lo_r : r1 - lo_r, c0 - lo_c : c1 - lo_c] = g[:, :, r0:r1, c0:c1]
    return out


def _grad_input_block(g, weight, R, Q, lo_r, lo_c, size, kwargs, algorithm):
    g, weight = _contiguous(g, weight)
    shape = (g.shape[0], weight.shape[1] * kwargs["groups"], R, Q)
    geom = _block_geometry(shape, weight.shape, kwargs)
    gR = _eager(g).conv2d_grad_input(g, weight, shape, geom, algorithm)
    return _crop_rows_cols(gR, lo_r, lo_c, size)


def _grad_input(grad_out, weight, x, plan, dtype, algorithm):
    """Cut like x: each input block takes the outputs whose windows reach it, computes the
    gradient of the rows and columns those windows span (no padding), and keeps its own."""
    da = _import_dask()
    meta = _meta(x, dtype, 4)
    run = _in_task(_grad_input_block)
    rows_in = list(zip(_bounds(x.chunks[2]), _bounds(x.chunks[2])[1:]))
    cols_in = list(zip(_bounds(x.chunks[3]), _bounds(x.chunks[3])[1:]))

    def reach(a0, a1, stride, pad, K, dil, OUT):
        o0 = max(0, -(-(a0 + pad - (K - 1) * dil) // stride))
        o1 = min(OUT, (a1 - 1 + pad) // stride + 1)
        return o0, o1

    n_blocks = []
    for n in plan.n_ranges:
        c_blocks = []
        for c in plan.c_ranges:
            (f0, f1), groups_b, (w0, w1) = plan.filters(*c)
            w = weight[f0:f1, w0:w1]
            rows = []
            for a0, a1 in rows_in:
                row = []
                for b0, b1 in cols_in:
                    shape = (n[1] - n[0], c[1] - c[0], a1 - a0, b1 - b0)
                    o0, o1 = reach(a0, a1, plan.sh, plan.pt, plan.KH, plan.dh, plan.OH)
                    p0, p1 = reach(b0, b1, plan.sw, plan.pl, plan.KW, plan.dw, plan.OW)
                    if o1 <= o0 or p1 <= p0:  # no window reaches this block
                        row.append(da.zeros(shape, dtype=dtype, chunks=shape, meta=meta))
                        continue
                    g = grad_out[n[0] : n[1], f0:f1, o0:o1, p0:p1]
                    g = g.rechunk(g.shape)
                    R = (o1 - o0 - 1) * plan.sh + (plan.KH - 1) * plan.dh + 1
                    Q = (p1 - p0 - 1) * plan.sw + (plan.KW - 1) * plan.dw + 1
                    lo_r, lo_c = a0 - (o0 * plan.sh - plan.pt), b0 - (p0 * plan.sw - plan.pl)
                    row.append(
                        g.map_blocks(
                            run,
                            w,
                            R,
                            Q,
                            lo_r,
                            lo_c,
                            shape[2:],
                            plan.kwargs(0, groups_b),
                            algorithm,
                            chunks=shape,
                            dtype=dtype,
                            meta=meta,
                        )
                    )
                rows.append(row)
            c_blocks.append(da.block(rows))
        n_blocks.append(da.concatenate(c_blocks, axis=1) if len(c_blocks) > 1 else c_blocks[0])
    return da.concatenate(n_blocks, axis=0) if len(n_blocks) > 1 else n_blocks[0]


def _grad_weight_block(g, xb, w_shape, kwargs, algorithm):
    g, xb = _contiguous(g, xb)
    geom = _block_geometry(xb.shape, w_shape, kwargs)
    return _eager(g).conv2d_grad_weight(g, xb, w_shape, geom, algorithm)


def _grad_weight(grad_out, x, w_shape, plan, dtype, algorithm):
    """The sum over the forward's blocks of each block's weight gradient."""
    da = _import_dask()
    meta = _meta(x, dtype, 4)
    run = _in_task(_grad_weight_block)
    pieces = []
    for c in plan.c_ranges:
        (f0, f1), groups_b, (w0, w1) = plan.filters(*c)
        shape = (f1 - f0, w1 - w0, plan.KH, plan.KW)
        parts = []
        for n in plan.n_ranges:
            for r in plan.rows:
                for q in plan.cols:
                    box, pads, span = plan.block(r, q)
                    xb, _ = _x_block(x, n, c, box, span, dtype)
                    g = grad_out[n[0] : n[1], f0:f1, r[0] : r[1], q[0] : q[1]]
                    g = g.rechunk(g.shape)
                    parts.append(
                        da.map_blocks(
                            run,
                            g,
                            xb,
                            shape,
                            plan.kwargs(pads, groups_b),
                            algorithm,
                            chunks=shape,
                            dtype=dtype,
                            meta=meta,
                        )
                    )
        pieces.append(_tree_sum(parts))
    axis = 1 if plan.groups == 1 else 0
    return da.concatenate(pieces, axis=axis) if len(pieces) > 1 else pieces[0]


def conv2d_grad_input(grad_out, weight, input_shape, geom, algorithm):
    """Lazy grad_input with chunks along N from grad_out."""
    da = _import_dask()
    grad_out = _as_dask(grad_out)
    x_chunks = (grad_out.chunks[0], (input_shape[1],), (input_shape[2],), (input_shape[3],))
    dtype = grad_out.dtype
    x = da.zeros(input_shape, dtype=dtype, chunks=x_chunks, meta=_meta(grad_out, dtype, 4))
    return conv2d_backward(grad_out, x, weight, geom, ("input",), algorithm)[0]


def conv2d_grad_weight(grad_out, x, weight_shape, geom, algorithm):
    """Lazy grad_weight: a sum over x's blocks."""
    weight = np.empty(weight_shape, x.dtype)  # only its shape and dtype are used
    return conv2d_backward(grad_out, x, weight, geom, ("weight",), algorithm)[1]
