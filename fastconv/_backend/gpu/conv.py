"""The convolution ops of the GPU backend (re-exported by fastconv._backend.gpu.ops).

Implicit GEMMs (fastconv/_backend/gpu/cuda/conv_igemm.cu, conv_wgrad.cu) for grouped and dense
convolutions, direct kernels (conv_depthwise.cu) when each group has one input channel. A launch
plan is built once per problem shape and device (:func:`_plan`): tile shape, split-K, the k
tables and phase rows uploaded to the device, the compiled kernels and the constant kernel
arguments. A call then only looks its plan up and launches: no host work proportional to the
problem, no allocation (after the first call on a stream), no host synchronisation.

The split-K workspace a plan writes and then reduces is kept per CUDA stream
(:meth:`_Plan.workspace`): two streams running the same shape at once would otherwise write
and read one buffer concurrently. The read-only tables are shared by all streams.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from ... import _compat
from . import plans as gpu_plans
from . import precision as gpu_precision
from .kernels import (
    REDUCE_THREADS,
    _cdiv,
    _i32,
    _i64,
    _kernel,
    _launch_1d,
    _launch_rows,
    _splits,
    current_stream,
    device_info,
)

_plans: dict = {}  # (what, device, dtype, shapes...) -> _Plan; see clear_plans
# (device, stream, planes, HW, OHW) -> (head, next) of max_pool2d_backward (ops.py)
_pool_work: dict = {}
_plans_lock = threading.Lock()
_FLAGS = (np.int32(0), np.int32(1))


def clear_plans():
    """Forget every cached launch plan (and free its tables and workspaces, those of every
    stream, and max_pool2d_backward's)."""
    with _plans_lock:
        _plans.clear()
        _pool_work.clear()


@functools.lru_cache(maxsize=512)
def _fast_div(d):
    """FastDiv (common.cuh) multiplier and shift of divisor d, as the kernels' unsigned ints."""
    return tuple(np.uint32(v) for v in gpu_plans.fast_div(d))


def _conv_args(x_shape, w_shape, y_shape, stride, padding, dilation):
    """Kernel arguments N, C, H, W, F, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw in .cu types."""
    N, C, H, W = x_shape
    F, Cg, KH, KW = w_shape
    if F * Cg * KH * KW >= 2**31:
        raise ValueError("fastconv GPU kernels need weight.size < 2**31")
    return (
        *_i64(N),
        *_i32(C),
        *_i64(H, W),
        *_i32(F),
        *_i64(y_shape[2], y_shape[3]),
        *_i32(KH, KW, *stride, *padding, *dilation),
    )


def _check(dtype, *arrays):
    """RawKernel reads whatever it is given: refuse what a kernel would misread."""
    for a in arrays:
        if a.dtype != dtype or not a.flags.c_contiguous:
            raise ValueError(
                f"fastconv: GPU kernels need C-contiguous {dtype} arrays, got "
                f"{'' if a.flags.c_contiguous else 'non-contiguous '}{a.dtype}"
            )


class _Plan:
    """What one convolution pass launches for one shape, dtype and device.

    ``make_work`` (None: no split reduction) allocates the workspace the GEMM writes its split
    partial sums to; ``works`` holds one per CUDA stream (its ``ptr``), see :meth:`workspace`.
    """

    __slots__ = (
        "kernel",
        "grid",
        "block",
        "args",
        "reduce",
        "rgrid",
        "rargs",
        "make_work",
        "works",
        "extra",
    )

    def workspace(self):
        """The split workspace of the current CUDA stream, allocated on its first use there.

        Keyed by the stream (the plan is already per device and shape): kernels queued on two
        streams may run at the same time, and one shared buffer would then be written by both
        GEMMs and read by both reductions. On one stream the launches are ordered, so reusing
        the stream's buffer from call to call is safe."""
        stream = current_stream()
        work = self.works.get(stream)
        if work is None:
            work = self.works.setdefault(stream, self.make_work())
        return work


def _tile_launch_ok(tile, dtype, name):
    info = device_info()
    threads = gpu_plans.threads(tile)
    shared = 2 * gpu_plans.BK * (tile[0] + tile[1] + 8) * np.dtype(dtype).itemsize + 16
    if threads > info.max_threads or shared > info.shared_mem:
        raise RuntimeError(
            f"fastconv: this GPU allows {info.max_threads} threads and {info.shared_mem} bytes of "
            f"shared memory per block; kernel {name} needs {threads} and {shared}"
        )
    return info


def _reduce_grid(n):
    info = device_info()
    return (max(1, min(_cdiv(n, 256), 32 * info.sm_count, info.max_grid[0])),)


def _gemm_kernel(name, dtype, tile, precision):
    """conv_igemm / conv_wgrad (fp32, conv_igemm.cu / conv_wgrad.cu) or their tensor-core
    variant for ``precision`` (conv_tc.cu), compiled for ``tile``."""
    if precision == "fp32":
        return _kernel(f"{name}.cu", name, dtype, tile=tile)
    return _kernel("conv_tc.cu", name + gpu_precision.SUFFIX[precision], dtype, tile=tile)


def _build_igemm(cupy, what, dtype, x_shape, w_shape, y_shape, geom, precision):
    stride, padding, dilation, groups = geom
    info = device_info()
    phases_of = gpu_plans.forward_phases if what == "forward" else gpu_plans.grad_input_phases
    phases = phases_of(x_shape, w_shape, y_shape, stride, padding, dilation, groups)
    gp = gpu_plans.gemm_plan(phases, groups, info.sm_count, info.max_grid, dtype)
    _tile_launch_ok(gp.tile, dtype, "conv_igemm")
    out_size = int(np.prod(y_shape if what == "forward" else x_shape))
    plan = _Plan()
    plan.kernel = _gemm_kernel("conv_igemm", dtype, gp.tile, precision)
    plan.grid, plan.block = gp.grid, (gpu_plans.threads(gp.tile),)
    geo, ktab = cupy.asarray(gp.geo), cupy.asarray(gp.ktab.reshape(-1))
    plan.works = {}
    plan.make_work = None
    if gp.splits > 1:
        plan.make_work = functools.partial(cupy.empty, (gp.splits, out_size), dtype)
    exact = what == "grad_input"  # a miss adds nothing there, even against an inf weight
    plan.args = (geo, ktab, *_i32(groups, len(phases), gp.splits))
    plan.extra = (*_i32(exact), *_i64(out_size))
    plan.reduce = None
    if gp.splits > 1:
        plane = y_shape[2] * y_shape[3] if what == "forward" else 1
        F = w_shape[0] if what == "forward" else 1
        plan.reduce = _kernel("conv_igemm.cu", "splitk_reduce", dtype)
        plan.rgrid = _reduce_grid(out_size)
        plan.rargs = (*_i64(out_size), *_i32(gp.splits), *_i64(plane), *_i32(F))
    return plan


def _build_wgrad(cupy, dtype, x_shape, w_shape, y_shape, geom, precision):
    stride, padding, dilation, groups = geom
    info = device_info()
    tile, grid, splits, per, ktab = gpu_plans.wgrad_plan(
        x_shape, w_shape, y_shape, *geom, info.sm_count, info.max_grid, dtype
    )
    _tile_launch_ok(tile, dtype, "conv_wgrad")
    F, Cg, KH, KW = w_shape
    N, C, H, W = x_shape
    OH, OW = y_shape[2:]
    plan = _Plan()
    plan.kernel = _gemm_kernel("conv_wgrad", dtype, tile, precision)
    plan.grid, plan.block = grid, (gpu_plans.threads(tile),)
    plan.args = (cupy.asarray(ktab.reshape(-1)),)
    plan.extra = (
        *_i64(N),
        *_i32(C),
        *_i64(H, W),
        *_i32(F),
        *_i64(OH, OW),
        *_i32(*stride, *padding, groups, Cg * KH * KW, splits),
        *_i64(per),
        *_fast_div(OH * OW),
        *_fast_div(OW),
    )
    plan.works = {}
    plan.make_work = None
    plan.reduce = None
    if splits > 1:
        K = F * Cg * KH * KW
        plan.make_work = lambda: (cupy.empty((splits, K), dtype), cupy.empty((splits, F), dtype))
        plan.reduce = _kernel("conv_wgrad.cu", "wgrad_reduce", dtype)
        plan.rgrid = _reduce_grid(F * Cg * KH * KW + F)
        plan.rargs = (*_i64(F * Cg * KH * KW), *_i32(F, splits))
    return plan


def _plan(what, dtype, x_shape, w_shape, y_shape, geom):
    """The cached plan of a pass ("forward", "grad_input", "grad_weight") on the current
    device, in the precision gpu_precision says; built (tables uploaded, workspace allocated)
    on first use."""
    cupy = _compat.require_cupy()
    # The device's limits are part of the key: a plan is sized for them (and tests change them).
    dev, info = cupy.cuda.runtime.getDevice(), device_info()
    precision = gpu_precision.effective(dtype.char, info.cc_major)
    key = (what, dev, info, precision, dtype.char, x_shape, w_shape, y_shape, *geom)
    plan = _plans.get(key)
    if plan is None:
        with _plans_lock:
            plan = _plans.get(key)
            if plan is None:
                if what == "grad_weight":
                    plan = _build_wgrad(cupy, dtype, x_shape, w_shape, y_shape, geom, precision)
                else:
                    shapes = (x_shape, w_shape, y_shape)
                    plan = _build_igemm(cupy, what, dtype, *shapes, geom, precision)
                _plans[key] = plan
    return plan


def _run_igemm(plan, A, B, bias, out, relu):
    """conv_igemm (+ splitk_reduce): out = act(A * gather(B) + bias)."""
    has_bias = _FLAGS[bias is not None]
    b = bias if bias is not None else A  # never read when has_bias == 0
    relu = _FLAGS[bool(relu)]
    target = out if plan.reduce is None else plan.workspace()
    plan.kernel(plan.grid, plan.block, (A, B, b, target, *plan.args, has_bias, relu, *plan.extra))
    if plan.reduce is not None:
        args = (target, b, out, *plan.rargs, has_bias, relu)
        plan.reduce(plan.rgrid, (256,), args)


def conv2d_plan(x_shape, w_shape, y_shape, stride, padding, dilation, groups, dtype, algorithm):
    """What runs, as the CPU backend's conv2d_plan says it: the algorithms ("auto" resolved),
    the fusions (grad-weight + grad-bias from one launch under "auto"; no forward + grad-weight
    kernel), where each choice comes from; nothing measured (no autotuning on the GPU)."""
    _compat.require_cupy()
    chosen = {p: gpu_plans.resolve(algorithm, p, w_shape) for p in gpu_plans.PASSES}
    source = "forced" if algorithm != "auto" else "heuristic"
    return {
        "algorithms": chosen,
        "fusions": {
            "grad_weight_bias": gpu_plans.fuses("grad_weight_bias", algorithm, y_shape),
            "forward_grad_weight": gpu_plans.fuses("forward_grad_weight", algorithm, y_shape),
        },
        "sources": dict.fromkeys(gpu_plans.PASSES, source),
        "seconds": {},
    }


def conv2d_algorithms(x_shape, w_shape, y_shape, stride, padding, dilation, groups, dtype):
    """{pass: the algorithms that can compute it}."""
    _compat.require_cupy()
    return {p: gpu_plans.runnable(p, w_shape) for p in gpu_plans.PASSES}


def conv2d_fuses(
    fusion, x_shape, w_shape, y_shape, stride, padding, dilation, groups, dtype, algorithm
):
    """Whether the pair of passes `fusion` runs as one call (plans.fuses)."""
    _compat.require_cupy()
    return gpu_plans.fuses(fusion, algorithm, y_shape)


def conv2d_forward(x, weight, bias, y, stride, padding, dilation, groups, relu, algorithm):
    """y (N,F,OH,OW) = conv(x (N,C,H,W), weight (F,C//groups,KH,KW)) + bias (F,) or None.

    ReLU applied when ``relu``. padding is (pad_top, pad_left); bottom/right follow from OH/OW.
    """
    _compat.require_cupy()
    algorithm = gpu_plans.resolve(algorithm, "forward", weight.shape)
    if y.size == 0:
        return
    with x.device:
        dtype = x.dtype
        _check(dtype, x, weight, y, *(() if bias is None else (bias,)))
        geom = (tuple(stride), tuple(padding), tuple(dilation), groups)
        if algorithm == "depthwise":
            args = _conv_args(x.shape, weight.shape, y.shape, stride, padding, dilation)
            b = bias if bias is not None else weight
            _launch_1d(
                "conv_depthwise.cu",
                "depthwise_forward",
                dtype,
                y.size,
                (x, weight, b, y, *args, *_i32(bias is not None, relu)),
            )
            return
        plan = _plan("forward", dtype, x.shape, weight.shape, y.shape, geom)
        _run_igemm(plan, weight, x, bias, y, relu)


def conv2d_grad_input(grad_y, weight, grad_x, stride, padding, dilation, groups, algorithm):
    """grad_x (N,C,H,W) from grad_y (N,F,OH,OW) and weight (F,C//groups,KH,KW): a gather,
    one dense GEMM per stride phase."""
    _compat.require_cupy()
    algorithm = gpu_plans.resolve(algorithm, "grad_input", weight.shape)
    if grad_x.size == 0:
        return
    with grad_x.device:
        dtype = grad_x.dtype
        _check(dtype, grad_y, weight, grad_x)
        if algorithm == "depthwise":
            args = _conv_args(grad_x.shape, weight.shape, grad_y.shape, stride, padding, dilation)
            _launch_1d(
                "conv_depthwise.cu",
                "depthwise_grad_input",
                dtype,
                grad_x.size,
                (grad_y, weight, grad_x, *args),
            )
            return
        geom = (tuple(stride), tuple(padding), tuple(dilation), groups)
        plan = _plan("grad_input", dtype, grad_x.shape, weight.shape, grad_y.shape, geom)
        _run_igemm(plan, weight, grad_y, None, grad_x, False)


def conv2d_grad_weight(grad_y, x, grad_weight, stride, padding, dilation, groups, algorithm):
    """grad_weight (F,C//groups,KH,KW) = sum over N, OH, OW of grad_y (N,F,OH,OW) x im2col(x).

    The reduction over N*OH*OW is split over blocks; splits are summed in a fixed order.
    """
    _compat.require_cupy()
    gpu_plans.resolve(algorithm, "grad_weight", grad_weight.shape)
    conv2d_grad_weight_bias(grad_y, x, grad_weight, None, stride, padding, dilation, groups)


def conv2d_grad_weight_bias(grad_y, x, grad_weight, grad_bias, stride, padding, dilation, groups):
    """conv2d_grad_weight, and grad_bias (F,) (or None) from the same pass over grad_y: one
    GEMM launch (plus one for the split sums), where the two ops take two or three apiece.

    An op of the backend interface: conv2d_backward calls it when both gradients are wanted
    (the CPU backend's computes them in one pass on its direct kernels)."""
    cupy = _compat.require_cupy()
    F, Cg, KH, KW = grad_weight.shape
    P = grad_y.shape[0] * grad_y.shape[2] * grad_y.shape[3]
    if grad_weight.size == 0:
        if grad_bias is not None and grad_bias.size:
            conv2d_grad_bias(grad_y, grad_bias)
        return
    with x.device:
        if P == 0:
            grad_weight.fill(0)
            if grad_bias is not None:
                grad_bias.fill(0)
            return
        dtype = grad_weight.dtype
        _check(dtype, grad_y, x, grad_weight, *(() if grad_bias is None else (grad_bias,)))
        if gpu_plans.choose("grad_weight", grad_weight.shape) == "depthwise":
            _depthwise_grad_weight(cupy, grad_y, x, grad_weight, stride, padding, dilation)
            if grad_bias is not None:
                conv2d_grad_bias(grad_y, grad_bias)
            return
        geom = (tuple(stride), tuple(padding), tuple(dilation), groups)
        plan = _plan("grad_weight", dtype, x.shape, grad_weight.shape, grad_y.shape, geom)
        with_bias = _FLAGS[grad_bias is not None]
        if plan.reduce is None:
            out, bias_out = grad_weight, grad_bias if grad_bias is not None else grad_weight
        else:
            out, bias_out = plan.workspace()
        args = (grad_y, x, out, bias_out, *plan.args, *plan.extra, with_bias)
        plan.kernel(plan.grid, plan.block, args)
        if plan.reduce is not None:
            gb = grad_bias if grad_bias is not None else grad_weight  # unused without bias
            args = (out, bias_out, grad_weight, gb, *plan.rargs, with_bias)
            plan.reduce(plan.rgrid, (256,), args)


def _depthwise_grad_weight(cupy, grad_y, x, grad_weight, stride, padding, dilation):
    P = grad_y.shape[0] * grad_y.shape[2] * grad_y.shape[3]
    args = _conv_args(x.shape, grad_weight.shape, grad_y.shape, stride, padding, dilation)
    dtype = grad_weight.dtype
    splits, per = _splits(P, grad_weight.size, 8 * REDUCE_THREADS)
    part = grad_weight if splits == 1 else cupy.empty((splits, grad_weight.size), dtype)
    _launch_rows(
        "conv_depthwise.cu",
        "depthwise_grad_weight",
        dtype,
        grad_weight.size,
        splits,
        (grad_y, x, part, *args, *_i64(per)),
    )
    if splits > 1:
        _sum_splits(part, grad_weight, splits)


def _sum_splits(partial, out, splits):
    """out = partial.sum(axis=0) in a fixed order (partial: (splits, *out.shape))."""
    n = out.size
    _launch_1d("reduce.cu", "sum_splits", out.dtype, n, (partial, out, *_i64(n), *_i32(splits)))


def conv2d_grad_bias(grad_y, grad_bias):
    """grad_bias (F,) = grad_y (N,F,OH,OW) summed over N, OH, OW (deterministic)."""
    cupy = _compat.require_cupy()
    N, F, OH, OW = grad_y.shape
    if F == 0:
        return
    with grad_y.device:
        if N * OH * OW == 0:
            grad_bias.fill(0)
            return
        dtype = grad_y.dtype
        _check(dtype, grad_y, grad_bias)
        dev = cupy.cuda.runtime.getDevice()
        key = ("grad_bias", dev, device_info(), dtype.char, grad_y.shape)
        plan = _plans.get(key)
        if plan is None:
            plan = _plans[key] = _build_grad_bias(cupy, dtype, N, F, OH * OW)
        part = grad_bias if plan.make_work is None else plan.workspace()
        plan.kernel(plan.grid, plan.block, (grad_y, part, *plan.args))
        if plan.reduce is not None:
            plan.reduce(plan.rgrid, (256,), (part, grad_bias, *plan.rargs))


def _build_grad_bias(cupy, dtype, N, F, OHW):
    """conv2d_grad_bias_partial over `splits` ranges of N*OH*OW (+ sum_splits when > 1)."""
    if N * OHW >= 2**31:
        raise ValueError("fastconv GPU conv2d_grad_bias needs N*OH*OW < 2**31")
    info = device_info()
    splits, per = _splits(N * OHW, F, 8 * REDUCE_THREADS)
    plan = _Plan()
    plan.kernel = _kernel("reduce.cu", "conv2d_grad_bias_partial", dtype)
    plan.grid = (min(F, info.max_grid[0]), splits)
    plan.block = (REDUCE_THREADS,)
    plan.args = (*_i64(N), *_i32(F), *_i64(OHW, per), *_fast_div(OHW))
    plan.works = {}
    plan.make_work = functools.partial(cupy.empty, (splits, F), dtype) if splits > 1 else None
    plan.reduce = None
    if splits > 1:
        plan.reduce = _kernel("reduce.cu", "sum_splits", dtype)
        plan.rgrid = _reduce_grid(F)
        plan.rargs = (*_i64(F), *_i32(splits))
    return plan
