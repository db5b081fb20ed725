"""Strides for the FFT convolution (fastconv._backend.fft) by polyphase decomposition.

With the taps split as a = s*q + r, y[i] = sum_r sum_q xpad[s*(i + q) + r] * wd[s*q + r]: a
stride-1 'valid' convolution over s*s times the channels (the phases r of the padded input and of
the dilated kernel, space-to-depth), so the transforms stay the size of the input and the output.
Only the min(s, KD) phases that meet a tap are formed, so neither a stride far above the kernel
nor a huge padding makes the problem larger than the outputs' windows.
"""

from collections import namedtuple

import numpy as np

from . import fft  # the stride-1 passes (a cycle resolved at call time)

_Phases = namedtuple("_Phases", "phases taps rows cells")
_Phases.__doc__ = """Polyphase geometry of one axis: `phases` = min(s, KD) phases r hold taps (with
s > KD, phases r >= KD meet only zero taps and are left out: a stride far above the kernel, as
with a huge padding, would otherwise make s*s planes); `taps` = ceil(KD / s) per phase; `rows` =
out + taps - 1 cells per phase; `cells` (phases, rows): the input cell s*a + r - pad that cell a of
phase r holds, or `size` (one zero cell past the end) where that is padding."""


def _cells(size, stride, phases, rows, pad):
    """(phases, rows): cell s*a + r - pad of [0, size) that cell a of phase r holds, or `size`."""
    cells = stride * np.arange(rows)[None, :] + np.arange(phases)[:, None] - pad
    cells[(cells < 0) | (cells >= size)] = size
    return cells


def _phases(size, K, stride, pad, dilation, out):
    KD = (K - 1) * dilation + 1
    phases, taps = min(stride, KD), -(-KD // stride)
    rows = out + taps - 1
    return _Phases(phases, taps, rows, _cells(size, stride, phases, rows, pad))


def _strided(x_shape, w_shape, out_hw, stride, padding, dilation):
    H, W = x_shape[2:]
    KH, KW = w_shape[2:]
    return (
        _phases(H, KH, stride[0], padding[0], dilation[0], out_hw[0]),
        _phases(W, KW, stride[1], padding[1], dilation[1], out_hw[1]),
    )


def _with_zero_cell(a):
    """(P, C, h, w) -> (P, C, h + 1, w + 1): `a` and a zero last row and column, what the
    `cells` index for padding."""
    P, C, h, w = a.shape
    out = np.zeros((P, C, h + 1, w + 1), dtype=a.dtype)
    out[:, :, :h, :w] = a
    return out


def _phase_input(a, ph, pw):
    """(P, C, h, w) padded, cut and split into phases by the index (ph, pw): (P, C * phases_h *
    phases_w, rows_h, rows_w), channel (c * phases_h + r1) * phases_w + r2 holding phase (r1, r2)
    of a's channel c, so that each group's channels stay together (space-to-depth)."""
    g = _with_zero_cell(a)[:, :, ph.cells[:, :, None, None], pw.cells[None, None, :, :]]
    P, C = a.shape[:2]
    return g.transpose(0, 1, 2, 4, 3, 5).reshape(P, -1, ph.rows, pw.rows)


def _split(a, ph, pw):
    """The layout of _phase_input, as a view: (P, C * phases_h * phases_w, rows_h, rows_w) ->
    (P, C, phases_h, rows_h, phases_w, rows_w)."""
    P = a.shape[0]
    a = a.reshape(P, -1, ph.phases, pw.phases, ph.rows, pw.rows)
    return a.transpose(0, 1, 2, 4, 3, 5)


def _phase_weight(weight, ph, pw, stride, dilation):
    """weight (F, Cg, KH, KW) dilated and split into phases: (F, Cg * phases, taps_h, taps_w)."""
    wd = fft._dilated(weight, dilation)
    KHD, KWD = wd.shape[2:]
    kh = ph._replace(rows=ph.taps, cells=_cells(KHD, stride[0], ph.phases, ph.taps, 0))
    kw = pw._replace(rows=pw.taps, cells=_cells(KWD, stride[1], pw.phases, pw.taps, 0))
    return _phase_input(wd, kh, kw)


_ONE = (1, 1)
_NO_PAD = (0, 0)


def _forward_strided(x, weight, bias, y, stride, padding, dilation, groups, relu):
    ph, pw = _strided(x.shape, weight.shape, y.shape[2:], stride, padding, dilation)
    fft.conv2d_forward(
        _phase_input(x, ph, pw),
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
    N, C, H, W = grad_x.shape
    g2 = np.empty((N, C * ph.phases * pw.phases, ph.rows, pw.rows), dtype=grad_x.dtype)
    w2 = _phase_weight(weight, ph, pw, stride, dilation)
    fft.conv2d_grad_input(grad_y, w2, g2, _ONE, _NO_PAD, _ONE, groups)
    # Each input cell is at most one phase cell (r < s): scatter back; cells no phase holds
    # (never read) keep 0; the padding cells all land on the extra row and column, dropped.
    full = np.zeros((N, C, H + 1, W + 1), dtype=grad_x.dtype)
    full[:, :, ph.cells[:, :, None, None], pw.cells[None, None, :, :]] = _split(g2, ph, pw)
    grad_x[...] = full[:, :, :H, :W]


def _grad_weight_strided(grad_y, x, grad_weight, stride, padding, dilation, groups):
    ph, pw = _strided(x.shape, grad_weight.shape, grad_y.shape[2:], stride, padding, dilation)
    F, Cg, KH, KW = grad_weight.shape
    g2 = np.empty((F, Cg * ph.phases * pw.phases, ph.taps, pw.taps), dtype=grad_weight.dtype)
    fft.conv2d_grad_weight(grad_y, _phase_input(x, ph, pw), g2, _ONE, _NO_PAD, _ONE, groups)
    # tap k of the kernel is tap a = k * d of the dilated one: phase a % s, its tap a // s
    rows, cols = np.arange(KH)[:, None] * dilation[0], np.arange(KW)[None, :] * dilation[1]
    (sh, sw) = stride
    g6 = _split(g2, ph._replace(rows=ph.taps), pw._replace(rows=pw.taps))
    grad_weight[...] = g6[:, :, rows % sh, rows // sh, cols % sw, cols // sw]
