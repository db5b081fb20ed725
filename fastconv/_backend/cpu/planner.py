"""The CPU backend's planner: which algorithm computes each pass of a convolution.

One place decides, per pass ("forward", "grad_input", "grad_weight"), from the shapes, the dtype,
the geometry and the SIMD level of the direct kernels, among

- "gemm":      im2col + SciPy's BLAS GEMM over cache-sized tiles (every convolution);
- "direct":    SIMD direct kernels for few filters, one group (forward, grad-weight; grad-input
               with stride 1 as a forward pass of grad_out with the flipped weights);
- "depthwise": direct kernels for one input channel per group (groups > 1);
- "matmul":    one GEMM when the kernel covers the whole unpadded input (a 1x1 output, as
               LeNet-5's C5): the convolution is then exactly a dense layer;
- "winograd":  Winograd F(4x4, 3x3), float32, 3x3 kernels, stride 1, one group; grad-weight by
               F(3x3, 4x4), float32 and float64;
- "fft":       FFT convolution (scipy.fft) for large kernels.

`runnable` says which algorithms can compute a pass exactly; `choose` is the "auto" choice, from
the measurements the thresholds cite; `resolve` checks a user's choice; `worth_timing` which
runnable ones autotuning (autotune.py) times; `fuses` says which pairs of passes go to one
backend call and `fused` which of those compute both passes in one; `for_operands` is what runs
on given data: the paths that skip or
transform padded taps (direct grad-input, depthwise, winograd, fft) would turn inf into NaN
differently from NumPy, so operands holding inf or NaN take the exact paths, whatever the plan
(found before the call, or by the kernel itself where CHECKS_OUTPUT says so).
The backend (ops.py) asks these and runs what they say; nothing else chooses.
"""

import functools
from collections import namedtuple

import numpy as np

from ..._validation import CONV_ALGORITHMS

ALGORITHMS = CONV_ALGORITHMS[1:]  # without "auto"
PASSES = ("forward", "grad_input", "grad_weight")

Conv = namedtuple("Conv", "x_shape w_shape y_shape stride padding dilation groups dtype")
Conv.__doc__ = """A convolution to plan: x (N,C,H,W), weight (F,C//groups,KH,KW), y (N,F,OH,OW)
shapes; stride, dilation (h, w); padding (top, left); groups; the computing dtype."""

# The direct and depthwise SIMD kernels copy the input rectangle their outputs span, padding
# included, into a zero-padded window. That rectangle may hold far more than anything read: a 4x4
# input padded by 20,000 with stride 20,000 spans 40,003^2 cells (12 GiB, 35 s) for 9 outputs.
# Past this many times the input and output planes, a path without such a window is taken.
_WINDOW_FACTOR = 4


def window_fits(in_hw, out_hw, kernel_hw, stride, dilation):
    """Whether the padded window spanned by `out_hw` outputs of a (KH, KW) kernel with these
    strides and dilations stays within _WINDOW_FACTOR x (input plane + output plane)."""
    (H, W), (OH, OW), (KH, KW) = in_hw, out_hw, kernel_hw
    span_h = (OH - 1) * stride[0] + (KH - 1) * dilation[0] + 1
    span_w = (OW - 1) * stride[1] + (KW - 1) * dilation[1] + 1
    return span_h * span_w <= _WINDOW_FACTOR * (H * W + OH * OW)


def direct_fits(filters, taps, dtype, level, wide=True):
    """Whether the SIMD direct kernels beat im2col + GEMM for `filters` outputs per pixel (the
    SIMD lanes) of `taps` = C * KH * KW products each (one group). Measured with AVX2 (2 threads,
    forward): direct 1.3-3x faster from 4 up to 32 float32 (2 to 16 float64) filters, and up to
    64 / 32 when taps <= 160 (7x7 on RGB; only if `wide`); about even at 64 float32 filters of
    3x3x64; GEMM faster beyond, and for a single filter (grad-input of a one-channel input:
    2x)."""
    if level == 0:
        return False
    filter_bytes = filters * np.dtype(dtype).itemsize
    if not 16 <= filter_bytes:
        return False
    return filter_bytes <= 128 or (wide and filter_bytes <= 256 and taps <= 160)


# The wide extension above holds for grad-weight with AVX-512 too since its direct kernel takes
# two filter vectors per register block and transposes grad_y a chunk at a time in L1 (it held
# GEMM's 0.50-0.73x of the direct time before: autotune_extra_*_before / autotune_extra_2threads).
# Ice Lake-SP, grad-weight of 64 float32 filters, 27 to 147 taps (the wide-* cases of
# benchmarks/bench_autotune.py and the suite's 7x7s2-c3-224-f64), direct against GEMM, minima of
# interleaved reps on a quiet machine: 0.73-0.95x GEMM's time on two threads, 0.72-0.94x on one
# (benchmarks/results/autotune_wide_gw_{2threads,1thread}.log).


# With AVX-512 the direct grad-weight beats GEMM past direct_fits's domain too: for up to 128
# float32 filters of 256 taps or more (C * KH * KW), where each (filter, tap) sum runs over at
# least four times as many products as there are taps (N * OH * OW >= 4 * taps), it took
# 0.60-0.87x GEMM's time in 23 of the 26 such cases with 64 or 128 filters of
# benchmarks/bench_gw_direct.py's sweep (1x1 over 256 channels, 3x3 over 64 to 256, outputs 14x14
# to 56x56, stride 1 and 2, batch 8; 2 threads, medians of 15 interleaved reps, Ice Lake-SP:
# results/gw_direct_sweep_2threads.log), and drew with it (0.93-1.02x) on 128 filters of 1x1x256.
# Outside it direct lost or drew: 3x3x256 on 14x14 (few products per tap) up to 1.7x GEMM's
# time, 256 filters of 1x1x256 0.93-1.09x, 128 and 256 of 1x1x64 1.1-1.5x.
_DIRECT_GW_MAX_FILTERS = 128
_DIRECT_GW_MIN_TAPS = 256
_DIRECT_GW_PRODUCTS_PER_TAP = 4


def _direct_grad_weight_wide(conv, level):
    """Whether the direct grad-weight takes `conv` by the AVX-512 rule above (beyond
    direct_fits): float32, one group, no dilation."""
    F, Cg, KH, KW = conv.w_shape
    N, _, OH, OW = conv.y_shape
    taps = Cg * KH * KW
    return (
        level >= 2
        and np.dtype(conv.dtype) == np.float32
        and conv.groups == 1
        and tuple(conv.dilation) == (1, 1)
        and F <= _DIRECT_GW_MAX_FILTERS
        and taps >= _DIRECT_GW_MIN_TAPS
        and N * OH * OW >= _DIRECT_GW_PRODUCTS_PER_TAP * taps
    )


def _is_matmul(conv):
    """Whether the one output's window is exactly the unpadded input. Dilation counts: a dilated
    kernel of the input's size reaches past it (into bottom/right padding, which `padding` does
    not hold), so it is not a dense layer."""
    (_, _, H, W), (_, _, KH, KW), (_, _, OH, OW) = conv.x_shape, conv.w_shape, conv.y_shape
    (dh, dw) = conv.dilation
    return (
        conv.groups == 1
        and (OH, OW) == (1, 1)
        and ((KH - 1) * dh + 1, (KW - 1) * dw + 1) == (H, W) == (KH, KW)
        and tuple(conv.padding) == (0, 0)
    )


def flipped_padding(conv):
    """The padding of grad-input computed as a forward pass over grad_out (stride 1)."""
    (_, _, KH, KW), (dh, dw), (pt, pl) = conv.w_shape, conv.dilation, conv.padding
    return (KH - 1) * dh - pt, (KW - 1) * dw - pl


def _winograd_shape(conv):
    """Winograd F(4x4, 3x3) runs float32 3x3 convolutions with stride 1 and one group (any
    padding, any dilation); float64 stays on the exact paths."""
    KH, KW = conv.w_shape[2:]
    return (
        np.dtype(conv.dtype) == np.float32
        and (KH, KW) == (3, 3)
        and conv.groups == 1
        and tuple(conv.stride) == (1, 1)
    )


# Winograd's domain, from benchmarks/bench_winograd.py (AVX2 EPYC, 2 threads, medians of 9
# interleaved reps, against torch 2.13's oneDNN and fastconv's im2col + GEMM): forward 0.39-0.55x
# torch's time and grad-input 0.38-0.55x on the ResNet layers with C = F = 64..256 (128 to 392
# tiles of 4x4 outputs per batch of 8), 0.47 / 0.59x on the dilated one, 2-3x faster than GEMM;
# at C = F = 512 on 7x7 (32 tiles, each transformed weight used by few tiles) 0.44 / 0.44x torch
# with the kernel's few-tiles schedule (src/winograd_few.h, 15 reps, idle machine; 0.96 / 1.15x
# before it). Fewer channels were not measured there: they stay on direct/GEMM with AVX2.
# With AVX-512 (Ice Lake; the few-* cases of benchmarks/bench_autotune.py: 3x3 'same', batch 8,
# 14x14 to 56x56, C and F from 16 to 64) Winograd took 0.17-0.91x the best other algorithm's
# time in all 18 forward and grad-input passes with C and F >= 32 on one thread
# (benchmarks/results/autotune_extra_1thread_before.json, minima of 11 interleaved reps, a
# busy machine), and on two 0.42-0.85x in 17 of them, 1.10x in one (14x14, C = 32, F = 64,
# grad-input; autotune_extra_2threads.json, minima of 15, a quiet machine). With 16 channels
# it won on 28x28 and 56x56 but lost on 14x14 (1.1-1.8x), and C = F = 16 lost on 56x56 too in
# a one-off run: left to autotuning.
_WINOGRAD_MIN_CHANNELS = 64
_WINOGRAD_MIN_CHANNELS_AVX512 = 32
_WINOGRAD_MIN_TILES = 32


def _winograd_grad_weight_shape(conv):
    """Winograd grad-weight, F(3x3, 4x4), runs 3x3 convolutions with stride 1 and one group (any
    padding, any dilation), float32 and float64."""
    return conv.w_shape[2:] == (3, 3) and conv.groups == 1 and tuple(conv.stride) == (1, 1)


# Winograd grad-weight's domain, from benchmarks/results/wgrad_sweep_*.json (bench_wgrad.py
# --sweep; Ice Lake AVX-512, 1 thread, CPU time, medians of 5 interleaved reps on a shared
# machine; batch 8, padding 1, sizes 7..112) against the choice before it (direct below 64
# filters, else GEMM): 0.34-0.86x the time wherever C, F >= 32 (float64 0.44-0.88x), 0.44-0.73x
# at (C, F) = (16, 64) (float64 0.61-0.75x), 0.70-1.11x at (64, 16) (0.84-1.06x); at C = F = 16
# 1.03-1.54x (0.86-1.35x), at C = F = 8 and C = 3 mostly slower (0.66-2.4x). One-off runs: at
# the baseline SIMD level (SSE2, forced) 0.97-1.5x GEMM's time; small outputs (8 x 128 channels,
# 1x1 to 5x5) 0.3-1.2x GEMM's, but "matmul" (a 1x1 output of the unpadded input) 8x faster.
_WINOGRAD_WGRAD_MIN_CHANNELS = 16
_WINOGRAD_WGRAD_MIN_PAIRS = 1024  # C * F


def winograd_pays(pass_, conv, level=1):
    """Whether Winograd is the choice for `pass_` of `conv` (with SIMD `level`: grad-weight
    needs SIMD; the forward and grad-input take 32 channels with AVX-512, 64 below)."""
    if pass_ == "grad_weight":
        F, C = conv.w_shape[:2]
        return (
            _winograd_grad_weight_shape(conv)
            and level > 0
            and not _is_matmul(conv)
            and min(C, F) >= _WINOGRAD_WGRAD_MIN_CHANNELS
            and C * F >= _WINOGRAD_WGRAD_MIN_PAIRS
        )
    if not _winograd_shape(conv):
        return False
    F, C = conv.w_shape[0], conv.w_shape[1]
    N, OH, OW = conv.y_shape[0], conv.y_shape[2], conv.y_shape[3]
    H, W = conv.x_shape[2:]
    rows, cols = (OH, OW) if pass_ == "forward" else (H, W)
    tiles = N * -(-rows // 4) * -(-cols // 4)
    channels = _WINOGRAD_MIN_CHANNELS_AVX512 if level >= 2 else _WINOGRAD_MIN_CHANNELS
    return min(C, F) >= channels and tiles >= _WINOGRAD_MIN_TILES


def runnable(pass_, conv, level):
    """The algorithms that compute `pass_` of `conv` (finite data), in ALGORITHMS order. (The
    direct kernels run at any SIMD `level`, 0 being their portable build; only `choose` asks
    for SIMD.)"""
    (_, _, H, W), (_, Cg, KH, KW), (_, _, OH, OW) = conv.x_shape, conv.w_shape, conv.y_shape
    out = ["gemm"]
    depthwise = Cg == 1 and conv.groups > 1
    if pass_ == "grad_input":
        stride1 = tuple(conv.stride) == (1, 1) and min(flipped_padding(conv)) >= 0
        windowed = window_fits((OH, OW), (H, W), (KH, KW), (1, 1), conv.dilation)
        if conv.groups == 1 and stride1 and windowed:
            out.append("direct")
        if depthwise:
            out.append("depthwise")
    else:
        windowed = window_fits((H, W), (OH, OW), (KH, KW), conv.stride, conv.dilation)
        if conv.groups == 1 and windowed:
            out.append("direct")
        if depthwise and (windowed or pass_ == "grad_weight"):
            out.append("depthwise")
    if _is_matmul(conv):
        out.append("matmul")
    if _winograd_grad_weight_shape(conv) if pass_ == "grad_weight" else _winograd_shape(conv):
        out.append("winograd")
    out.append("fft")  # any padding, stride (polyphase), dilation and groups
    return tuple(out)


# FFT's crossover: the smallest kernel side from which it beat the algorithm chosen otherwise,
# float32, 'same' padding, stride 1 (benchmarks/results/fft_crossover_1thread_cputime.json, one
# thread, CPU time; AVX2 EPYC), as (forward, grad-input, grad-weight):
_FFT_ONE_PLANE = (5, 19, 5)  # 1x1x256x256 > 1: GEMM with one filter is slow; depthwise grad-input
_FFT_FEW_CHANNELS = (15, 9, 11)  # 8x3x128x128 > 16: 48 (filter, channel) pairs per group
_FFT_CHANNELS = (7, 7, 7)  # 8x16x64x64 > 16 up to 8x64x28x28 > 64: >= 256 pairs
_PASS_INDEX = {"forward": 0, "grad_input": 1, "grad_weight": 2}


def _fft_side(pass_, conv):
    """The crossover kernel side of FFT for `pass_` of `conv`'s class (filter-channel pairs)."""
    F, Cg = conv.w_shape[:2]
    pairs = Cg * (F // conv.groups)
    sides = _FFT_ONE_PLANE if pairs == 1 else _FFT_FEW_CHANNELS if pairs < 256 else _FFT_CHANNELS
    return sides[_PASS_INDEX[pass_]]


def fft_pays(pass_, conv):
    """Whether FFT beats the other algorithms on `pass_` of `conv`, by the measured crossover:
    stride 1 and no dilation (the measured cases), outputs of at least 16x16."""
    KH, KW = conv.w_shape[2:]
    OH, OW = conv.y_shape[2:]
    if tuple(conv.stride) != (1, 1) or tuple(conv.dilation) != (1, 1) or OH * OW < 256:
        return False
    return min(KH, KW) >= _fft_side(pass_, conv)


# Autotuning times FFT only where the kernel's smaller side per stride phase (ceil(KH / sh),
# ceil(KW / sw)) reaches this fraction of the crossover side above for its pass and class of
# convolution: nearer the crossover it may win on another machine; further below it lost to
# the best algorithm by 2.5-130x on every pass of bench_conv.py's suite (5x5, 7x7 stride 2 and
# smaller kernels; benchmarks/results/autotune_1thread.json, Ice Lake AVX-512), and one of its
# runs can take seconds (8x256x56x56 1x1: 3.4 s against 43 ms).
_FFT_TIMED_FRACTION = 0.7


def worth_timing(algorithm, pass_, conv):
    """Whether autotuning times `algorithm` (runnable) for `pass_` of `conv`: all but FFT on
    kernels well below its crossover."""
    if algorithm != "fft":
        return True
    (KH, KW), (sh, sw) = conv.w_shape[2:], conv.stride
    return min(-(-KH // sh), -(-KW // sw)) >= _FFT_TIMED_FRACTION * _fft_side(pass_, conv)


# The algorithms that transform whole tiles or planes: an inf or NaN anywhere in one spreads to
# every output of it, so the backend computes inputs that are not finite on the exact paths.
TRANSFORMS = ("winograd", "fft")

# The (algorithm, pass) whose kernel reports whether an output came out inf or NaN (Winograd's
# forward: an inf or NaN in a tile's input window or in a weight makes outputs of the tile inf or
# NaN, and the output transform sums them on the way out): they run without the passes over
# their operands first, and on such a report the backend computes the pass again on `exact`'s
# choice. Those passes, as NumPy sums on one thread, took 7% of 3x3 64 -> 64 on 8 x 56 x 56
# (0.41 of 6.1 ms) and 11% of 512 -> 512 on 8 x 7 x 7 (0.67 of 6.2 ms) at 2 threads, Ice
# Lake-SP (the weights alone 0.63 ms there); conv.all_finite over the threads still reads both
# operands once more (8 x 64 x 56 x 56: 0.17 ms on two threads).
CHECKS_OUTPUT = frozenset({("winograd", "forward")})


def exact(pass_, conv, level):
    """What computes `pass_` of `conv` on operands holding inf or NaN in place of a transform."""
    return choose(pass_, conv, level, transforms=False)


# The two operands of each pass (forward: y = x * weight; grad_input from grad_y and weight;
# grad_weight from grad_y and x), and the one whose padded taps the depthwise kernels skip.
OPERANDS = {
    "forward": ("x", "weight"),
    "grad_input": ("grad_y", "weight"),
    "grad_weight": ("grad_y", "x"),
}
_DEPTHWISE_SKIPS = {"forward": "weight", "grad_weight": "grad_y"}


def depthwise_skips(conv, level):
    """Whether the depthwise forward and grad-weight skip padded taps: the scalar loops do; the
    SIMD kernels (stride 1 along W) multiply a zero-padded copy of the input, so 0 * inf gives
    NaN there as on the GEMM path, and their operands need no finiteness check (a pass over
    grad_y: a fifth of depthwise 3x3 8 x 32 x 112 x 112's grad-weight, Ice Lake-SP)."""
    return level == 0 or conv.stride[1] != 1


def depthwise_flips(conv, level):
    """Whether depthwise grad-input runs as the SIMD forward over flipped weights: one filter per
    channel, stride 1, SIMD, and a window of bounded size."""
    (_, C, H, W), (F, _, KH, KW), (_, _, OH, OW) = conv.x_shape, conv.w_shape, conv.y_shape
    return (
        F == C
        and tuple(conv.stride) == (1, 1)
        and level > 0
        and min(flipped_padding(conv)) >= 0
        and window_fits((OH, OW), (H, W), (KH, KW), (1, 1), conv.dilation)
    )


def for_operands(algorithm, pass_, conv, level, finite):
    """(the algorithm that computes `pass_` of `conv` on these operands, whether grad-input runs
    as a forward pass over the flipped weights). `finite(name)` says whether the operand `name`
    (OPERANDS) holds only finite values; it is asked only where the answer changes the choice:
    a transform would spread an inf or NaN over whole planes or tiles (the exact choice
    instead); the scalar depthwise kernels skip padded taps, and the flipped grad-input multiplies
    padding by the weights, where 0 * inf must give NaN as the GEMM path does."""
    chosen = resolve(algorithm, pass_, conv, level)
    first, second = OPERANDS[pass_]
    checked = (chosen, pass_) in CHECKS_OUTPUT  # by the kernel, afterwards
    if chosen in TRANSFORMS and not checked and not (finite(first) and finite(second)):
        chosen = exact(pass_, conv, level)
    if pass_ != "grad_input":
        skips = chosen == "depthwise" and depthwise_skips(conv, level)
        if skips and not finite(_DEPTHWISE_SKIPS[pass_]):
            return "gemm", False
        return chosen, False
    flipped = chosen == "direct" or (chosen == "depthwise" and depthwise_flips(conv, level))
    if flipped and not finite("weight"):
        # the scatter instead: the depthwise one, or GEMM's col2im for the direct kernels
        return ("gemm" if chosen == "direct" else chosen), False
    return chosen, flipped


@functools.lru_cache(maxsize=4096)  # a pure function of its arguments, asked on every call
def choose(pass_, conv, level, transforms=True):
    """The "auto" algorithm for `pass_` of `conv` (among the exact paths if not `transforms`)."""
    can = runnable(pass_, conv, level)
    F, Cg, KH, KW = conv.w_shape
    if transforms and fft_pays(pass_, conv):
        return "fft"
    if transforms and winograd_pays(pass_, conv, level):
        return "winograd"
    if "matmul" in can:
        # LeNet-5's C5 (16x5x5 -> 120 on 5x5 inputs): 2-3x faster as one GEMM than as im2col.
        return "matmul"
    if "depthwise" in can:
        return "depthwise"
    if "direct" in can:
        lanes, taps = (Cg, F * KH * KW) if pass_ == "grad_input" else (F, Cg * KH * KW)
        if direct_fits(lanes, taps, conv.dtype, level):
            return "direct"
        if pass_ == "grad_weight" and _direct_grad_weight_wide(conv, level):
            return "direct"
    return "gemm"


# Pairs of passes one backend call can compute together: "grad_weight_bias" (conv2d_backward
# wanting both: one pass over grad_out on the direct kernels, else the two ops) and
# "forward_grad_weight" (a transposed convolution's two gradients: one im2col per tile serving
# both GEMMs, bitwise the two calls' results).
FUSIONS = ("grad_weight_bias", "forward_grad_weight")


def nonempty(conv):
    """Whether x, the weight and y all hold elements."""
    return min(np.prod(conv.x_shape), np.prod(conv.w_shape), np.prod(conv.y_shape)) > 0


@functools.lru_cache(maxsize=4096)
def fuses(fusion, algorithm, conv, level):
    """Whether `fusion` (one of FUSIONS) goes to one backend call for `conv`: only under the
    "auto" choice (a forced algorithm runs as asked) and on non-empty arrays; forward +
    grad-weight only where both passes choose GEMM. (The grad-weight + grad-bias call computes
    both in one pass where grad-weight runs on the direct kernels: `fused`.)"""
    if algorithm != "auto" or not nonempty(conv):
        return False
    if fusion == "grad_weight_bias":
        return True
    return fused(
        fusion, algorithm, conv, choose("forward", conv, level), choose("grad_weight", conv, level)
    )


def fused(fusion, algorithm, conv, forward, grad_weight):
    """Whether `fusion` computes its two passes in one pass over the data when the forward and
    grad-weight passes run `forward` and `grad_weight` (the algorithms chosen, "auto" resolved):
    grad-weight + grad-bias on the direct kernels, forward + grad-weight where both are GEMM;
    never for a forced algorithm."""
    if algorithm != "auto" or not nonempty(conv):
        return False
    if fusion == "grad_weight_bias":
        return grad_weight == "direct"
    return forward == "gemm" == grad_weight


@functools.lru_cache(maxsize=4096)
def resolve(algorithm, pass_, conv, level):
    """`algorithm` ("auto" or a name in ALGORITHMS) -> the algorithm that computes `pass_`;
    ValueError naming `algorithm` when it cannot."""
    if algorithm == "auto":
        return choose(pass_, conv, level)
    can = runnable(pass_, conv, level)
    if algorithm not in can:
        raise ValueError(
            f"algorithm {algorithm!r} cannot compute the {pass_} pass of this "
            f"convolution on the CPU (x {conv.x_shape}, weight {conv.w_shape}, "
            f"stride {conv.stride}, dilation {conv.dilation}, groups {conv.groups},"
            f" {np.dtype(conv.dtype).name}); it can run: {', '.join(can)}"
        )
    return algorithm
