"""Independent float64 reference for conv2d and its gradients, plus the shared test grid.

Nothing here uses fastconv or im2col matrices. The forward pass pads explicitly with
``np.pad`` and accumulates one kernel tap at a time (a strided slice of the padded
input times one column of the weight); the backward pass scatters each tap back
(grad_input) and correlates each tap with grad_out (grad_weight). ``conv2d_loops`` is a
second, deliberately dumb implementation (one loop per output element) used only to
check ``conv2d_ref`` itself on tiny inputs.
"""

import math
from collections import namedtuple

import numpy as np

__all__ = [
    "CASES",
    "MEDIUM_CASES",
    "Case",
    "adaptive_avg_pool2d_ref",
    "adaptive_max_pool2d_ref",
    "avg_pool2d_ref",
    "case_kwargs",
    "case_tblr",
    "conv2d_backward_ref",
    "conv2d_loops",
    "conv2d_ref",
    "conv1d_ref",
    "conv_transpose2d_backward_ref",
    "conv_transpose2d_ref",
    "make_inputs",
    "max_pool2d_ref",
    "numeric_grad",
    "output_hw",
    "pad_tblr",
    "pool_out_size",
    "same_padding",
    "scatter_ref",
    "sigmoid_ref",
]


def _pair(v):
    if isinstance(v, (tuple, list)):
        a, b = v
        return int(a), int(b)
    return int(v), int(v)


def same_padding(in_size, kernel, stride, dilation):
    """TensorFlow's 'same' rule for one spatial axis: return (before, after).

    out = ceil(in / stride); total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - in, 0);
    before = total // 2, after = total - before (the extra cell goes after).
    """
    out = -(-in_size // stride)
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - in_size, 0)
    return total // 2, total - total // 2


def pad_tblr(padding, input_hw, kernel_hw, stride=1, dilation=1):
    """Turn any public padding form into (top, bottom, left, right)."""
    (H, W), (KH, KW) = input_hw, kernel_hw
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            return same_padding(H, KH, sh, dh) + same_padding(W, KW, sw, dw)
        raise ValueError(padding)
    if isinstance(padding, (tuple, list)):
        ph, pw = padding
        if isinstance(ph, (tuple, list)):
            (t, b), (l, r) = ph, pw
            return int(t), int(b), int(l), int(r)
        return int(ph), int(ph), int(pw), int(pw)
    p = int(padding)
    return p, p, p, p


def output_hw(input_hw, kernel_hw, stride, tblr, dilation):
    """Spatial output size from explicit (top, bottom, left, right) padding."""
    (H, W), (KH, KW) = input_hw, kernel_hw
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    t, b, l, r = tblr
    OH = (H + t + b - (KH - 1) * dh - 1) // sh + 1
    OW = (W + l + r - (KW - 1) * dw - 1) // sw + 1
    return OH, OW


def _prepare(x, w, stride, tblr, dilation, groups):
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    t, b, l, r = tblr
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    OH, OW = output_hw(x.shape[2:], w.shape[2:], stride, tblr, dilation)
    assert OH >= 1 and OW >= 1, "reference called with an empty output"
    assert x.shape[1] == w.shape[1] * groups and w.shape[0] % groups == 0
    return x, w, xp, OH, OW


def _taps(w_shape, stride, dilation, OH, OW):
    """Yield (kh, kw, row slice, col slice) of the padded input read by each kernel tap."""
    _, _, KH, KW = w_shape
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    for kh in range(KH):
        for kw in range(KW):
            rows = slice(kh * dh, kh * dh + (OH - 1) * sh + 1, sh)
            cols = slice(kw * dw, kw * dw + (OW - 1) * sw + 1, sw)
            yield kh, kw, rows, cols


def conv2d_ref(x, w, b=None, stride=1, pad=(0, 0, 0, 0), dilation=1, groups=1):
    """y[n, f, i, j] = b[f] + sum_{c, kh, kw} xpad[n, g*Cg + c, i*sh + kh*dh, j*sw + kw*dw] * w[f, c, kh, kw].

    ``pad`` is (top, bottom, left, right). Computed in float64; returns float64.
    """
    x, w, xp, OH, OW = _prepare(x, w, stride, pad, dilation, groups)
    N = x.shape[0]
    F, Cg = w.shape[:2]
    Fg = F // groups
    y = np.zeros((N, F, OH, OW))
    for g in range(groups):
        cin = slice(g * Cg, (g + 1) * Cg)
        fout = slice(g * Fg, (g + 1) * Fg)
        for kh, kw, rows, cols in _taps(w.shape, stride, dilation, OH, OW):
            patch = xp[:, cin, rows, cols]  # (N, Cg, OH, OW)
            y[:, fout] += np.einsum("nchw,fc->nfhw", patch, w[fout, :, kh, kw])
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None, None]
    return y


def conv2d_backward_ref(grad_out, x, w, stride=1, pad=(0, 0, 0, 0), dilation=1, groups=1):
    """Gradients of sum(conv2d_ref(x, w, b) * grad_out): (grad_input, grad_weight, grad_bias)."""
    x, w, xp, OH, OW = _prepare(x, w, stride, pad, dilation, groups)
    g = np.asarray(grad_out, dtype=np.float64)
    assert g.shape == (x.shape[0], w.shape[0], OH, OW)
    F, Cg = w.shape[:2]
    Fg = F // groups
    t, _, l, _ = pad
    H, W = x.shape[2:]
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    for grp in range(groups):
        cin = slice(grp * Cg, (grp + 1) * Cg)
        fout = slice(grp * Fg, (grp + 1) * Fg)
        for kh, kw, rows, cols in _taps(w.shape, stride, dilation, OH, OW):
            # scatter: every output position sends grad back to the input cell this tap read
            gxp[:, cin, rows, cols] += np.einsum("nfhw,fc->nchw", g[:, fout], w[fout, :, kh, kw])
            gw[fout, :, kh, kw] = np.einsum("nfhw,nchw->fc", g[:, fout], xp[:, cin, rows, cols])
    gx = gxp[:, :, t : t + H, l : l + W]
    gb = g.sum(axis=(0, 2, 3))
    return gx, gw, gb


def conv2d_loops(x, w, b=None, stride=1, pad=(0, 0, 0, 0), dilation=1, groups=1):
    """One Python loop per output element and tap, no padding array: only for tiny self-checks."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    t, _, l, _ = pad
    OH, OW = output_hw((H, W), (KH, KW), stride, pad, dilation)
    Fg = F // groups
    y = np.zeros((N, F, OH, OW))
    for n in range(N):
        for f in range(F):
            grp = f // Fg
            for i in range(OH):
                for j in range(OW):
                    acc = 0.0 if b is None else float(b[f])
                    for c in range(Cg):
                        for kh in range(KH):
                            for kw in range(KW):
                                ih = i * sh + kh * dh - t
                                iw = j * sw + kw * dw - l
                                if 0 <= ih < H and 0 <= iw < W:
                                    acc += x[n, grp * Cg + c, ih, iw] * w[f, c, kh, kw]
                    y[n, f, i, j] = acc
    return y


def numeric_grad(f, x, eps=1e-6):
    """Central-difference gradient of the scalar function f at x (float64 array, not modified)."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f(x.copy())
        flat[i] = old - eps
        fm = f(x.copy())
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad


# ---------------------------------------------------------------------------------------------
# The shared grid of conv2d configurations (forward and backward tests walk the same one).
# ---------------------------------------------------------------------------------------------

Case = namedtuple("Case", "id N C H W F KH KW stride padding dilation groups")


def _case(id, N=2, C=3, H=7, W=6, F=4, KH=3, KW=3, stride=1, padding=0, dilation=1, groups=1):
    return Case(id, N, C, H, W, F, KH, KW, stride, padding, dilation, groups)


CASES = [
    _case("basic"),
    _case("stride2", stride=2),
    _case("stride_2x1", stride=(2, 1)),
    _case("stride_1x3", stride=(1, 3), W=10),
    _case("stride_drops_rows", H=8, W=8, stride=2),  # last row/col never read
    _case("stride_gt_kernel", KH=2, KW=2, H=9, W=8, stride=3),
    _case("pad_int", padding=1),
    _case("pad_pair", padding=(1, 2)),
    _case("pad_pairs_asym", padding=((0, 2), (1, 0))),
    _case("pad_pairs_asym2", padding=((2, 1), (0, 3)), stride=2),
    _case("pad_gt_kernel", padding=3),  # some outputs see only padding
    _case("pad_valid", padding="valid"),
    _case("pad_same", padding="same"),
    _case("pad_same_even_kernel", padding="same", KH=2, KW=4),
    _case("pad_same_stride2", padding="same", stride=2, H=8, W=7),
    _case("pad_same_stride_2x3_dil2", padding="same", stride=(2, 3), dilation=2, H=9, W=10),
    _case("pad_same_stride3_big", padding="same", stride=3, KH=5, KW=4, H=7, W=5),
    _case("dilation2", dilation=2, H=8, W=9),
    _case("dilation_2x1", dilation=(2, 1), H=9),
    _case("dil_stride_pad", dilation=2, stride=2, padding=(2, 1), H=9, W=8),
    _case("groups2", C=4, F=6, groups=2),
    _case("groups3_stride_dil", C=6, F=3, groups=3, stride=2, dilation=2, padding=1, H=9, W=9),
    _case("depthwise", C=5, F=5, groups=5, padding=1),
    _case("depthwise_x2", C=4, F=8, groups=4, padding=1, stride=2),
    _case(
        "depthwise_5x5_dil", C=3, F=3, groups=3, KH=5, KW=5, dilation=2, padding="same", H=10, W=9
    ),
    _case("kernel_2x5", KH=2, KW=5, W=9),
    _case("kernel_5x1", KH=5, KW=1, H=8),
    _case("input_5x11", H=5, W=11, KH=3, KW=2, stride=(1, 2)),
    _case("N1", N=1),
    _case("C1", C=1),
    _case("F1", F=1),
    _case("N1_C1_F1", N=1, C=1, F=1, H=5, W=5),
    _case("kernel_eq_input", H=5, W=4, KH=5, KW=4),
    _case("kernel_eq_input_pad", H=5, W=4, KH=5, KW=4, padding=1),
    _case("kernel_gt_input_pad", H=3, W=3, KH=5, KW=5, padding=1),
    _case("k1x1", KH=1, KW=1),
    _case("k1x1_stride2", KH=1, KW=1, stride=2),
    _case("k1x1_pad1", KH=1, KW=1, padding=1),
    _case("k1x1_groups", KH=1, KW=1, C=6, F=4, groups=2, stride=(1, 2)),
    _case("large_C", N=2, C=300, H=4, W=4, F=8, padding=1),
    _case("large_C_groups", N=1, C=300, H=3, W=5, F=6, groups=3, KH=2, KW=2),
]


# Bigger shapes (a few 10^4 elements) that make the CPU kernels split work: output tiles of part of
# an image, tiles of several images with a short last one, grad_weight partial sums over tiles,
# grad_input channel chunks, the depthwise and pointwise kernels.
MEDIUM_CASES = [
    _case("tiles_partial_image", N=2, C=32, H=23, W=23, F=16, padding=1),
    _case("tiles_multi_image_uneven", N=5, C=32, H=15, W=15, F=8, padding=1),
    _case("tiles_few_channels", N=9, C=3, H=32, W=32, F=4, padding=1),
    _case(
        "tiles_strided_groups",
        N=3,
        C=16,
        H=40,
        W=39,
        F=16,
        stride=2,
        padding="same",
        dilation=2,
        groups=2,
    ),
    _case(
        "tiles_tall_kernel",
        N=2,
        C=8,
        H=48,
        W=30,
        F=6,
        KH=7,
        KW=2,
        stride=(1, 2),
        padding=((3, 2), (0, 1)),
    ),
    _case("depthwise_big", N=2, C=32, H=24, W=24, F=32, padding=1, groups=32),
    _case(
        "depthwise_big_x2_s2",
        N=3,
        C=16,
        H=25,
        W=26,
        F=32,
        KH=5,
        KW=5,
        stride=2,
        padding=2,
        groups=16,
    ),
    _case("pointwise_big", N=3, C=64, H=16, W=16, F=32, KH=1, KW=1),
    _case("wide_rows", N=2, C=2, H=2, W=3000, F=3, KH=1, KW=5, padding=(0, 2)),
    _case("tall_columns", N=1, C=3, H=2500, W=3, F=2, KH=4, KW=3, stride=(3, 1), padding="same"),
]


def make_inputs(case, rng):
    """Random float64 x (N,C,H,W), weight (F,C//groups,KH,KW), bias (F,) for a Case."""
    x = rng.standard_normal((case.N, case.C, case.H, case.W))
    w = rng.standard_normal((case.F, case.C // case.groups, case.KH, case.KW))
    b = rng.standard_normal(case.F)
    return x, w, b


def case_tblr(case):
    return pad_tblr(case.padding, (case.H, case.W), (case.KH, case.KW), case.stride, case.dilation)


def case_kwargs(case):
    """The conv2d keyword arguments (stride, padding, dilation, groups) of a Case."""
    return dict(
        stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups
    )


# ------------------------------------------------------------------ pooling, dense, loss
def max_pool2d_ref(x, kernel, stride, padding, ceil_mode=False, dilation=1):
    """Naive max pooling (float64): a loop over windows; padded cells are -inf (never win).
    Window (i, j) reads x[i * sh - ph + kh * dh, j * sw - pw + kw * dw] for kh < KH, kw < KW.

    Returns (y, indices) with indices = ih * W + iw of the first maximum in row-major order (a NaN
    wins, like torch)."""
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    dh, dw = _pair(dilation)
    OH = pool_out_size(H, KH, sh, ph, ceil_mode, dh)
    OW = pool_out_size(W, KW, sw, pw, ceil_mode, dw)
    y = np.empty((N, C, OH, OW))
    idx = np.empty((N, C, OH, OW), np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    best, at = -np.inf, -1
                    for kh in range(KH):
                        for kw in range(KW):
                            ih, iw = i * sh - ph + kh * dh, j * sw - pw + kw * dw
                            if not (0 <= ih < H and 0 <= iw < W):
                                continue
                            v = x[n, c, ih, iw]
                            if at < 0 or v > best or (np.isnan(v) and not np.isnan(best)):
                                best, at = v, ih * W + iw
                    y[n, c, i, j], idx[n, c, i, j] = best, at
    return y, idx


def adaptive_max_pool2d_ref(x, out_hw):
    """torch's adaptive windows (output row i: rows [floor(i H / OH), ceil((i+1) H / OH))), the
    max of each by a loop in row-major order (first max wins, a NaN wins). float64 (y, indices)."""
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    OH, OW = out_hw
    y = np.empty((N, C, OH, OW))
    idx = np.empty((N, C, OH, OW), np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                rows = range(math.floor(i * H / OH), math.ceil((i + 1) * H / OH))
                for j in range(OW):
                    cols = range(math.floor(j * W / OW), math.ceil((j + 1) * W / OW))
                    best, at = -np.inf, -1
                    for ih in rows:
                        for iw in cols:
                            v = x[n, c, ih, iw]
                            if at < 0 or v > best or (np.isnan(v) and not np.isnan(best)):
                                best, at = v, ih * W + iw
                    y[n, c, i, j], idx[n, c, i, j] = best, at
    return y, idx


def scatter_ref(grad_out, indices, input_shape):
    """max pooling's gradient: grad_out added at each (plane, index), by np.add.at (float64)."""
    N, C = input_shape[:2]
    grad = np.zeros(input_shape)
    planes = np.asarray(indices).reshape(N * C, -1)
    np.add.at(
        grad.reshape(N * C, -1),
        (np.arange(N * C)[:, None], planes),
        np.asarray(grad_out, np.float64).reshape(N * C, -1),
    )
    return grad


def linear_ref(x, w, b=None):
    """y[n, o] = b[o] + sum_i x[n, i] w[o, i], one dot product per output (float64)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    y = np.array(
        [
            [sum(x[n, i] * w[o, i] for i in range(x.shape[1])) for o in range(w.shape[0])]
            for n in range(x.shape[0])
        ],
        dtype=np.float64,
    ).reshape(x.shape[0], w.shape[0])
    return y if b is None else y + np.asarray(b, np.float64)


def softmax_cross_entropy_ref(logits, labels):
    """(mean loss, log_probs) in float64, with math.fsum over exp(z - max) per row."""
    z = np.asarray(logits, np.float64)
    log_probs = np.empty_like(z)
    for i, row in enumerate(z):
        m = row.max()
        log_probs[i] = (row - m) - math.log(math.fsum(math.exp(v - m) for v in row))
    losses = -log_probs[np.arange(z.shape[0]), np.asarray(labels)]
    return losses.mean(), log_probs


# ---------------------------------------------------------------------------------------------
# The toolkit ops: transposed convolution, 1-D convolution, pooling (floor and ceil mode),
# adaptive average pooling, sigmoid. Written from the definitions, not from fastconv's code.
# ---------------------------------------------------------------------------------------------


def _transpose_sizes(x_shape, w_shape, stride, padding, output_padding, dilation):
    _, _, H, W = x_shape
    _, _, KH, KW = w_shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = map(
        _pair, (stride, padding, output_padding, dilation)
    )
    OH = (H - 1) * sh - 2 * ph + dh * (KH - 1) + oph + 1
    OW = (W - 1) * sw - 2 * pw + dw * (KW - 1) + opw + 1
    # the uncropped output: every input pixel's kernel footprint, plus the output padding
    full = ((H - 1) * sh + dh * (KH - 1) + 1 + oph, (W - 1) * sw + dw * (KW - 1) + 1 + opw)
    return (sh, sw), (ph, pw), (dh, dw), (OH, OW), full


def conv_transpose2d_ref(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution as a scatter: input pixel (i, j) of channel c adds
    x[n, c, i, j] * w[c, f, kh, kw] to the uncropped output at (i*sh + kh*dh, j*sw + kw*dw),
    for the output channels f of c's group; the result is that array cropped by `padding` at the
    top/left, of size OH x OW. float64."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    N, C_in, H, W = x.shape
    _, Cg_out, KH, KW = w.shape
    Cg_in = C_in // groups
    (sh, sw), (ph, pw), (dh, dw), (OH, OW), full_hw = _transpose_sizes(
        x.shape, w.shape, stride, padding, output_padding, dilation
    )
    full = np.zeros((N, Cg_out * groups) + full_hw)
    for g in range(groups):
        cin = slice(g * Cg_in, (g + 1) * Cg_in)
        fout = slice(g * Cg_out, (g + 1) * Cg_out)
        for i in range(H):
            for j in range(W):
                for kh in range(KH):
                    for kw in range(KW):
                        full[:, fout, i * sh + kh * dh, j * sw + kw * dw] += (
                            x[:, cin, i, j] @ w[cin, :, kh, kw]
                        )
    y = full[:, :, ph : ph + OH, pw : pw + OW]
    assert y.shape[2:] == (OH, OW)
    if b is not None:
        y = y + np.asarray(b, dtype=np.float64)[None, :, None, None]
    return y


def conv_transpose2d_backward_ref(
    grad_out, x, w, stride=1, padding=0, output_padding=0, groups=1, dilation=1
):
    """Gradients of sum(conv_transpose2d_ref(x, w, b) * grad_out): each scatter of the forward
    read back as a gather. Returns (grad_input, grad_weight, grad_bias), float64."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    g = np.asarray(grad_out, dtype=np.float64)
    N, C_in, H, W = x.shape
    _, Cg_out, KH, KW = w.shape
    Cg_in = C_in // groups
    (sh, sw), (ph, pw), (dh, dw), (OH, OW), full_hw = _transpose_sizes(
        x.shape, w.shape, stride, padding, output_padding, dilation
    )
    assert g.shape == (N, Cg_out * groups, OH, OW)
    gfull = np.zeros((N, Cg_out * groups) + full_hw)
    gfull[:, :, ph : ph + OH, pw : pw + OW] = g
    gx = np.zeros_like(x)
    gw = np.zeros_like(w)
    for grp in range(groups):
        cin = slice(grp * Cg_in, (grp + 1) * Cg_in)
        fout = slice(grp * Cg_out, (grp + 1) * Cg_out)
        for i in range(H):
            for j in range(W):
                for kh in range(KH):
                    for kw in range(KW):
                        go = gfull[:, fout, i * sh + kh * dh, j * sw + kw * dw]  # (N, Cg_out)
                        gx[:, cin, i, j] += go @ w[cin, :, kh, kw].T
                        gw[cin, :, kh, kw] += x[:, cin, i, j].T @ go
    return gx, gw, g.sum(axis=(0, 2, 3))


def conv1d_ref(x, w, b=None, stride=1, pad=(0, 0), dilation=1, groups=1):
    """1-D convolution: y[n, f, i] = b[f] + sum_{c, k} xpad[n, g*Cg + c, i*stride + k*dilation]
    * w[f, c, k], with pad = (left, right). float64."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    N, C, L = x.shape
    F, Cg, K = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), tuple(pad)))
    OL = (L + pad[0] + pad[1] - dilation * (K - 1) - 1) // stride + 1
    Fg = F // groups
    y = np.zeros((N, F, OL))
    for grp in range(groups):
        cin = slice(grp * Cg, (grp + 1) * Cg)
        fout = slice(grp * Fg, (grp + 1) * Fg)
        for k in range(K):
            taps = xp[:, cin, k * dilation : k * dilation + (OL - 1) * stride + 1 : stride]
            y[:, fout] += np.einsum("ncl,fc->nfl", taps, w[fout, :, k])
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None]
    return y


def pool_out_size(size, kernel, stride, pad, ceil_mode, dilation=1):
    """torch's pooled length: floor or ceil of (size + 2 pad - span) / stride, plus one, span =
    dilation (kernel - 1) + 1; in ceil mode the last window must start inside the input or its
    left padding."""
    n = (size + 2 * pad - dilation * (kernel - 1) - 1) / stride
    out = (math.ceil(n) if ceil_mode else math.floor(n)) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pool_windows(size, kernel, stride, pad, ceil_mode):
    """(first, stop) of each window in input coordinates, unclipped."""
    out = pool_out_size(size, kernel, stride, pad, ceil_mode)
    return [(o * stride - pad, o * stride - pad + kernel) for o in range(out)]


def avg_pool2d_ref(x, kernel, stride, pad, count_include_pad=True, ceil_mode=False, divisor=None):
    """Window sums over the cells inside the input, divided by `divisor` (torch's
    divisor_override) when given, else by the window's cells inside the padded input
    (count_include_pad) or inside the input. float64."""
    x = np.asarray(x, dtype=np.float64)
    H, W = x.shape[2:]
    kernel, stride, pad = _pair(kernel), _pair(stride), _pair(pad)
    rows = _pool_windows(H, kernel[0], stride[0], pad[0], ceil_mode)
    cols = _pool_windows(W, kernel[1], stride[1], pad[1], ceil_mode)
    y = np.empty(x.shape[:2] + (len(rows), len(cols)))
    for i, (a, b) in enumerate(rows):
        for j, (c, d) in enumerate(cols):
            s = x[:, :, max(a, 0) : min(b, H), max(c, 0) : min(d, W)].sum(axis=(2, 3))
            if divisor is not None:
                n = divisor
            elif count_include_pad:
                n = (min(b, H + pad[0]) - a) * (min(d, W + pad[1]) - c)
            else:
                n = (min(b, H) - max(a, 0)) * (min(d, W) - max(c, 0))
            y[:, :, i, j] = s / n
    return y


def adaptive_avg_pool2d_ref(x, out_hw):
    """torch's adaptive windows: output row i averages rows [floor(i H / OH), ceil((i+1) H / OH))."""
    x = np.asarray(x, dtype=np.float64)
    H, W = x.shape[2:]
    OH, OW = out_hw
    y = np.empty(x.shape[:2] + (OH, OW))
    for i in range(OH):
        a, b = math.floor(i * H / OH), math.ceil((i + 1) * H / OH)
        for j in range(OW):
            c, d = math.floor(j * W / OW), math.ceil((j + 1) * W / OW)
            y[:, :, i, j] = x[:, :, a:b, c:d].mean(axis=(2, 3))
    return y


def sigmoid_ref(x):
    """1 / (1 + exp(-x)) in float64 (exp overflowing to inf gives the right limit 0)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))
