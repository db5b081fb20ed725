"""FFT convolution on the CPU for large kernels: forward, grad-input and grad-weight.

Same signatures as the backend ops of fastconv._backend.cpu.ops less `algorithm` (docs/INTERNALS.md):
arrays arrive validated and C-contiguous, outputs are preallocated and fully written, nothing is
returned. The planner chooses it for finite inputs only (see below).

How it works (one spatial axis shown; the two axes are independent). With the kernel dilated by
zero insertion to KD = (K - 1) * d + 1 taps, the stride-1 result at padded position p is
z[p] = sum_a x[p - pad + a] * wd[a]. Put x at offset 0 of a circular grid of L >= size cells and
write m = p - pad: the circular correlation c = irfft(rfft(x) * conj(rfft(wd))) gives
c[m mod L] = z[p] for every m in [-min(pad, KD-1), size) as long as

    L >= max(size + max(min(pad_before, KD - 1), min(pad_after, KD - 1), 0), KD)

(the wrapped-around terms then land on cells of the grid that hold zeros). Outputs with m outside
[-(KD - 1), size) see only padding: they are 0 (+ bias) and are never transformed.
A stride s > 1 is turned into stride 1 by polyphase decomposition: with the taps split as
a = s*q + r, y[i] = sum_r sum_q xpad[s*(i + q) + r] * wd[s*q + r], a stride-1 'valid'
convolution over s*s times the channels (the phases r of the padded input and of the kernel,
space-to-depth), so the transforms stay the size of the input and the output.
Grad-input is the circular convolution of grad_y, placed at those m, with wd:
irfft(rfft(g) * rfft(wd)); grad-weight the circular correlation of g with x:
irfft(conj(rfft(g)) * rfft(x)) at lags [0, KD), taken every d-th.

The sum over channels (forward: C, grad-input: F, grad-weight: the batch) is done per frequency
bin in the frequency domain, so there is one inverse transform per output plane. float32 stays in
complex64 (scipy.fft keeps single precision), float64 in complex128.

Non-finite values: an inf or NaN anywhere in an image (or in the weight) reaches every bin of its
spectrum, so every output of that image becomes NaN, where direct convolution spoils only the
outputs whose window holds it: the planner must choose this path for finite inputs only.
Accuracy: the error is relative to the largest output of a plane, not to each output; measured
(float32, tests/test_fft_conv.py shapes up to 41x41 kernels) max|err| / max|ref| <= 3.1e-7.

Threads and determinism: scipy.fft's `workers` (fastconv's thread count) split a batch of
transforms into whole 1-D transforms, each computed the same way whatever the split; the
per-bin channel sums are split into bin blocks fixed by the shape, each done by one thread with
BLAS on one thread. So results are bitwise identical for any thread count. The batch and the
filters are processed in chunks, also sized from the shapes only, so that the spectra stay within
a few times the size of the arrays given (or 64 MiB).
"""

from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft as sfft

from .threads import blas_single_thread, get_num_threads

__all__ = ["conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight", "fft_shape"]

# The spectra of one batch chunk and one filter chunk may take max(_MIN_WORKSPACE,
# _WORKSPACE_FACTOR * bytes of the arrays given and returned). The floor keeps small problems in
# one chunk.
_MIN_WORKSPACE = 64 * 2**20
_WORKSPACE_FACTOR = 3
# Bytes of complex data one bin block of the channel sum touches: about L2 on current x86 cores
# (smaller blocks add Python overhead per block).
_BLOCK_BYTES = 2**20
# Channel sums: one term (K = 1) is a broadcast multiply; more, a batched matmul per bin block
# (numpy's matmul over stacked matrices). Measured, CPU time, one thread, complex64, AVX2, 36720
# bins (2112 for the 4th), broadcast multiply-adds over k vs matmul: (8x3)@(3x16) per bin 51 / 39
# ms; (8x16)@(16x3) 30 / 29; (16x8)@(8x3) 39 / 38; (8x32)@(32x32) 57 / 24; (1x1)@(1x1) over
# 568050 bins 1.7 / 6.4 ms.

_Axis = namedtuple("_Axis", "L lo hi runs")
_Axis.__doc__ = """Geometry of one spatial axis.

L: circular FFT length; outputs lo..hi-1 see the input; runs: (output slice, grid slice) pairs
mapping those outputs to their positions m mod L on the circular grid (one pair, or two where the
outputs of the leading padding wrap around to the end of the grid).
"""


def _axis(size, K, stride, pad, dilation, out, real):
    """The _Axis of an input axis of `size` cells, K taps, and `out` outputs."""
    KD = (K - 1) * dilation + 1
    pad_after = (out - 1) * stride + KD - pad - size  # implied; negative: rows never read
    need = max(size + max(min(pad, KD - 1), min(pad_after, KD - 1), 0), KD)
    L = sfft.next_fast_len(need, real=real)
    # Output i reads m = i*stride - pad .. m + KD - 1; it sees the input iff -(KD-1) <= m < size.
    lo = min(out, max(0, -(-(pad - KD + 1) // stride)))
    hi = max(lo, min(out, (size - 1 + pad) // stride + 1))
    runs = []
    i = lo
    while i < hi:  # -L < m < L: at most one wrap
        m = i * stride - pad
        end = min(hi, -(-pad // stride)) if m < 0 else hi
        start = m % L
        runs.append((slice(i, end), slice(start, start + (end - i - 1) * stride + 1, stride)))
        i = end
    return _Axis(L, lo, hi, tuple(runs))


def _geometry(H, W, KH, KW, OH, OW, stride, padding, dilation):
    return (
        _axis(H, KH, stride[0], padding[0], dilation[0], OH, real=False),
        _axis(W, KW, stride[1], padding[1], dilation[1], OW, real=True),
    )


def fft_shape(input_hw, kernel_hw, output_hw, stride, padding, dilation):
    """The real FFT size (L1, L2) the FFT path transforms for this geometry (for the planner's
    cost model): input_hw (H, W), kernel_hw (KH, KW), output_hw (OH, OW), the rest (h, w) pairs
    with padding (top, left)."""
    ah, aw = _geometry(*input_hw, *kernel_hw, *output_hw, stride, padding, dilation)
    return ah.L, aw.L


def _complex(dtype):
    return np.complex64 if np.dtype(dtype) == np.float32 else np.complex128


def _chunks(N, Fg, Cg, ah, aw, dtype, given_bytes, accumulators=1):
    """(images, filters) per chunk, from the shapes only: the weight-side spectra of a filter
    chunk (`accumulators` arrays of (filters, Cg) spectra) take at most half the workspace budget,
    the image-side spectra and planes of a batch chunk the rest; at least one of each."""
    budget = max(_MIN_WORKSPACE, _WORKSPACE_FACTOR * given_bytes)
    bins = ah.L * (aw.L // 2 + 1)
    csize = np.dtype(_complex(dtype)).itemsize
    per_filter = accumulators * Cg * bins * csize
    filters = int(min(Fg, max(1, (budget // 2) // per_filter)))
    per_image = (Cg + filters) * bins * csize + max(filters, Cg) * ah.L * aw.L * np.dtype(
        dtype
    ).itemsize
    images = int(min(N, max(1, (budget - filters * per_filter) // per_image)))
    return images, filters


def _dilated(weight, dilation):
    """weight (F, Cg, KH, KW) with (d - 1) zeros between taps: (F, Cg, KHD, KWD)."""
    dh, dw = dilation
    if dh == dw == 1:
        return weight
    F, Cg, KH, KW = weight.shape
    wd = np.zeros((F, Cg, (KH - 1) * dh + 1, (KW - 1) * dw + 1), dtype=weight.dtype)
    wd[:, :, ::dh, ::dw] = weight
    return wd


def _spectrum(a, ah, aw, threads):
    """Real planes (..., h, w), at offset 0 of the (L1, L2) grid -> spectra (..., L1, L2 // 2 + 1).

    Rows first, then columns: the h <= L1 rows are transformed without the zero rows below them
    (for a kernel, most of the grid)."""
    A = sfft.rfft(a, n=aw.L, axis=-1, workers=threads)
    return sfft.fft(A, n=ah.L, axis=-2, workers=threads, overwrite_x=True)


def _inverse(S, ah, aw, threads, rows=None):
    """Spectra (..., L1, L2 // 2 + 1) -> real planes (..., rows, L2): only the first `rows` rows
    (all when None) get their last transform."""
    B = sfft.ifft(S, axis=-2, workers=threads, overwrite_x=True)
    if rows is not None and rows < ah.L:
        B = B[..., :rows, :]
    return sfft.irfft(B, n=aw.L, axis=-1, workers=threads, overwrite_x=True)


# --------------------------------------------------------------------------- channel sums
_pool = None
_pool_size = 0


def _executor(threads):
    global _pool, _pool_size
    if _pool is None or _pool_size < threads:
        # Never shut down: other calls may still hold the old one; it ends with the process.
        _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fastconv-fft")
        _pool_size = threads
    return _pool


def _sum_block(A, B, out, b0, b1):
    """out[p, q, b0:b1] = sum_k A[p, k, b0:b1] * B[q, k, b0:b1] (views (P, K, bins), (Q, K, bins))."""
    K = A.shape[1]
    o = out[:, :, b0:b1]
    if K == 1:
        np.multiply(A[:, None, 0, b0:b1], B[None, :, 0, b0:b1], out=o)
        return
    a = np.ascontiguousarray(A[:, :, b0:b1].transpose(2, 0, 1))  # (bins, P, K)
    b = np.ascontiguousarray(B[:, :, b0:b1].transpose(2, 1, 0))  # (bins, K, Q)
    o[...] = np.matmul(a, b).transpose(1, 2, 0)


def _channel_sum(A, B, out, threads):
    """out (P, Q, bins) = sum over k of A (P, K, bins) * B (Q, K, bins), per bin.

    Bin blocks are fixed by the shapes; each is summed by one thread in a fixed order, so the
    result does not depend on `threads`."""
    P, K, bins = A.shape
    Q = B.shape[0]
    if K == 1 and P * Q == 1:
        np.multiply(A[0, 0], B[0, 0], out=out[0, 0])
        return
    per_bin = (P * Q * 2 + (P + Q) * K) * out.itemsize
    block = max(64, _BLOCK_BYTES // per_bin)
    starts = range(0, bins, block)
    with blas_single_thread:
        if threads <= 1 or len(starts) == 1:
            for b0 in starts:
                _sum_block(A, B, out, b0, min(bins, b0 + block))
            return
        jobs = [
            _executor(threads).submit(_sum_block, A, B, out, b0, min(bins, b0 + block))
            for b0 in starts
        ]
        for job in jobs:
            job.result()


def _bins(a):
    """(P, K, L1, L2h) -> (P, K, L1 * L2h) without a copy (the bin axes are contiguous)."""
    P, K, L1, L2h = a.shape
    return a.reshape(P, K, L1 * L2h)


# --------------------------------------------------------------------------- placement
def _place(gy, ah, aw, dtype):
    """grad_y planes (n, F, OH, OW) placed on the circular grid: (n, F, L1, L2) real, zeros
    elsewhere. Only outputs that see the input are placed (the others add nothing)."""
    n, F = gy.shape[:2]
    g = np.zeros((n, F, ah.L, aw.L), dtype=dtype)
    for rows, grid_rows in ah.runs:
        for cols, grid_cols in aw.runs:
            g[:, :, grid_rows, grid_cols] = gy[:, :, rows, cols]
    return g


# --------------------------------------------------------------------------- the three passes
def _filter_blocks(groups, Cg, Fg, fb):
    """(input channels, block of at most fb output channels) slices, group by group."""
    for g in range(groups):
        for f0 in range(g * Fg, (g + 1) * Fg, fb):
            yield slice(g * Cg, (g + 1) * Cg), slice(f0, min((g + 1) * Fg, f0 + fb))


def _runs(n, size):
    """Slices of [0, n) of `size` elements (the last one shorter)."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def conv2d_forward(x, weight, bias, y, stride, padding, dilation, groups, relu):
    """y = conv2d(x, weight) + bias (then ReLU if `relu`), by FFT.

    x (N, C, H, W), weight (F, C // groups, KH, KW), bias (F,) or None, y (N, F, OH, OW) written;
    stride, dilation (h, w); padding (top, left), bottom/right implied by y's size.
    """
    if tuple(stride) != _ONE:
        return _forward_strided(x, weight, bias, y, stride, padding, dilation, groups, relu)
    N, C, H, W = x.shape
    F, Cg, KH, KW = weight.shape
    OH, OW = y.shape[2:]
    Fg = F // groups
    ah, aw = _geometry(H, W, KH, KW, OH, OW, stride, padding, dilation)
    # Outputs that see only padding: 0 + bias. Those that see the input are overwritten below.
    if ah.hi - ah.lo < OH or aw.hi - aw.lo < OW:
        y[...] = 0 if bias is None else bias[None, :, None, None]
        if relu:
            np.maximum(y, 0, out=y)
    if ah.hi == ah.lo or aw.hi == aw.lo:
        return
    threads = get_num_threads()
    nb, fb = _chunks(N, Fg, Cg, ah, aw, x.dtype, x.nbytes + weight.nbytes + y.nbytes)
    wd = _dilated(weight, dilation)
    for cs, fs in _filter_blocks(groups, Cg, Fg, fb):
        Wc = _spectrum(wd[fs], ah, aw, threads)  # (f, Cg, L1, L2h)
        np.conj(Wc, out=Wc)
        for ns in _runs(N, nb):
            X = _spectrum(x[ns, cs], ah, aw, threads)  # (n, Cg, L1, L2h)
            Y = np.empty((X.shape[0], Wc.shape[0]) + X.shape[2:], dtype=X.dtype)
            _channel_sum(_bins(X), _bins(Wc), _bins(Y), threads)
            del X
            z = _inverse(Y, ah, aw, threads)  # (n, f, L1, L2)
            del Y
            for rows, grid_rows in ah.runs:
                for cols, grid_cols in aw.runs:
                    if bias is None:
                        y[ns, fs, rows, cols] = z[:, :, grid_rows, grid_cols]
                    else:  # the bias in the same pass as the copy
                        np.add(
                            z[:, :, grid_rows, grid_cols],
                            bias[fs, None, None],
                            out=y[ns, fs, rows, cols],
                        )
            del z
            if relu:
                out = y[ns, fs, ah.lo : ah.hi, aw.lo : aw.hi]
                np.maximum(out, 0, out=out)


def conv2d_grad_input(grad_y, weight, grad_x, stride, padding, dilation, groups):
    """grad_x = the gradient of conv2d with respect to x, by FFT.

    grad_y (N, F, OH, OW), weight (F, C // groups, KH, KW) -> grad_x (N, C, H, W) written.
    """
    if tuple(stride) != _ONE:
        return _grad_input_strided(grad_y, weight, grad_x, stride, padding, dilation, groups)
    N, F, OH, OW = grad_y.shape
    _, Cg, KH, KW = weight.shape
    H, W = grad_x.shape[2:]
    Fg = F // groups
    ah, aw = _geometry(H, W, KH, KW, OH, OW, stride, padding, dilation)
    if ah.hi == ah.lo or aw.hi == aw.lo:  # no output sees the input
        grad_x[...] = 0
        return
    threads = get_num_threads()
    nb, fb = _chunks(N, Fg, Cg, ah, aw, grad_y.dtype, grad_y.nbytes + weight.nbytes + grad_x.nbytes)
    wd = _dilated(weight, dilation)
    for cs, fs in _filter_blocks(groups, Cg, Fg, fb):
        Wf = _spectrum(wd[fs], ah, aw, threads).transpose(1, 0, 2, 3)  # (Cg, f, L1, L2h)
        for ns in _runs(N, nb):
            G = _spectrum(_place(grad_y[ns, fs], ah, aw, grad_y.dtype), ah, aw, threads)
            GX = np.empty((G.shape[0], Cg) + G.shape[2:], dtype=G.dtype)
            _channel_sum(_bins(G), _bins(Wf), _bins(GX), threads)
            del G
            gx = _inverse(GX, ah, aw, threads, rows=H)  # (n, Cg, H, L2)
            del GX
            # Filter chunks add up in a fixed order: the same sums for any thread count.
            if fs.start % Fg == 0:  # the group's first block of filters
                grad_x[ns, cs] = gx[:, :, :, :W]
            else:
                grad_x[ns, cs] += gx[:, :, :, :W]
            del gx


def conv2d_grad_weight(grad_y, x, grad_weight, stride, padding, dilation, groups):
    """grad_weight = the gradient of conv2d with respect to its weight, by FFT.

    grad_y (N, F, OH, OW), x (N, C, H, W) -> grad_weight (F, C // groups, KH, KW) written.
    """
    if tuple(stride) != _ONE:
        return _grad_weight_strided(grad_y, x, grad_weight, stride, padding, dilation, groups)
    N, F, OH, OW = grad_y.shape
    H, W = x.shape[2:]
    _, Cg, KH, KW = grad_weight.shape
    Fg = F // groups
    dh, dw = dilation
    ah, aw = _geometry(H, W, KH, KW, OH, OW, stride, padding, dilation)
    if ah.hi == ah.lo or aw.hi == aw.lo:  # every output sees only padding
        grad_weight[...] = 0
        return
    threads = get_num_threads()
    nb, fb = _chunks(
        N, Fg, Cg, ah, aw, x.dtype, grad_y.nbytes + x.nbytes + grad_weight.nbytes, accumulators=2
    )
    for cs, fs in _filter_blocks(groups, Cg, Fg, fb):
        GW = None
        for ns in _runs(N, nb):
            G = _spectrum(_place(grad_y[ns, fs], ah, aw, grad_y.dtype), ah, aw, threads)
            np.conj(G, out=G)
            X = _spectrum(x[ns, cs], ah, aw, threads)
            part = np.empty((G.shape[1], Cg) + G.shape[2:], dtype=G.dtype)
            # (f, n) x (n, Cg) per bin: the batch is the reduction.
            _channel_sum(
                _bins(G.transpose(1, 0, 2, 3)),
                _bins(X.transpose(1, 0, 2, 3)),
                _bins(part),
                threads,
            )
            del G, X
            if GW is None:
                GW = part
            else:
                GW += part  # batch chunks in a fixed order: the same sums for any thread count
            del part
        gwd = _inverse(GW, ah, aw, threads, rows=(KH - 1) * dh + 1)  # (f, Cg, KHD, L2)
        del GW
        grad_weight[fs] = gwd[:, :, ::dh, : (KW - 1) * dw + 1 : dw]


# ------------------------------------------------------------------- strides: polyphase
# Strides for the FFT convolution (fastconv._backend.cpu.fft) by polyphase decomposition.
#
# With the taps split as a = s*q + r, y[i] = sum_r sum_q xpad[s*(i + q) + r] * wd[s*q + r]: a
# stride-1 'valid' convolution over s*s times the channels (the phases r of the padded input and of
# the dilated kernel, space-to-depth), so the transforms stay the size of the input and the output.
# Only the min(s, KD) phases that meet a tap are formed, so neither a stride far above the kernel
# nor a huge padding makes the problem larger than the outputs' windows.

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
    wd = _dilated(weight, dilation)
    KHD, KWD = wd.shape[2:]
    kh = ph._replace(rows=ph.taps, cells=_cells(KHD, stride[0], ph.phases, ph.taps, 0))
    kw = pw._replace(rows=pw.taps, cells=_cells(KWD, stride[1], pw.phases, pw.taps, 0))
    return _phase_input(wd, kh, kw)


_ONE = (1, 1)
_NO_PAD = (0, 0)


def _forward_strided(x, weight, bias, y, stride, padding, dilation, groups, relu):
    ph, pw = _strided(x.shape, weight.shape, y.shape[2:], stride, padding, dilation)
    conv2d_forward(
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
    conv2d_grad_input(grad_y, w2, g2, _ONE, _NO_PAD, _ONE, groups)
    # Each input cell is at most one phase cell (r < s): scatter back; cells no phase holds
    # (never read) keep 0; the padding cells all land on the extra row and column, dropped.
    full = np.zeros((N, C, H + 1, W + 1), dtype=grad_x.dtype)
    full[:, :, ph.cells[:, :, None, None], pw.cells[None, None, :, :]] = _split(g2, ph, pw)
    grad_x[...] = full[:, :, :H, :W]


def _grad_weight_strided(grad_y, x, grad_weight, stride, padding, dilation, groups):
    ph, pw = _strided(x.shape, grad_weight.shape, grad_y.shape[2:], stride, padding, dilation)
    F, Cg, KH, KW = grad_weight.shape
    g2 = np.empty((F, Cg * ph.phases * pw.phases, ph.taps, pw.taps), dtype=grad_weight.dtype)
    conv2d_grad_weight(grad_y, _phase_input(x, ph, pw), g2, _ONE, _NO_PAD, _ONE, groups)
    # tap k of the kernel is tap a = k * d of the dilated one: phase a % s, its tap a // s
    rows, cols = np.arange(KH)[:, None] * dilation[0], np.arange(KW)[None, :] * dilation[1]
    (sh, sw) = stride
    g6 = _split(g2, ph._replace(rows=ph.taps), pw._replace(rows=pw.taps))
    grad_weight[...] = g6[:, :, rows % sh, rows // sh, cols % sw, cols // sw]
