"""A plain NumPy im2col convolution: the baseline "what a NumPy user would write".

cs231n-style vectorised im2col (one fancy-indexing gather with precomputed
(channel, row, column) index arrays) followed by ``np.matmul``, for the forward
pass and for both gradients, with stride, padding, dilation and groups
(torch semantics, NCHW).  No threads of its own, no workspace reuse, no
compiled code: whatever speed it has comes from NumPy's BLAS.

It is array-module generic: given CuPy arrays it runs on the GPU with the
same code (``cupy.pad``, fancy indexing and ``cupy.matmul`` behave alike).

Two deliberate choices, so that the baseline is fair rather than a straw man:

* The index arrays depend only on the shapes, so they are cached
  (``functools.lru_cache``); the gather itself runs on every call.
* col2im (the scatter-add of the input gradient) loops over the KH*KW kernel
  offsets and adds one strided slice per offset.  cs231n's ``np.add.at`` over
  the same index arrays gives identical results but is several times slower
  on NumPy 2.x; a NumPy user who profiles their code would write the loop.

Public functions: ``conv2d`` and ``conv2d_backward`` with the signatures of
``fastconv.conv2d`` / ``fastconv.conv2d_backward`` (without ``activation``/``out``).
"""

from functools import lru_cache

import numpy as np

__all__ = ["col2im", "conv2d", "conv2d_backward", "conv_output_shape", "im2col"]


def _pair(v):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"expected an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _xp(a):
    """The array module of ``a``: cupy for CuPy arrays, numpy otherwise."""
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def conv_output_shape(H, W, KH, KW, stride, padding, dilation):
    """(OH, OW) of a convolution with symmetric padding (torch's formula)."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    if OH <= 0 or OW <= 0:
        raise ValueError("kernel larger than the padded input")
    return OH, OW


@lru_cache(maxsize=64)
def _im2col_indices(C, KH, KW, OH, OW, stride, dilation):
    """Index arrays k, i, j, each (C*KH*KW, OH*OW), into the padded input.

    Row r = (c*KH + kh)*KW + kw matches ``weight.reshape(F, C*KH*KW)``;
    column l = oh*OW + ow matches ``y.reshape(N, F, OH*OW)``.
    """
    (sh, sw), (dh, dw) = stride, dilation
    i0 = np.tile(np.repeat(np.arange(KH) * dh, KW), C)  # kernel row offset per r
    j0 = np.tile(np.arange(KW) * dw, KH * C)  # kernel column offset per r
    i1 = np.repeat(np.arange(OH) * sh, OW)  # window top per l
    j1 = np.tile(np.arange(OW) * sw, OH)  # window left per l
    i = i0[:, None] + i1[None, :]
    j = j0[:, None] + j1[None, :]
    k = np.repeat(np.arange(C), KH * KW)[:, None]
    return k, i, j


def _indices(xp, C, KH, KW, OH, OW, stride, dilation):
    k, i, j = _im2col_indices(C, KH, KW, OH, OW, stride, dilation)
    if xp is not np:  # one device copy per call: cheap next to the gather
        k, i, j = xp.asarray(k), xp.asarray(i), xp.asarray(j)
    return k, i, j


def im2col(x, KH, KW, stride=1, padding=0, dilation=1):
    """x (N, C, H, W) -> cols (N, C*KH*KW, OH*OW)."""
    xp = _xp(x)
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    _, C, H, W = x.shape
    OH, OW = conv_output_shape(H, W, KH, KW, stride, padding, dilation)
    ph, pw = padding
    xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    k, i, j = _indices(xp, C, KH, KW, OH, OW, stride, dilation)
    return xpad[:, k, i, j]


def col2im(cols, x_shape, KH, KW, stride=1, padding=0, dilation=1):
    """cols (N, C*KH*KW, OH*OW) -> (N, C, H, W): the adjoint of im2col (sums overlaps)."""
    xp = _xp(cols)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    N, C, H, W = x_shape
    OH, OW = conv_output_shape(H, W, KH, KW, (sh, sw), (ph, pw), (dh, dw))
    xpad = xp.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
    cols6 = cols.reshape(N, C, KH, KW, OH, OW)
    for kh in range(KH):
        r0 = kh * dh
        for kw in range(KW):
            c0 = kw * dw
            xpad[:, :, r0 : r0 + sh * (OH - 1) + 1 : sh, c0 : c0 + sw * (OW - 1) + 1 : sw] += cols6[
                :, :, kh, kw
            ]
    if ph or pw:
        return xp.ascontiguousarray(xpad[:, :, ph : ph + H, pw : pw + W])
    return xpad


def _check(x, weight, groups):
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError("x and weight must be 4-D (NCHW and F, C/groups, KH, KW)")
    N, C, H, W = x.shape
    F, Cg, KH, KW = weight.shape
    if C % groups or F % groups or Cg != C // groups:
        raise ValueError(
            f"channels do not match groups: x {x.shape}, weight {weight.shape}, groups {groups}"
        )
    return N, C, H, W, F, Cg, KH, KW


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """y (N, F, OH, OW) = conv(x (N, C, H, W), weight (F, C/groups, KH, KW)) + bias (F,)."""
    xp = _xp(x)
    N, _, H, W, F, Cg, KH, KW = _check(x, weight, groups)
    G = groups
    OH, OW = conv_output_shape(H, W, KH, KW, stride, padding, dilation)
    cols = im2col(x, KH, KW, stride, padding, dilation)  # (N, C*KH*KW, L)
    cols = cols.reshape(N, G, Cg * KH * KW, OH * OW)
    w = weight.reshape(G, F // G, Cg * KH * KW)
    y = xp.matmul(w, cols)  # (N, G, F/G, L)
    y = y.reshape(N, F, OH, OW)
    if bias is not None:
        y += bias.reshape(1, F, 1, 1)
    return y


def conv2d_backward(
    grad_out,
    x,
    weight,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    needs=("input", "weight", "bias"),
):
    """Gradients (gx, gw, gb) of conv2d for grad_out (N, F, OH, OW); an unneeded one is None.

    Recomputes im2col of x (as fastconv.conv2d_backward does: it is handed x, not the columns).
    """
    xp = _xp(x)
    N, _, _, _, F, Cg, KH, KW = _check(x, weight, groups)
    G = groups
    OH, OW = grad_out.shape[2:]
    K, L = Cg * KH * KW, OH * OW
    dy = grad_out.reshape(N, G, F // G, L)
    gx = gw = gb = None
    if "bias" in needs:
        gb = grad_out.sum(axis=(0, 2, 3))
    if "weight" in needs:
        cols = im2col(x, KH, KW, stride, padding, dilation).reshape(N, G, K, L)
        gw = xp.matmul(dy, cols.transpose(0, 1, 3, 2)).sum(axis=0)  # (G, F/G, K)
        gw = gw.reshape(F, Cg, KH, KW)
        del cols
    if "input" in needs:
        w = weight.reshape(G, F // G, K)
        dcols = xp.matmul(w.transpose(0, 2, 1), dy)  # (N, G, K, L)
        gx = col2im(dcols.reshape(N, G * K, L), x.shape, KH, KW, stride, padding, dilation)
    return gx, gw, gb


def _naive_conv2d(x, weight, bias, stride, padding, dilation, groups):
    """The definition, loop over output pixels: the self-test's independent reference."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    N, _, H, W = x.shape
    F, Cg, KH, KW = weight.shape
    OH, OW = conv_output_shape(H, W, KH, KW, stride, padding, dilation)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((N, F, OH, OW), dtype=x.dtype)
    Fg = F // groups
    for f in range(F):
        g = f // Fg
        for oh in range(OH):
            for ow in range(OW):
                patch = xpad[
                    :,
                    g * Cg : (g + 1) * Cg,
                    oh * sh : oh * sh + dh * (KH - 1) + 1 : dh,
                    ow * sw : ow * sw + dw * (KW - 1) + 1 : dw,
                ]
                y[:, f, oh, ow] = (patch * weight[f]).sum(axis=(1, 2, 3))
    if bias is not None:
        y += bias.reshape(1, F, 1, 1)
    return y


def _selftest():
    """Forward against the naive loop (and torch when installed); gradients against torch and
    through the adjoint identities <conv(x, w), gy> = <x, gx> = <w, gw>, in float64."""
    try:
        import torch
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    configs = 0
    for N, C, H, W in [(2, 4, 9, 7), (1, 6, 8, 11)]:
        for KH, KW in [(1, 1), (3, 3), (2, 3), (5, 2)]:
            for stride in (1, 2, (2, 1)):
                for padding in (0, 1, (2, 0)):
                    for dilation in (1, 2, (1, 2)):
                        for groups in sorted({1, 2, C}):
                            F = 2 * groups
                            try:
                                OH, OW = conv_output_shape(H, W, KH, KW, stride, padding, dilation)
                            except ValueError:
                                continue
                            x = rng.standard_normal((N, C, H, W))
                            w = rng.standard_normal((F, C // groups, KH, KW))
                            b = rng.standard_normal(F)
                            gy = rng.standard_normal((N, F, OH, OW))
                            args = (stride, padding, dilation, groups)
                            y = conv2d(x, w, b, *args)
                            gx, gw, gb = conv2d_backward(gy, x, w, *args)
                            np.testing.assert_allclose(
                                y, _naive_conv2d(x, w, b, *args), rtol=1e-12, atol=1e-12
                            )
                            lin = float((conv2d(x, w, None, *args) * gy).sum())
                            np.testing.assert_allclose(
                                [(x * gx).sum(), (w * gw).sum()], [lin, lin], rtol=1e-10
                            )
                            np.testing.assert_allclose(gb, gy.sum(axis=(0, 2, 3)), rtol=1e-12)
                            if torch is not None:
                                t = [torch.from_numpy(a) for a in (x, w, b, gy)]
                                ref = torch.ops.aten.convolution_backward(
                                    t[3],
                                    t[0],
                                    t[1],
                                    [F],
                                    _pair(stride),
                                    _pair(padding),
                                    _pair(dilation),
                                    False,
                                    [0, 0],
                                    groups,
                                    [True] * 3,
                                )
                                yt = torch.nn.functional.conv2d(
                                    t[0],
                                    t[1],
                                    t[2],
                                    _pair(stride),
                                    _pair(padding),
                                    _pair(dilation),
                                    groups,
                                )
                                np.testing.assert_allclose(y, yt.numpy(), rtol=1e-10, atol=1e-10)
                                for a, r in zip((gx, gw, gb), ref):
                                    np.testing.assert_allclose(a, r.numpy(), rtol=1e-10, atol=1e-10)
                            configs += 1
    print(
        f"numpy_im2col self-test: {configs} configurations ok"
        + (" (also against torch)" if torch is not None else " (torch not installed)")
    )


if __name__ == "__main__":
    _selftest()
