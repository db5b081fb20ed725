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
    "case_kwargs",
    "case_tblr",
    "conv2d_backward_ref",
    "conv2d_loops",
    "conv2d_ref",
    "make_inputs",
    "numeric_grad",
    "output_hw",
    "pad_tblr",
    "same_padding",
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
    _case("depthwise_5x5_dil", C=3, F=3, groups=3, KH=5, KW=5, dilation=2, padding="same", H=10, W=9),
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
    _case("tiles_strided_groups", N=3, C=16, H=40, W=39, F=16, stride=2, padding="same", dilation=2, groups=2),
    _case("tiles_tall_kernel", N=2, C=8, H=48, W=30, F=6, KH=7, KW=2, stride=(1, 2), padding=((3, 2), (0, 1))),
    _case("depthwise_big", N=2, C=32, H=24, W=24, F=32, padding=1, groups=32),
    _case("depthwise_big_x2_s2", N=3, C=16, H=25, W=26, F=32, KH=5, KW=5, stride=2, padding=2, groups=16),
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
    return dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups)


# ------------------------------------------------------------------ pooling, dense, loss
def max_pool2d_ref(x, kernel, stride, padding):
    """Naive max pooling (float64): a loop over windows; padded cells are -inf (never win).

    Returns (y, indices) with indices = ih * W + iw of the first maximum in row-major order (a NaN
    wins, like torch)."""
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    OH = (H + 2 * ph - KH) // sh + 1
    OW = (W + 2 * pw - KW) // sw + 1
    y = np.empty((N, C, OH, OW))
    idx = np.empty((N, C, OH, OW), np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    best, at = -np.inf, -1
                    for kh in range(KH):
                        for kw in range(KW):
                            ih, iw = i * sh - ph + kh, j * sw - pw + kw
                            if not (0 <= ih < H and 0 <= iw < W):
                                continue
                            v = x[n, c, ih, iw]
                            if at < 0 or v > best or (np.isnan(v) and not np.isnan(best)):
                                best, at = v, ih * W + iw
                    y[n, c, i, j], idx[n, c, i, j] = best, at
    return y, idx


def avg_pool2d_ref(x, kernel, stride, padding, count_include_pad=True):
    """Naive average pooling (float64): the window's sum over KH*KW (count_include_pad) or over
    the cells inside the image."""
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    OH = (H + 2 * ph - KH) // sh + 1
    OW = (W + 2 * pw - KW) // sw + 1
    y = np.empty((N, C, OH, OW))
    for i in range(OH):
        for j in range(OW):
            r0, c0 = i * sh - ph, j * sw - pw
            rows = slice(max(r0, 0), min(r0 + KH, H))
            cols = slice(max(c0, 0), min(c0 + KW, W))
            inside = (rows.stop - rows.start) * (cols.stop - cols.start)
            total = x[:, :, rows, cols].sum(axis=(2, 3))
            y[:, :, i, j] = total / (KH * KW if count_include_pad else inside)
    return y


def linear_ref(x, w, b=None):
    """y[n, o] = b[o] + sum_i x[n, i] w[o, i], one dot product per output (float64)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    y = np.array([[sum(x[n, i] * w[o, i] for i in range(x.shape[1])) for o in range(w.shape[0])]
                  for n in range(x.shape[0])], dtype=np.float64).reshape(x.shape[0], w.shape[0])
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
