"""GPU backend: the backend interface of docs/INTERNALS.md over CuPy.

Same op names and signatures as ``fastconv._cpu``. Arguments arrive validated: C-contiguous
CuPy arrays of one float dtype (float32 or float64; ``indices``/``labels`` int64) on one
device, outputs preallocated with ``empty`` and fully written here. Every op returns None.

The kernels are C++ templates (float, double) in ``fastconv/kernels/*.cu``, read at run time
and compiled with NVRTC through ``cupy.RawModule`` the first time a file is needed on a device
(CuPy also caches the binaries on disk). RawKernel checks nothing about its arguments: every
launch here passes C-contiguous arrays and scalars of the exact C++ type (``int`` ->
numpy.int32, ``idx_t``/``long long`` -> numpy.int64, ``T`` -> the array's dtype), since a
Python int would be passed as a 64-bit integer and a float as a double.

Importing this module never imports CuPy (only ``_compat`` does); calling an op without CuPy
raises RuntimeError saying how to install it.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import _compat

OPS = (
    "conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight", "conv2d_grad_bias",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "relu_backward", "linear_forward", "linear_backward",
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
)

KERNEL_DIR = Path(__file__).resolve().parent / "kernels"

# Kernel file -> its __global__ templates; each is instantiated for float and double.
KERNELS = {
    "conv_implicit_gemm.cu": ("conv2d_forward_igemm", "conv2d_grad_input_igemm"),
    "conv_grad_weight.cu": ("conv2d_grad_weight_igemm",),
    "conv_depthwise.cu": ("depthwise_forward", "depthwise_grad_input", "depthwise_grad_weight"),
    "reduce.cu": ("sum_splits", "conv2d_grad_bias_partial"),
    "pool.cu": ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
                "avg_pool2d_backward"),
    "elementwise.cu": ("relu_backward", "bias_act", "softmax_xent_forward",
                       "softmax_xent_backward"),
}
NVRTC_OPTIONS = ("-std=c++17",)
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_INT64 = np.dtype(np.int64)

# Must match common.cuh.
GEMM_BM = GEMM_BN = 64
GEMM_BK = 16
GEMM_THREADS = 256
REDUCE_THREADS = 256

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.MULTILINE)


def name_expressions(filename):
    """The NVRTC name expressions compiled for a kernel file: ``name<float>``, ``name<double>``."""
    return [f"{name}<{ctype}>" for name in KERNELS[filename] for ctype in ("float", "double")]


def kernel_source(filename):
    """The text of kernels/<filename> with its local ``#include "x.cuh"`` lines pasted in.

    Pasting (rather than passing -I to NVRTC) makes the headers part of the text CuPy hashes
    for its on-disk cache, so editing a header can never reuse a stale binary.
    """
    seen = set()

    def expand(name):
        if name in seen:  # each header once, like #pragma once
            return ""
        seen.add(name)
        text = (KERNEL_DIR / name).read_text(encoding="utf-8")
        text = re.sub(r"^[ \t]*#[ \t]*pragma[ \t]+once[ \t]*$", "", text, flags=re.MULTILINE)
        return _INCLUDE.sub(lambda m: expand(m.group(1)), text)

    return expand(filename)


_modules = {}  # (filename, device id) -> {name expression: cupy.RawKernel}
_modules_lock = threading.Lock()


def _kernel(filename, name, dtype):
    """The compiled ``name<T>`` of kernels/<filename> for the current device, T from dtype."""
    cupy = _compat.require_cupy()
    expr = f"{name}<{_CTYPES[np.dtype(dtype)]}>"
    key = (filename, cupy.cuda.runtime.getDevice())
    kernels = _modules.get(key)
    if kernels is None:
        with _modules_lock:
            kernels = _modules.get(key)
            if kernels is None:
                kernels = _compile(cupy, filename, expr)
                _modules[key] = kernels
    return kernels[expr]


def _compile(cupy, filename, wanted):
    exprs = name_expressions(filename)
    try:
        module = cupy.RawModule(
            code=kernel_source(filename), options=NVRTC_OPTIONS, name_expressions=exprs
        )
        # get_function triggers the (lazy) compilation: do it now, inside the try.
        return {expr: module.get_function(expr) for expr in exprs}
    except Exception as exc:
        log = exc.get_message() if hasattr(exc, "get_message") else str(exc)
        raise RuntimeError(
            f"fastconv: CUDA kernel file {KERNEL_DIR / filename} failed to compile or load "
            f"(needed for kernel {wanted}; NVRTC options {' '.join(NVRTC_OPTIONS)}):\n{log}"
        ) from exc


class DeviceInfo(NamedTuple):
    max_threads: int  # per block
    shared_mem: int  # bytes per block (static + dynamic, without opt-in)
    sm_count: int
    max_grid: tuple  # (x, y, z)


_device_infos = {}


def device_info():
    """Launch limits of the current device (cached per device)."""
    cupy = _compat.require_cupy()
    rt = cupy.cuda.runtime
    dev = rt.getDevice()
    info = _device_infos.get(dev)
    if info is None:
        attr = lambda a: int(rt.deviceGetAttribute(a, dev))  # noqa: E731
        info = DeviceInfo(
            max_threads=attr(rt.cudaDevAttrMaxThreadsPerBlock),
            shared_mem=attr(rt.cudaDevAttrMaxSharedMemoryPerBlock),
            sm_count=attr(rt.cudaDevAttrMultiProcessorCount),
            max_grid=tuple(attr(a) for a in (rt.cudaDevAttrMaxGridDimX, rt.cudaDevAttrMaxGridDimY,
                                              rt.cudaDevAttrMaxGridDimZ)),
        )
        _device_infos[dev] = info
    return info


def _cdiv(a, b):
    return -(-a // b)


def _i32(*values):
    """numpy.int32 scalars for the kernels' ``int`` parameters (refusing silent wrap-around)."""
    for v in values:
        if not -(2**31) <= int(v) < 2**31:
            raise ValueError(f"fastconv GPU kernels need this size to fit in int32: {v}")
    return tuple(np.int32(v) for v in values)


def _i64(*values):
    """numpy.int64 scalars for the kernels' ``idx_t`` (long long) parameters."""
    return tuple(np.int64(v) for v in values)


def _launch(filename, name, dtype, grid, block, args):
    """Launch ``name<T>``. RawKernel reads whatever it is given, so refuse here what it would
    misread: an array that is not C-contiguous, or not of dtype T (int64 for indices/labels)."""
    dtype = np.dtype(dtype)
    for a in args:
        if isinstance(a, np.generic):
            continue
        if not a.flags.c_contiguous or a.dtype not in (dtype, _INT64):
            raise ValueError(f"fastconv: kernel {name} needs C-contiguous {dtype} arrays, got "
                             f"{'' if a.flags.c_contiguous else 'non-contiguous '}{a.dtype}")
    _kernel(filename, name, dtype)(grid, block, args)


def _launch_1d(filename, name, dtype, n, args):
    """Launch a grid-stride kernel over ``n`` elements (none when n == 0: CUDA refuses empty
    grids); a few waves of blocks per SM are enough."""
    if n == 0:
        return
    info = device_info()
    threads = min(256, info.max_threads)
    blocks = max(1, min(_cdiv(n, threads), 32 * info.sm_count, info.max_grid[0]))
    _launch(filename, name, dtype, (blocks,), (threads,), args)


def _launch_fixed(filename, name, dtype, grid, threads, shared_bytes, args):
    """Launch a kernel written for exactly ``threads`` threads and ``shared_bytes`` of static
    shared memory per block, after checking that this device allows them and the grid."""
    info = device_info()
    if threads > info.max_threads or shared_bytes > info.shared_mem:
        raise RuntimeError(
            f"fastconv: this GPU allows {info.max_threads} threads and {info.shared_mem} bytes of "
            f"shared memory per block; kernel {name} needs {threads} and {shared_bytes}"
        )
    if any(g > m for g, m in zip(grid, info.max_grid)):
        raise RuntimeError(f"fastconv: input too large for one launch of {name} (grid {grid})")
    _launch(filename, name, dtype, tuple(grid), (threads,), args)


def _launch_gemm(filename, name, dtype, n_cols, n_rows, z, args):
    """An implicit-GEMM kernel: a block per 64x64 output tile, z (groups[*splits]) grid-strided."""
    grid = (_cdiv(n_cols, GEMM_BN), _cdiv(n_rows, GEMM_BM), min(z, device_info().max_grid[2]))
    shared = 2 * GEMM_BK * (GEMM_BM + 1) * np.dtype(dtype).itemsize + 4 * GEMM_BN  # As, Bs, Hit
    _launch_fixed(filename, name, dtype, grid, GEMM_THREADS, shared, args)


def _launch_rows(filename, name, dtype, rows, splits, args):
    """A block-reduction kernel: x = rows (grid-strided), y = splits of each row's reduction."""
    grid = (min(rows, device_info().max_grid[0]), splits)
    shared = REDUCE_THREADS * np.dtype(dtype).itemsize
    _launch_fixed(filename, name, dtype, grid, REDUCE_THREADS, shared, args)


def _splits(total, base_blocks, min_per_split, align=1):
    """Cut a reduction over ``total`` items into contiguous splits for a deterministic 2-pass sum.

    Aims at ~4 blocks per SM in all (``base_blocks`` per split), each split holding at least
    ``min_per_split`` items (a multiple of ``align``). Returns (splits, items per split).
    """
    want = _cdiv(4 * device_info().sm_count, max(base_blocks, 1))
    splits = max(1, min(want, total // max(min_per_split, 1), 1024))
    per_split = _cdiv(_cdiv(max(total, 1), splits), align) * align
    return _cdiv(max(total, 1), per_split), per_split


def _sum_splits(partial, out, splits):
    """out = partial.sum(axis=0) in a fixed order (partial: (splits, *out.shape))."""
    n = out.size
    _launch_1d("reduce.cu", "sum_splits", out.dtype, n, (partial, out, *_i64(n), *_i32(splits)))


def _conv_args(x_shape, w_shape, y_shape, stride, padding, dilation):
    """Kernel arguments N, C, H, W, F, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw in .cu types."""
    N, C, H, W = x_shape
    F, Cg, KH, KW = w_shape
    if F * Cg * KH * KW >= 2**31:
        raise ValueError("fastconv GPU kernels need weight.size < 2**31")
    return (
        *_i64(N), *_i32(C), *_i64(H, W), *_i32(F), *_i64(y_shape[2], y_shape[3]),
        *_i32(KH, KW, *stride, *padding, *dilation),
    )


def conv2d_forward(x, weight, bias, y, stride, padding, dilation, groups, relu):
    """y (N,F,OH,OW) = conv(x (N,C,H,W), weight (F,C//groups,KH,KW)) + bias (F,) or None.

    ReLU applied when ``relu``. padding is (pad_top, pad_left); bottom/right follow from OH/OW.
    """
    _compat.require_cupy()
    if y.size == 0:
        return
    with x.device:
        args = _conv_args(x.shape, weight.shape, y.shape, stride, padding, dilation)
        flags = _i32(bias is not None, relu)
        b = bias if bias is not None else weight  # never read when has_bias == 0
        if weight.shape[1] == 1:  # depthwise (or C == 1): a GEMM would reduce over KH*KW only
            _launch_1d("conv_depthwise.cu", "depthwise_forward", x.dtype, y.size,
                       (x, weight, b, y, *args, *flags))
        else:
            _launch_gemm("conv_implicit_gemm.cu", "conv2d_forward_igemm", x.dtype,
                         y.size // y.shape[1], weight.shape[0] // groups, groups,
                         (x, weight, b, y, *args, *_i32(groups), *flags))


def conv2d_grad_input(grad_y, weight, grad_x, stride, padding, dilation, groups):
    """grad_x (N,C,H,W) from grad_y (N,F,OH,OW) and weight (F,C//groups,KH,KW): a gather."""
    _compat.require_cupy()
    if grad_x.size == 0:
        return
    with grad_x.device:
        args = _conv_args(grad_x.shape, weight.shape, grad_y.shape, stride, padding, dilation)
        if weight.shape[1] == 1:
            _launch_1d("conv_depthwise.cu", "depthwise_grad_input", grad_x.dtype, grad_x.size,
                       (grad_y, weight, grad_x, *args))
        else:
            _launch_gemm("conv_implicit_gemm.cu", "conv2d_grad_input_igemm", grad_x.dtype,
                         grad_x.size // grad_x.shape[1], weight.shape[1], groups,
                         (grad_y, weight, grad_x, *args, *_i32(groups)))


def conv2d_grad_weight(grad_y, x, grad_weight, stride, padding, dilation, groups):
    """grad_weight (F,C//groups,KH,KW) = sum over N, OH, OW of grad_y (N,F,OH,OW) x im2col(x).

    The reduction over N*OH*OW is split over blocks; splits are summed in a fixed order.
    """
    cupy = _compat.require_cupy()
    F, Cg, KH, KW = grad_weight.shape
    P = grad_y.shape[0] * grad_y.shape[2] * grad_y.shape[3]
    if grad_weight.size == 0:
        return
    with x.device:
        if P == 0:
            grad_weight.fill(0)
            return
        args = _conv_args(x.shape, grad_weight.shape, grad_y.shape, stride, padding, dilation)
        dtype = grad_weight.dtype
        if Cg == 1:
            splits, per = _splits(P, grad_weight.size, 8 * REDUCE_THREADS)
            part = grad_weight if splits == 1 else cupy.empty((splits, grad_weight.size), dtype)
            _launch_rows("conv_depthwise.cu", "depthwise_grad_weight", dtype, grad_weight.size,
                         splits, (grad_y, x, part, *args, *_i64(per)))
        else:
            Fg, K = F // groups, Cg * KH * KW
            base = _cdiv(K, GEMM_BN) * _cdiv(Fg, GEMM_BM) * groups
            splits, per = _splits(P, base, 16 * GEMM_BK, align=GEMM_BK)
            part = grad_weight if splits == 1 else cupy.empty((splits, grad_weight.size), dtype)
            _launch_gemm("conv_grad_weight.cu", "conv2d_grad_weight_igemm", dtype, K, Fg,
                         groups * splits,
                         (grad_y, x, part, *args, *_i32(groups, splits), *_i64(per)))
        if splits > 1:
            _sum_splits(part, grad_weight, splits)


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
        splits, per = _splits(N * OH * OW, F, 8 * REDUCE_THREADS)
        part = grad_bias if splits == 1 else cupy.empty((splits, F), grad_y.dtype)
        _launch_rows("reduce.cu", "conv2d_grad_bias_partial", grad_y.dtype, F, splits,
                     (grad_y, part, *_i64(N), *_i32(F), *_i64(OH * OW, per)))
        if splits > 1:
            _sum_splits(part, grad_bias, splits)


def _pool_args(x_shape, y_shape, kernel, stride, padding):
    """planes, H, W, OH, OW, KH, KW, sh, sw, ph, pw in the .cu types."""
    N, C, H, W = x_shape
    return (*_i64(N * C, H, W, y_shape[2], y_shape[3]), *_i32(*kernel, *stride, *padding))


def max_pool2d_forward(x, y, indices, kernel, stride, padding):
    """y, indices (N,C,OH,OW) = max and flat argmax ih*W+iw over the windows of x (N,C,H,W).

    First max wins; a NaN wins; padded cells never win.
    """
    _compat.require_cupy()
    with x.device:
        _launch_1d("pool.cu", "max_pool2d_forward", x.dtype, y.size,
                   (x, y, indices, *_pool_args(x.shape, y.shape, kernel, stride, padding)))


def max_pool2d_backward(grad_y, indices, grad_x):
    """grad_x (N,C,H,W) = scatter-add of grad_y (N,C,OH,OW) at indices (N,C,OH,OW)."""
    _compat.require_cupy()
    N, C, H, W = grad_x.shape
    OH, OW = grad_y.shape[2:]
    if grad_x.size == 0:
        return
    with grad_x.device:
        grad_x.fill(0)
        _launch_1d("pool.cu", "max_pool2d_backward", grad_x.dtype, grad_y.size,
                   (grad_y, indices, grad_x, *_i64(N * C, OH * OW, H * W)))


def avg_pool2d_forward(x, y, kernel, stride, padding, count_include_pad):
    """y (N,C,OH,OW) = window means of x (N,C,H,W); divisor KH*KW if count_include_pad,
    else the number of non-padded cells."""
    _compat.require_cupy()
    with x.device:
        _launch_1d("pool.cu", "avg_pool2d_forward", x.dtype, y.size,
                   (x, y, *_pool_args(x.shape, y.shape, kernel, stride, padding),
                    *_i32(count_include_pad)))


def avg_pool2d_backward(grad_y, grad_x, kernel, stride, padding, count_include_pad):
    """grad_x (N,C,H,W) from grad_y (N,C,OH,OW): each window's gradient spread over its cells."""
    _compat.require_cupy()
    with grad_x.device:
        _launch_1d("pool.cu", "avg_pool2d_backward", grad_x.dtype, grad_x.size,
                   (grad_y, grad_x, *_pool_args(grad_x.shape, grad_y.shape, kernel, stride,
                                                padding), *_i32(count_include_pad)))


def relu_backward(grad_y, y, grad_x):
    """grad_x = grad_y where y > 0 else 0 (any shape, all three the same)."""
    _compat.require_cupy()
    with grad_x.device:
        _launch_1d("elementwise.cu", "relu_backward", grad_x.dtype, grad_x.size,
                   (grad_y, y, grad_x, *_i64(grad_x.size)))


def linear_forward(x, weight, bias, y, relu):
    """y (N,OUT) = x (N,IN) @ weight (OUT,IN).T + bias (OUT,) or None; then ReLU if relu."""
    cupy = _compat.require_cupy()
    if y.size == 0:
        return
    with x.device:
        if x.shape[1] == 0:
            y.fill(0)
        else:
            cupy.matmul(x, weight.T, out=y)  # cuBLAS; weight.T is a transposed view, no copy
        if bias is not None or relu:
            b = bias if bias is not None else y
            _launch_1d("elementwise.cu", "bias_act", y.dtype, y.size,
                       (y, b, *_i64(*y.shape), *_i32(bias is not None, relu)))


def linear_backward(grad_y, x, weight, grad_x, grad_weight, grad_bias):
    """From grad_y (N,OUT), x (N,IN), weight (OUT,IN): grad_x (N,IN) = grad_y @ weight,
    grad_weight (OUT,IN) = grad_y.T @ x, grad_bias (OUT,) = grad_y summed over N.
    Each output may be None (not computed)."""
    cupy = _compat.require_cupy()
    N, OUT = grad_y.shape
    with grad_y.device:
        if grad_x is not None and grad_x.size:
            if OUT == 0:
                grad_x.fill(0)
            else:
                cupy.matmul(grad_y, weight, out=grad_x)
        if grad_weight is not None and grad_weight.size:
            if N == 0:
                grad_weight.fill(0)
            else:
                cupy.matmul(grad_y.T, x, out=grad_weight)
        if grad_bias is not None and grad_bias.size:
            cupy.sum(grad_y, axis=0, out=grad_bias)


def softmax_cross_entropy_forward(logits, labels, log_probs, losses):
    """log_probs (N,K) = log_softmax(logits (N,K)), stable; losses (N,) = -log_probs[i, labels[i]]
    for int64 labels (N,) in [0, K)."""
    _compat.require_cupy()
    N, K = logits.shape
    if N == 0:
        return
    with logits.device:  # one block per row (grid-stride past the grid limit)
        _launch_rows("elementwise.cu", "softmax_xent_forward", logits.dtype, N, 1,
                     (logits, labels, log_probs, losses, *_i64(N, K)))


def softmax_cross_entropy_backward(log_probs, labels, grad_logits, scale):
    """grad_logits (N,K) = (exp(log_probs (N,K)) - onehot(labels (N,))) * scale."""
    _compat.require_cupy()
    N, K = log_probs.shape
    with log_probs.device:
        dtype = grad_logits.dtype
        _launch_1d("elementwise.cu", "softmax_xent_backward", dtype, grad_logits.size,
                   (log_probs, labels, grad_logits, *_i64(N, K), dtype.type(scale)))
