"""CPU backend: the backend interface (docs/INTERNALS.md) over the compiled kernels.

Arguments arrive validated and C-contiguous; outputs are preallocated. Each op picks its kernel,
hands it the thread count and, where the kernel calls BLAS from OpenMP threads, holds BLAS to one
thread meanwhile.
"""

import functools
import threading

import numpy as np

from ..._kernels import conv as _conv_module
from ..._kernels import dense as _dense_module
from ..._kernels import depthwise as _depthwise_module
from ..._kernels import direct as _direct_module
from ..._kernels import optim as _optim_module
from ..._kernels import pool as _pool_module
from ..._kernels import winograd as _winograd_module
from ..._validation.memo import Memo
from .. import OPS  # noqa: F401  (the interface: the op names this module exports)
from . import autotune as _autotune
from . import fft as _fft
from . import planner as _planner
from .threads import blas_single_thread, get_num_threads


class _Typed:
    """A compiled kernel module whose fused-type functions are called by their float or double
    specialisation, picked from the first argument's dtype: Cython's own matching of the
    arguments against the signatures costs ~2.5 us a call, most of a small convolution's time
    outside the kernel. Everything else of the module passes through."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        fn = getattr(self._module, name)
        signatures = getattr(fn, "__signatures__", None)
        if signatures is not None:
            by_dtype = {np.dtype(np.float32): signatures["float"]}
            by_dtype[np.dtype(np.float64)] = signatures["double"]

            def fn(first, *args, _by_dtype=by_dtype, _fused=fn):
                return _by_dtype.get(first.dtype, _fused)(first, *args)

        setattr(self, name, fn)  # looked up once
        return fn

    def typed(self, name, dtype):
        """`name`'s specialisation for `dtype` (float32: "float", float64: "double"), for callers
        that know the dtype before the call (the prepared passes below)."""
        fn = getattr(self._module, name)
        signatures = getattr(fn, "__signatures__", None)
        if signatures is None:
            return fn
        return signatures["float" if np.dtype(dtype) == np.float32 else "double"]


_conv, _dense, _depthwise, _direct = (
    _Typed(m) for m in (_conv_module, _dense_module, _depthwise_module, _direct_module)
)
_pool, _winograd = (_Typed(m) for m in (_pool_module, _winograd_module))
_optim = _optim_module  # (its functions take lists of parameters, not typed arrays)


def _level():
    return _direct_module.level()


@functools.lru_cache(maxsize=1024)  # the same few problems, asked on every call
def _problem(x_shape, w_shape, y_shape, stride, padding, dilation, groups, dtype):
    return _planner.Conv(
        tuple(x_shape),
        tuple(w_shape),
        tuple(y_shape),
        tuple(stride),
        tuple(padding),
        tuple(dilation),
        groups,
        np.dtype(dtype),
    )


def conv2d_plan(x_shape, w_shape, y_shape, stride, padding, dilation, groups, dtype, algorithm):
    """What runs: {"algorithms": {pass: algorithm}, "fusions": {fusion: computed in one pass},
    "sources": {pass: "heuristic" | "forced" | "autotune" | "autotune cache"}, "seconds": {pass:
    {algorithm: seconds or None}} for the autotuned passes}, `algorithm` ("auto" or a name)
    resolved. With autotuning on for this thread, passes not tuned yet are tuned now on random
    data of these shapes, so that the plan is what the calls will run."""
    conv = _problem(x_shape, w_shape, y_shape, stride, padding, dilation, groups, dtype)
    level = _level()
    chosen = {p: _planner.resolve(algorithm, p, conv, level) for p in _planner.PASSES}
    source = "forced" if algorithm != "auto" else "heuristic"
    sources, seconds = dict.fromkeys(_planner.PASSES, source), {}
    if algorithm == "auto" and _autotune.active and _autotune.enabled() and _planner.nonempty(conv):
        for p in _planner.PASSES:
            tuned = _autotune.lookup(p, conv, level)
            if tuned is None:
                _tune_on_random_data(p, conv)
                tuned = _autotune.lookup(p, conv, level)
            chosen[p] = tuned.algorithm
            sources[p] = "autotune" if tuned.source == "measured" else "autotune cache"
            seconds[p] = dict(tuned.seconds)
    fusions = {
        f: _planner.fused(f, algorithm, conv, chosen["forward"], chosen["grad_weight"])
        for f in _planner.FUSIONS
    }
    return {"algorithms": chosen, "fusions": fusions, "sources": sources, "seconds": seconds}


def _tune_on_random_data(pass_, conv):
    """Run `pass_` of `conv` once under autotuning, on random data of its shapes (the times
    do not depend on the values, only on their being finite)."""
    rng = np.random.default_rng(0)
    dtype = conv.dtype

    def normal(shape):
        return rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)

    geometry = (conv.stride, conv.padding, conv.dilation, conv.groups)
    if pass_ == "forward":
        x, w = normal(conv.x_shape), normal(conv.w_shape)
        conv2d_forward(x, w, None, np.empty(conv.y_shape, dtype), *geometry, False, "auto")
    elif pass_ == "grad_input":
        gy, w = normal(conv.y_shape), normal(conv.w_shape)
        conv2d_grad_input(gy, w, np.empty(conv.x_shape, dtype), *geometry, "auto")
    else:
        gy, x = normal(conv.y_shape), normal(conv.x_shape)
        conv2d_grad_weight(gy, x, np.empty(conv.w_shape, dtype), *geometry, "auto")


def conv2d_algorithms(x_shape, w_shape, y_shape, stride, padding, dilation, groups, dtype):
    """{pass: the algorithms that can compute it} (finite data)."""
    conv = _problem(x_shape, w_shape, y_shape, stride, padding, dilation, groups, dtype)
    return {p: _planner.runnable(p, conv, _level()) for p in _planner.PASSES}


def conv2d_fuses(
    fusion, x_shape, w_shape, y_shape, stride, padding, dilation, groups, dtype, algorithm
):
    """Whether the pair of passes `fusion` (planner.FUSIONS) goes to one backend call."""
    conv = _problem(x_shape, w_shape, y_shape, stride, padding, dilation, groups, dtype)
    if _autotune.active and fusion == "forward_grad_weight" and algorithm == "auto":
        # conv2d_forward_and_grad_weight fuses them if the tuned choices are both GEMM
        return _planner.nonempty(conv)
    return _planner.fuses(fusion, algorithm, conv, _level())


def _finite(a):
    """Whether every value of `a` (C-contiguous) is finite: one pass over the threads
    (_kernels.conv.all_finite)."""
    return bool(_conv.all_finite(a.reshape(-1), get_num_threads()))


# _choice's answers that no operand's values decided (the planner asked for no finiteness),
# which are then the answers for any operands of the call's shapes: a small convolution's call
# spent ~2.5 us getting them.
_CHOICES = Memo(4096)


def _choice(pass_, algorithm, shapes, geometry, checks=None, **operands):
    """(algorithm, flipped): planner.for_operands for the convolution of `shapes` (x, weight,
    y) and `geometry` (stride, padding, dilation, groups) on these operands, their finiteness
    measured only where asked (by checks[name]() where given, else _finite)."""
    dtype = next(iter(operands.values())).dtype
    level = _direct_module.level()
    key = (pass_, algorithm, shapes, geometry, dtype, level)
    known = _CHOICES.get(key)
    if known is not None:
        return known
    conv = _problem(*shapes, *geometry, dtype)
    seen = {}

    def finite(name):
        if name not in seen:
            check = checks.get(name) if checks else None
            seen[name] = check() if check is not None else _finite(operands[name])
        return seen[name]

    chosen = _planner.for_operands(algorithm, pass_, conv, level, finite)
    if not seen:
        _CHOICES.remember(key, chosen)
    return chosen


def _tuned(pass_, shapes, geometry, run, out, *operands):
    """autotune.pick for the convolution of `shapes` (x, weight, y) and `geometry`:
    (algorithm, written); run(name, target) computes the pass by `name` into `target`. A key
    tuned before costs one dictionary look-up (autotune.known)."""
    level = _level()
    call_key = (pass_, shapes, geometry, out.dtype.char, level, get_num_threads())
    algorithm = _autotune.known(call_key)
    if algorithm is not None:
        return algorithm, False
    conv = _problem(*shapes, *geometry, out.dtype)
    return _autotune.pick(
        pass_, conv, level, run, out, lambda: all(_finite(a) for a in operands), call_key
    )


_NO_BIAS = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0)}


def _bias_or_empty(bias, dtype):
    # The kernels take a typed memoryview; an empty one (never written) stands for "no bias".
    return (_NO_BIAS[dtype], False) if bias is None else (bias, True)


def _matrices(x, weight, y):
    """The 2-D views of a whole-input convolution: x (N, C*KH*KW), weight (F, C*KH*KW),
    y (N, F)."""
    N, F = y.shape[0], weight.shape[0]
    return x.reshape(N, -1), weight.reshape(F, -1), y.reshape(N, F)


def _on_blas(algorithm, dense, op, *args):
    """ "matmul", "depthwise" or "gemm" with BLAS held to one thread (OpenMP owns the cores):
    dense(num_threads) for "matmul" (a dense op on the 2-D views, _matrices), else the depthwise
    or GEMM kernel module's `op` with args."""
    with blas_single_thread:
        if algorithm == "matmul":
            dense(get_num_threads())
        else:
            getattr(_depthwise if algorithm == "depthwise" else _conv, op)(*args)


def conv2d_forward(x, weight, bias, y, stride, padding, dilation, groups, relu, algorithm):
    shapes, geometry = (x.shape, weight.shape, y.shape), (stride, padding, dilation, groups)
    if algorithm == "auto" and _autotune.active:

        def run(name, target):
            conv2d_forward(x, weight, bias, target, *geometry, relu, name)

        algorithm, written = _tuned("forward", shapes, geometry, run, y, x, weight)
        if written:
            return
    algorithm, _ = _choice("forward", algorithm, shapes, geometry, x=x, weight=weight)
    if algorithm == "fft":
        _fft.conv2d_forward(x, weight, bias, y, stride, padding, dilation, groups, relu)
        return
    if algorithm == "winograd":
        if not _winograd_forward(x, weight, bias, y, padding, dilation, relu):
            # an inf or NaN came out (planner.CHECKS_OUTPUT): y again on the exact path
            exact = _planner.exact("forward", _problem(*shapes, *geometry, x.dtype), _level())
            conv2d_forward(x, weight, bias, y, stride, padding, dilation, groups, relu, exact)
        return
    bias, has_bias = _bias_or_empty(bias, x.dtype)
    args = (*stride, *padding, *dilation, groups, has_bias, relu, get_num_threads())
    if algorithm == "direct":
        _direct.forward(x, weight, bias, y, *args)
        return

    def dense(nt):
        x2, w2, y2 = _matrices(x, weight, y)
        _dense.linear_forward(x2, w2, bias, y2, has_bias, relu, nt)

    _on_blas(algorithm, dense, "forward", x, weight, bias, y, *args)


_flipped = threading.local()  # per thread: {(shape, dtype): the flipped weight's buffer}


def _flipped_weight(weight):
    """weight (F, Cg, KH, KW) transposed and flipped, (Cg, F, KH, KW) C-contiguous, in a buffer
    kept per thread, shape and dtype (so that a training step's grad-input allocates nothing)."""
    buffers = getattr(_flipped, "buffers", None)
    if buffers is None:
        buffers = _flipped.buffers = {}
    F, Cg, KH, KW = weight.shape
    key = (weight.shape, weight.dtype)
    flipped = buffers.get(key)
    if flipped is None:
        if len(buffers) >= 32:  # many layers or shapes: keep the newest ones only
            buffers.clear()
        flipped = buffers[key] = np.empty((Cg, F, KH, KW), weight.dtype)
    np.copyto(flipped, weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    return flipped


def _flipped_forward(kernel, grad_y, weight, grad_x, padding, dilation, groups, num_threads):
    """grad_x for stride 1 as the convolution of grad_y, padded by the kernel's reach less the
    forward padding, with the flipped, transposed weight: a forward pass of a direct kernel.
    That padding is multiplied by the weights, where the GEMM path adds nothing: finite weights
    only."""
    F, Cg, KH, KW = weight.shape
    flipped = _flipped_weight(weight)
    if kernel is _depthwise:
        flipped = flipped.reshape(F, 1, KH, KW)
    (dh, dw), (pt, pl) = dilation, padding
    no_bias, _ = _bias_or_empty(None, weight.dtype)
    kernel.forward(
        grad_y,
        flipped,
        no_bias,
        grad_x,
        1,
        1,
        (KH - 1) * dh - pt,
        (KW - 1) * dw - pl,
        dh,
        dw,
        groups,
        False,
        False,
        num_threads,
    )


# The backward passes of a convolution by the planner's choice, prepared once per (choice, dtype,
# geometry): what ran per call before (the algorithm's branches, the closures over the 2-D views,
# the kernel's specialisation for the dtype, its geometry arguments) is decided when the step is
# made. Each step is run(grad_y, x, weight, grad_x, grad_weight, grad_bias, num_threads): it
# reads its pass's operands and writes its outputs (the others may be None), with BLAS held to
# one thread where the kernel calls it from OpenMP threads. One signature for all: a prepared
# conv2d_backward runs its steps without a wrapper each. A step is a pure function of its key:
# bounded by the LRU.
_STEPS = 1024


@functools.lru_cache(maxsize=_STEPS)
def _grad_input_step(algorithm, flipped, dtype, stride, padding, dilation, groups):
    """The grad-input step (grad_y, weight -> grad_x) by `algorithm` (as forward passes over
    the flipped weights where `flipped`)."""
    if algorithm == "fft":
        return lambda gy, x, w, gx, gw, gb, nt: _fft.conv2d_grad_input(
            gy, w, gx, stride, padding, dilation, groups
        )
    if algorithm == "winograd":
        return lambda gy, x, w, gx, gw, gb, nt: _winograd_grad_input(
            gy, w, gx, padding, dilation, nt
        )
    if flipped:
        kernel = _direct if algorithm == "direct" else _depthwise
        return lambda gy, x, w, gx, gw, gb, nt: _flipped_forward(
            kernel, gy, w, gx, padding, dilation, groups, nt
        )
    if algorithm == "matmul":

        def run(gy, x, w, gx, gw, gb, nt):
            gx2, w2, gy2 = _matrices(gx, w, gy)
            with blas_single_thread:
                _dense.linear_grad_input(gy2, w2, gx2, nt)

        return run
    kernel = (_depthwise if algorithm == "depthwise" else _conv).typed("grad_input", dtype)
    args = (*stride, *padding, *dilation, groups)

    def run(gy, x, w, gx, gw, gb, nt):
        with blas_single_thread:
            kernel(gy, w, gx, *args, nt)

    return run


def conv2d_grad_input(grad_y, weight, grad_x, stride, padding, dilation, groups, algorithm):
    shapes, geometry = (
        (grad_x.shape, weight.shape, grad_y.shape),
        (stride, padding, dilation, groups),
    )
    if algorithm == "auto" and _autotune.active:

        def run(name, target):
            conv2d_grad_input(grad_y, weight, target, *geometry, name)

        algorithm, written = _tuned("grad_input", shapes, geometry, run, grad_x, grad_y, weight)
        if written:
            return
    algorithm, flipped = _choice(
        "grad_input", algorithm, shapes, geometry, grad_y=grad_y, weight=weight
    )
    step = _grad_input_step(algorithm, flipped, grad_y.dtype, *geometry)
    step(grad_y, None, weight, grad_x, None, None, get_num_threads())


def _winograd_forward(x, weight, bias, y, padding, dilation, relu):
    """y = conv2d(x, weight) (+ bias) (then ReLU) by Winograd F(4x4, 3x3), stride 1, one group.

    x (N, C, H, W), weight (F, C, 3, 3), bias (F,) or None, y (N, F, OH, OW) written in full, all
    float32 and C-contiguous; padding (top, left), bottom and right following from OH, OW;
    dilation (dh, dw) by sub-grid addressing. Accurate to about 3e-6 relative to max|y|
    (tests/test_winograd.py bounds it by 1e-5). The kernel has its own GEMM (OpenBLAS repacked
    the transformed weights for every block): BLAS's threads need no limit. Returns whether
    every output came out finite (else y must be computed again on an exact path).
    """
    bias, has_bias = _bias_or_empty(bias, x.dtype)
    return _winograd.forward(
        x, weight, bias, y, *padding, *dilation, has_bias, relu, get_num_threads()
    )


def _winograd_grad_input(grad_y, weight, grad_x, padding, dilation, num_threads=None):
    """grad_x of a stride-1, one-group 3x3 convolution by Winograd F(4x4, 3x3): the
    convolution of grad_y, padded by 2 * d - the forward padding (negative is fine: out-of-image
    taps read as zeros), with the weights rotated 180 degrees and transposed (F <-> C), which
    the kernel's weight transform reads in place. grad_y (N, F, OH, OW), weight (F, C, 3, 3),
    grad_x (N, C, H, W) written in full; padding (top, left) of the forward convolution;
    num_threads None: get_num_threads()."""
    nt = get_num_threads() if num_threads is None else num_threads
    _winograd.grad_input(grad_y, weight, grad_x, *padding, *dilation, nt)


def _winograd_grad_weight(grad_y, x, grad_weight, padding, dilation, num_threads):
    """grad_weight of a stride-1, one-group 3x3 convolution by Winograd F(3x3, 4x4): per tile of
    4x4 outputs, G^T [(A grad_y A^T) . (B^T x B)] G, the products summed over tiles in the
    Winograd domain first (src/winograd_wgrad.h). grad_y (N, F, OH, OW), x (N, C, H, W),
    grad_weight (F, C, 3, 3) written in full, float32 or float64; padding (top, left) and
    dilation (dh, dw) of the forward convolution. The kernel has its own GEMM: BLAS's threads
    need no limit. Bitwise the same for any thread count."""
    _winograd.grad_weight(grad_y, x, grad_weight, *padding, *dilation, num_threads)


@functools.lru_cache(maxsize=_STEPS)
def _grad_weight_step(algorithm, dtype, stride, padding, dilation, groups):
    """The grad-weight step (grad_y, x -> grad_weight) by `algorithm`."""
    if algorithm == "fft":
        return lambda gy, x, w, gx, gw, gb, nt: _fft.conv2d_grad_weight(
            gy, x, gw, stride, padding, dilation, groups
        )
    if algorithm == "winograd":
        return lambda gy, x, w, gx, gw, gb, nt: _winograd_grad_weight(
            gy, x, gw, padding, dilation, nt
        )
    args = (*stride, *padding, *dilation, groups)
    if algorithm == "direct":
        direct, no_bias = _direct.typed("grad_weight", dtype), _NO_BIAS[np.dtype(dtype)]
        return lambda gy, x, w, gx, gw, gb, nt: direct(gy, x, gw, no_bias, False, *args, nt)
    if algorithm == "matmul":

        def run(gy, x, w, gx, gw, gb, nt):
            x2, gw2, gy2 = _matrices(x, gw, gy)
            with blas_single_thread:
                _dense.linear_grad_weight(gy2, x2, gw2, nt)

        return run
    kernel = (_depthwise if algorithm == "depthwise" else _conv).typed("grad_weight", dtype)

    def run(gy, x, w, gx, gw, gb, nt):
        with blas_single_thread:
            kernel(gy, x, gw, *args, nt)

    return run


def conv2d_grad_weight(grad_y, x, grad_weight, stride, padding, dilation, groups, algorithm):
    shapes, geometry = (
        (x.shape, grad_weight.shape, grad_y.shape),
        (stride, padding, dilation, groups),
    )
    if algorithm == "auto" and _autotune.active:
        algorithm, written = _tuned_grad_weight(grad_y, x, grad_weight, shapes, geometry)
        if written:
            return
    algorithm, _ = _choice("grad_weight", algorithm, shapes, geometry, grad_y=grad_y, x=x)
    step = _grad_weight_step(algorithm, grad_y.dtype, *geometry)
    step(grad_y, x, None, None, grad_weight, None, get_num_threads())


def _tuned_grad_weight(grad_y, x, grad_weight, shapes, geometry):
    def run(name, target):
        conv2d_grad_weight(grad_y, x, target, *geometry, name)

    return _tuned("grad_weight", shapes, geometry, run, grad_weight, grad_y, x)


@functools.lru_cache(maxsize=_STEPS)
def _grad_weight_bias_step(algorithm, dtype, stride, padding, dilation, groups):
    """The step of grad-weight and grad-bias (grad_y, x -> grad_weight, grad_bias) where
    `algorithm` computes both in one pass over grad_y (the direct and depthwise kernels), else
    None."""
    args = (*stride, *padding, *dilation, groups)
    if algorithm == "direct":
        direct = _direct.typed("grad_weight", dtype)
        return lambda gy, x, w, gx, gw, gb, nt: direct(gy, x, gw, gb, True, *args, nt)
    if algorithm == "depthwise":
        depthwise = _depthwise.typed("grad_weight_bias", dtype)
        return lambda gy, x, w, gx, gw, gb, nt: depthwise(gy, x, gw, gb, *args, nt)
    return None


def conv2d_grad_weight_bias(grad_y, x, grad_weight, grad_bias, stride, padding, dilation, groups):
    """grad_weight and grad_bias by the planner's choice: from one pass over grad_y on the direct
    and depthwise kernels (LeNet-5 at batch 64: the separate grad-bias pass was ~0.2 ms of a
    7 ms step), else the two ops, grad-bias first where the choice asks whether grad_y is
    finite: its sums answer that (a sum of values holding an inf or NaN is not finite), where a
    pass of its own cost 0.38 ms on 8 x 64 x 56 x 56 (Ice Lake-SP, one thread), and the kernel
    runs as chosen (conv2d_grad_weight would check the operands again)."""
    shapes, geometry = (
        (x.shape, grad_weight.shape, grad_y.shape),
        (stride, padding, dilation, groups),
    )
    algorithm = "auto"
    if _autotune.active:
        algorithm, _ = _tuned_grad_weight(grad_y, x, grad_weight, shapes, geometry)
    summed = []

    def grad_y_finite():
        conv2d_grad_bias(grad_y, grad_bias)
        summed.append(True)
        # an overflow of finite values (float64, or a float32 sum past its range): the full check
        return bool(np.isfinite(grad_bias).all()) or _finite(grad_y)

    checks = {"grad_y": grad_y_finite}
    algorithm, _ = _choice("grad_weight", algorithm, shapes, geometry, checks, grad_y=grad_y, x=x)
    step = _grad_weight_bias_step(algorithm, grad_y.dtype, *geometry)
    if step is not None:
        step(grad_y, x, None, None, grad_weight, grad_bias, get_num_threads())
        return
    step = _grad_weight_step(algorithm, grad_y.dtype, *geometry)
    step(grad_y, x, None, None, grad_weight, None, get_num_threads())
    if not summed:
        conv2d_grad_bias(grad_y, grad_bias)


class _OperandsAsked(Exception):
    """The planner asked for an operand's values (planner.for_operands' `finite`)."""


def _fixed_choice(pass_, algorithm, conv, level):
    """planner.for_operands' answer for `pass_` of `conv` where no operand's values decide it
    (no finiteness asked: the answer for any operands of these shapes), else None."""

    def finite(name):
        raise _OperandsAsked

    try:
        return _planner.for_operands(algorithm, pass_, conv, level, finite)
    except _OperandsAsked:
        return None


_OPERAND_INDEX = {"grad_y": 0, "x": 1, "weight": 2}  # in a step's arguments


def _grad_input_prepared(algorithm, conv, level, dtype, geometry):
    """The grad-input step of conv2d_backward_prepared, or None (the ops run one by one): by
    planner.for_operands' answer where no operand's values decide it; where one operand's
    finiteness does (the direct kernels' flipped forward multiplies padding by the weights, so
    a weight that is not finite sends it to GEMM: LeNet-5's conv2), a step that measures it as
    the op does (_finite) and runs the answer's kernel."""
    asked = []

    def finite_then(name):
        asked.append(name)
        return True

    when_finite = _planner.for_operands(algorithm, "grad_input", conv, level, finite_then)
    if not asked:
        return _grad_input_step(*when_finite, dtype, *geometry)
    name = asked[0]
    if any(other != name for other in asked):
        return None

    def not_finite(other):
        if other != name:
            raise _OperandsAsked
        return False

    try:
        otherwise = _planner.for_operands(algorithm, "grad_input", conv, level, not_finite)
    except _OperandsAsked:
        return None
    index = _OPERAND_INDEX[name]
    finite_step = _grad_input_step(*when_finite, dtype, *geometry)
    other_step = _grad_input_step(*otherwise, dtype, *geometry)

    def run(gy, x, w, gx, gw, gb, nt):
        step = finite_step if _finite((gy, x, w)[index]) else other_step
        step(gy, x, w, gx, gw, gb, nt)

    return run


def _backward_steps(
    x_shape,
    w_shape,
    y_shape,
    stride,
    padding,
    dilation,
    groups,
    dtype,
    algorithm,
    wants_input,
    wants_weight,
    wants_bias,
    level,
):
    """The steps conv2d_backward_prepared runs for every call of these arguments, in the order
    and with the kernels of Eager.conv2d_backward's ops (grad-input; grad-weight and grad-bias in
    one backend call where the planner fuses them, else one each); () where a choice depends on
    the operands' values or an array is empty (the ops then run one by one)."""
    conv = _problem(x_shape, w_shape, y_shape, stride, padding, dilation, groups, dtype)
    if not _planner.nonempty(conv):
        return ()
    geometry = (stride, padding, dilation, groups)
    steps = []
    if wants_input:
        step = _grad_input_prepared(algorithm, conv, level, dtype, geometry)
        if step is None:
            return ()
        steps.append(step)
    fused = wants_weight and wants_bias
    if fused and _planner.fuses("grad_weight_bias", algorithm, conv, level):
        chosen = _fixed_choice("grad_weight", algorithm, conv, level)
        if chosen is None:
            return ()
        both = _grad_weight_bias_step(chosen[0], dtype, *geometry)
        if both is not None:
            steps.append(both)
            return tuple(steps)
        algorithm = chosen[0]  # conv2d_grad_weight_bias: the two ops, the weight's by this
    if wants_weight:
        chosen = _fixed_choice("grad_weight", algorithm, conv, level)
        if chosen is None:
            return ()
        steps.append(_grad_weight_step(chosen[0], dtype, *geometry))
    if wants_bias:
        steps.append(_grad_bias_step(dtype))
    return tuple(steps)


# conv2d_backward_prepared's steps by call: bounded; the key holds everything the planner's
# answers depend on (shapes, geometry, dtype, algorithm, the gradients asked for, the direct
# kernels' SIMD level); the thread count is read per call; autotuning bypasses it.
_BACKWARDS = Memo(1024)


def conv2d_backward_prepared(
    grad_y, x, weight, grad_x, grad_weight, grad_bias, stride, padding, dilation, groups, algorithm
):
    """Eager.conv2d_backward's passes in one call: grad_x, grad_weight, grad_bias (each the
    array to write, or None: not asked for) of conv2d(x, weight), bitwise what the ops give one
    by one, by steps prepared once per signature (a small call spent ~10 us deciding the same
    things again in each op). Not in OPS (a CPU extra). Returns False, having written nothing,
    where the steps would depend on more than the signature (autotuning on, an operand's
    values asked for by the planner, an empty array): the caller then runs the ops."""
    if _autotune.active:
        return False
    key = (
        x.shape,
        weight.shape,
        grad_y.shape,
        stride,
        padding,
        dilation,
        groups,
        grad_y.dtype,
        algorithm,
        grad_x is not None,
        grad_weight is not None,
        grad_bias is not None,
        _direct_module.level(),
    )
    steps = _BACKWARDS.get(key)
    if steps is None:
        steps = _backward_steps(*key)
        _BACKWARDS.remember(key, steps)
    if not steps:
        return False
    nt = get_num_threads()
    for step in steps:
        step(grad_y, x, weight, grad_x, grad_weight, grad_bias, nt)
    return True


def conv2d_forward_and_grad_weight(
    x, weight, y, grad_y, grad_weight, stride, padding, dilation, groups
):
    """y = conv2d(x, weight) and grad_weight = conv2d_grad_weight(grad_y, x) (grad_y shaped like
    y), each by the planner's choice. Not in OPS (a CPU extra, called where conv2d_fuses says
    "forward_grad_weight"): the two gradients of a transposed convolution. When both passes take
    im2col + GEMM, one im2col per tile serves both GEMMs, bitwise the two calls' results
    (4x4 stride-2 8x64x28x28 -> 32x56x56: 22.8 -> 20.0 ms on one thread)."""
    shapes, geometry = (x.shape, weight.shape, y.shape), (stride, padding, dilation, groups)
    forward = backward = "auto"
    if _autotune.active:
        forward, _ = _tuned(
            "forward",
            shapes,
            geometry,
            lambda name, target: conv2d_forward(x, weight, None, target, *geometry, False, name),
            y,
            x,
            weight,
        )
        backward, _ = _tuned_grad_weight(grad_y, x, grad_weight, shapes, geometry)
    if (
        _choice("forward", forward, shapes, geometry, x=x, weight=weight)[0]
        == "gemm"
        == _choice("grad_weight", backward, shapes, geometry, grad_y=grad_y, x=x)[0]
    ):
        with blas_single_thread:
            _conv.forward_and_grad_weight(
                x,
                weight,
                y,
                grad_y,
                grad_weight,
                *stride,
                *padding,
                *dilation,
                groups,
                get_num_threads(),
            )
        return
    conv2d_forward(x, weight, None, y, stride, padding, dilation, groups, False, forward)
    conv2d_grad_weight(grad_y, x, grad_weight, stride, padding, dilation, groups, backward)


@functools.lru_cache(maxsize=None)  # one per dtype
def _grad_bias_step(dtype):
    """The grad-bias step (grad_y -> grad_bias)."""
    kernel = _conv.typed("grad_bias", dtype)
    return lambda gy, x, w, gx, gw, gb, nt: kernel(gy, gb, nt)


def conv2d_grad_bias(grad_y, grad_bias):
    _conv.grad_bias(grad_y, grad_bias, get_num_threads())


def max_pool2d_forward(x, y, indices, kernel, stride, padding, dilation):
    _pool.max_forward(x, y, indices, *kernel, *stride, *padding, *dilation, get_num_threads())


def max_pool2d_backward(grad_y, indices, grad_x):
    """grad_x: grad_y scattered at the indices; ValueError if one lies outside [0, H*W)."""
    if _pool.max_backward(grad_y, indices, grad_x, get_num_threads()):
        H, W = grad_x.shape[2:]
        raise ValueError(
            f"indices must lie in [0, H*W) = [0, {H * W}) for input_shape {tuple(grad_x.shape)}"
        )


def adaptive_max_pool2d_forward(x, y, indices, windows_h, windows_w):
    rows, cols = (np.asarray(w, np.int64).reshape(-1, 2) for w in (windows_h, windows_w))
    _pool.adaptive_max_forward(x, y, indices, rows, cols, get_num_threads())


def avg_pool2d_forward(x, y, kernel, stride, padding, count_include_pad, divisor_override):
    _pool.avg_forward(
        x,
        y,
        *kernel,
        *stride,
        *padding,
        count_include_pad,
        divisor_override or 0,
        get_num_threads(),
    )


def avg_pool2d_backward(
    grad_y, grad_x, kernel, stride, padding, count_include_pad, divisor_override
):
    _pool.avg_backward(
        grad_y,
        grad_x,
        *kernel,
        *stride,
        *padding,
        count_include_pad,
        divisor_override or 0,
        get_num_threads(),
    )


def relu_backward(grad_y, y, grad_x):
    _dense.relu_backward(grad_y.reshape(-1), y.reshape(-1), grad_x.reshape(-1), get_num_threads())


def linear_forward(x, weight, bias, y, relu):
    bias, has_bias = _bias_or_empty(bias, x.dtype)
    with blas_single_thread:
        _dense.linear_forward(x, weight, bias, y, has_bias, relu, get_num_threads())


def linear_backward(grad_y, x, weight, grad_x, grad_weight, grad_bias):
    with blas_single_thread:
        if grad_x is not None:
            _dense.linear_grad_input(grad_y, weight, grad_x, get_num_threads())
        if grad_weight is not None:
            _dense.linear_grad_weight(grad_y, x, grad_weight, get_num_threads())
    if grad_bias is not None:
        _dense.column_sums(grad_y, grad_bias)


def softmax_cross_entropy_forward(logits, labels, log_probs, losses):
    _dense.softmax_xent_forward(logits, labels, log_probs, losses, get_num_threads())


def softmax_cross_entropy_backward(log_probs, labels, grad_logits, scale):
    _dense.softmax_xent_backward(log_probs, labels, grad_logits, float(scale), get_num_threads())


def adam_update(params, grads, exp_avgs, exp_avg_sqs, steps, lr, beta1, beta2, eps, weight_decay):
    """One Adam step over every parameter, in place: params[i], exp_avgs[i], exp_avg_sqs[i]
    (C-contiguous, of one shape and dtype per i); steps[i] >= 1 counts this step. One kernel
    call per dtype, its parameters' chunks spread over the threads."""
    for columns in _by_dtype(params, grads, exp_avgs, exp_avg_sqs, steps):
        _optim.adam(*columns, lr, beta1, beta2, eps, weight_decay, get_num_threads())


def sgd_update(params, grads, buffers, firsts, lr, momentum, nesterov, weight_decay):
    """One SGD step over every parameter, in place; buffers[i] (momentum, None when momentum is
    0) starts as the gradient where firsts[i]. One kernel call per dtype."""
    for columns in _by_dtype(params, grads, buffers, firsts):
        _optim.sgd(*columns, lr, momentum, nesterov, weight_decay, get_num_threads())


def _by_dtype(params, *others):
    """The lists (params, *others) (one entry per parameter) split by the parameters' dtype:
    one tuple of lists per dtype, in order of first appearance."""
    dtype = params[0].dtype if params else None
    if all(p.dtype == dtype for p in params):  # the usual case: one dtype (or none)
        return [(list(params), *map(list, others))] if params else []
    groups = {}
    for i, p in enumerate(params):
        groups.setdefault(p.dtype, []).append(i)
    return [tuple([c[i] for i in picked] for c in (params, *others)) for picked in groups.values()]
