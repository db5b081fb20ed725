"""Strides for the FFT convolution (fastconv._backend.fft) by polyphase decomposition.

With the taps split as a = s*q + r, y[i] = sum_r sum_q xpad[s*(i + q) + r] * wd[s*q + r]: a
stride-1 'valid' convolution over s*s times the channels (the phases r of the padded input and of
the dilated kernel, space-to-depth), so the transforms stay the size of the input and the output.
"""

from collections import namedtuple

import numpy as np

from . import fft  # the stride-1 passes (a cycle resolved at call time)


def _space_to_depth(a, sh, sw):
    """(P, C, sh*A, sw*B) -> (P, C*sh*sw, A, B), a copy; channel (c*sh + r1)*sw + r2 holds
    a[:, c, r1::sh, r2::sw], so each group's channels stay together."""
    P, C, HH, WW = a.shape
    A, B = HH // sh, WW // sw
    return a.reshape(P, C, A, sh, B, sw).transpose(0, 1, 3, 5, 2, 4).reshape(P, C * sh * sw, A, B)


def _depth_to_space(a, sh, sw):
    """The inverse of _space_to_depth: (P, C*sh*sw, A, B) -> (P, C, sh*A, sw*B)."""
    P, CS, A, B = a.shape
    C = CS // (sh * sw)
    return a.reshape(P, C, sh, sw, A, B).transpose(0, 1, 4, 2, 5, 3).reshape(P, C, A * sh, B * sw)


_Phases = namedtuple("_Phases", "taps rows pad used")
_Phases.__doc__ = """Polyphase geometry of one axis: `taps` = ceil(KD / s) per phase; the padded
input is cut to `rows` = s * (out + taps - 1) cells, of which the input fills `used` from `pad`."""


def _phases(size, K, stride, pad, dilation, out):
    taps = -(-((K - 1) * dilation + 1) // stride)
    rows = stride * (out + taps - 1)
    return _Phases(taps, rows, pad, max(0, min(size, rows - pad)))


def _strided(x_shape, w_shape, out_hw, stride, padding, dilation):
    H, W = x_shape[2:]
    KH, KW = w_shape[2:]
    return (
        _phases(H, KH, stride[0], padding[0], dilation[0], out_hw[0]),
        _phases(W, KW, stride[1], padding[1], dilation[1], out_hw[1]),
    )


def _phase_input(x, ph, pw, stride):
    """x (N, C, H, W) padded (and cut) to (rows_h, rows_w), then space-to-depth."""
    N, C = x.shape[:2]
    xp = np.zeros((N, C, ph.rows, pw.rows), dtype=x.dtype)
    xp[:, :, ph.pad : ph.pad + ph.used, pw.pad : pw.pad + pw.used] = x[:, :, : ph.used, : pw.used]
    return _space_to_depth(xp, *stride)


def _phase_weight(weight, ph, pw, stride, dilation):
    """weight (F, Cg, KH, KW) dilated, padded to (s*taps) and space-to-depth:
    (F, Cg*sh*sw, taps_h, taps_w)."""
    wd = fft._dilated(weight, dilation)
    F, Cg, KHD, KWD = wd.shape
    wp = np.zeros((F, Cg, stride[0] * ph.taps, stride[1] * pw.taps), dtype=weight.dtype)
    wp[:, :, :KHD, :KWD] = wd
    return _space_to_depth(wp, *stride)


_ONE = (1, 1)
_NO_PAD = (0, 0)


def _forward_strided(x, weight, bias, y, stride, padding, dilation, groups, relu):
    ph, pw = _strided(x.shape, weight.shape, y.shape[2:], stride, padding, dilation)
    fft.conv2d_forward(
        _phase_input(x, ph, pw, stride),
        _phase_weight(weight, ph, pw, stride, dilation),
        bias,
        y,
        _ONE,
        _NO_PAD,
        _ONE,
        groups,
        relu,
    )


def _grad_input_strided(grad_y, weight, grad_x, stride, padding, dilation, groups):
    ph, pw = _strided(grad_x.shape, weight.shape, grad_y.shape[2:], stride, padding, dilation)
    N, C = grad_x.shape[:2]
    w2 = _phase_weight(weight, ph, pw, stride, dilation)
    g2 = np.empty(
        (N, C * stride[0] * stride[1], ph.rows // stride[0], pw.rows // stride[1]),
        dtype=grad_x.dtype,
    )
    fft.conv2d_grad_input(grad_y, w2, g2, _ONE, _NO_PAD, _ONE, groups)
    gp = _depth_to_space(g2, *stride)  # the gradient of the padded, cut input
    if ph.used < grad_x.shape[2] or pw.used < grad_x.shape[3]:
        grad_x[...] = 0  # input cells no output reads
    grad_x[:, :, : ph.used, : pw.used] = gp[
        :, :, ph.pad : ph.pad + ph.used, pw.pad : pw.pad + pw.used
    ]


def _grad_weight_strided(grad_y, x, grad_weight, stride, padding, dilation, groups):
    ph, pw = _strided(x.shape, grad_weight.shape, grad_y.shape[2:], stride, padding, dilation)
    F, Cg, KH, KW = grad_weight.shape
    sh, sw = stride
    dh, dw = dilation
    g2 = np.empty((F, Cg * sh * sw, ph.taps, pw.taps), dtype=grad_weight.dtype)
    fft.conv2d_grad_weight(grad_y, _phase_input(x, ph, pw, stride), g2, _ONE, _NO_PAD, _ONE, groups)
    gwp = _depth_to_space(g2, sh, sw)  # (F, Cg, sh*taps_h, sw*taps_w): the dilated kernel's taps
    grad_weight[...] = gwp[:, :, : (KH - 1) * dh + 1 : dh, : (KW - 1) * dw + 1 : dw]
