"""GPU backend: the backend interface of docs/INTERNALS.md over CuPy.

Same op names and signatures as ``fastconv._backend.cpu.ops``. Arguments arrive validated: C-contiguous
CuPy arrays of one float dtype (float32 or float64; ``indices``/``labels`` int64) on one
device, outputs preallocated with ``empty`` and fully written here. Every op returns None.

The kernels, their compilation and the launch helpers live in ``fastconv._backend.gpu.``
(names the tests use are re-exported here); every launch passes C-contiguous arrays and
scalars of the exact C++ type the kernel expects.

Importing this module never imports CuPy (only ``_compat`` does); calling an op without CuPy
raises RuntimeError saying how to install it.
"""

from __future__ import annotations

import functools

import numpy as np

from ... import _compat
from .. import OPS  # noqa: F401  (the interface: the op names this module exports)
from . import kernels as _gpu_kernels

# Re-exported: the tests and tests/gpu_emulation reach these through fastconv._backend.gpu.
from .conv import (  # noqa: F401  (the convolution ops of OPS live there)
    _plans,
    _pool_work,
    clear_plans,
    conv2d_algorithms,
    conv2d_forward,
    conv2d_fuses,
    conv2d_grad_bias,
    conv2d_grad_input,
    conv2d_grad_weight,
    conv2d_grad_weight_bias,
    conv2d_plan,
)
from .kernels import (  # noqa: F401
    KERNEL_DIR,
    KERNELS,
    NVRTC_OPTIONS,
    REDUCE_THREADS,
    TILED,
    DeviceInfo,
    _cdiv,
    _device_infos,
    _i32,
    _i64,
    _launch,
    _launch_1d,
    _launch_rows,
    _modules,
    _splits,
    current_stream,
    device_info,
    expression,
    kernel_source,
    name_expressions,
)
from .optim import adam_update, sgd_update  # noqa: F401  (ops of the interface)


def _kernel(filename, name, dtype, tile=None):
    """``_gpu_kernels._kernel`` over this module's ``_modules`` (the same cache unless swapped)."""
    return _gpu_kernels._kernel(filename, name, dtype, _modules, tile=tile)


@functools.lru_cache(maxsize=256)  # the same few shapes every training step
def _pool_args(x_shape, y_shape, kernel, stride, padding):
    """planes, H, W, OH, OW, KH, KW, sh, sw, ph, pw in the .cu types."""
    N, C, H, W = x_shape
    return (*_i64(N * C, H, W, y_shape[2], y_shape[3]), *_i32(*kernel, *stride, *padding))


def max_pool2d_forward(x, y, indices, kernel, stride, padding, dilation):
    """y, indices (N,C,OH,OW) = max and flat argmax ih*W+iw over the (dilated) windows of x
    (N,C,H,W).

    First max wins; a NaN wins; padded cells never win.
    """
    _compat.require_cupy()
    with x.device:
        _launch_1d(
            "pool.cu",
            "max_pool2d_forward",
            x.dtype,
            y.size,
            (
                x,
                y,
                indices,
                *_pool_args(x.shape, y.shape, tuple(kernel), tuple(stride), tuple(padding)),
                *_i32(*dilation),
            ),
        )


@functools.lru_cache(maxsize=64)  # the same few input sizes every training step
def _window_table(device, windows_h, windows_w):
    """The adaptive windows [(start, stop)] of rows, then of columns, as one int64 device
    array (OH + OW, 2) on `device`, uploaded once (read-only: shared by all streams)."""
    cupy = _compat.require_cupy()
    with cupy.cuda.Device(device):
        return cupy.asarray(np.array(windows_h + windows_w, np.int64).reshape(-1, 2))


def adaptive_max_pool2d_forward(x, y, indices, windows_h, windows_w):
    """y, indices (N,C,OH,OW) = max and flat argmax ih*W+iw over torch's adaptive windows of x
    (N,C,H,W): [(start, stop)] of rows and columns (max_pool2d_forward's rule)."""
    cupy = _compat.require_cupy()
    N, C, H, W = x.shape
    with x.device:
        table = _window_table(
            cupy.cuda.runtime.getDevice(),
            tuple(map(tuple, windows_h)),
            tuple(map(tuple, windows_w)),
        )
        _launch_1d(
            "pool.cu",
            "adaptive_max_pool2d_forward",
            x.dtype,
            y.size,
            (x, y, indices, table, *_i64(N * C, H, W, y.shape[2], y.shape[3])),
        )


def max_pool2d_backward(grad_y, indices, grad_x):
    """grad_x (N,C,H,W) = scatter-add of grad_y (N,C,OH,OW) at indices (N,C,OH,OW).

    Deterministic (no float atomics): each input cell's contributions are linked into a list,
    then summed in ascending output order (pool.cu). An index outside [0, H*W) adds nothing
    (the GPU does not read the indices back to check them)."""
    cupy = _compat.require_cupy()
    N, C, H, W = grad_x.shape
    OH, OW = grad_y.shape[2:]
    if grad_x.size == 0:
        return
    with grad_x.device:
        if N * C * OH * OW >= 2**31 or OH * OW >= 2**31:
            raise ValueError("fastconv GPU max_pool2d_backward needs N*C*OH*OW < 2**31")
        # Per stream (gpu.current_stream): the link pass writes these lists and the gather pass
        # reads and resets them, so two streams pooling the same shape at once need two sets.
        key = (cupy.cuda.runtime.getDevice(), current_stream(), N * C, H * W, OH * OW)
        work = _pool_work.get(key)
        if work is None:  # head must start all -1; the gather pass leaves it so
            work = (cupy.full(N * C * H * W, -1, np.int32), cupy.empty(N * C * OH * OW, np.int32))
            work = _pool_work.setdefault(key, work)
        head, nxt = work
        sizes = _i64(N * C, OH * OW, H * W)
        dtype = grad_x.dtype
        _launch_1d(
            "pool.cu", "max_pool2d_backward_link", dtype, grad_y.size, (indices, head, nxt, *sizes)
        )
        _launch_1d(
            "pool.cu",
            "max_pool2d_backward_gather",
            dtype,
            grad_x.size,
            (grad_y, head, nxt, grad_x, *sizes),
        )


def avg_pool2d_forward(x, y, kernel, stride, padding, count_include_pad, divisor_override):
    """y (N,C,OH,OW) = window means of x (N,C,H,W); divisor divisor_override if not None, else
    KH*KW if count_include_pad, else the number of non-padded cells."""
    _compat.require_cupy()
    with x.device:
        _launch_1d(
            "pool.cu",
            "avg_pool2d_forward",
            x.dtype,
            y.size,
            (
                x,
                y,
                *_pool_args(x.shape, y.shape, tuple(kernel), tuple(stride), tuple(padding)),
                *_i32(count_include_pad),
                *_i64(divisor_override or 0),
            ),
        )


def avg_pool2d_backward(
    grad_y, grad_x, kernel, stride, padding, count_include_pad, divisor_override
):
    """grad_x (N,C,H,W) from grad_y (N,C,OH,OW): each window's gradient spread over its cells."""
    _compat.require_cupy()
    with grad_x.device:
        _launch_1d(
            "pool.cu",
            "avg_pool2d_backward",
            grad_x.dtype,
            grad_x.size,
            (
                grad_y,
                grad_x,
                *_pool_args(
                    grad_x.shape, grad_y.shape, tuple(kernel), tuple(stride), tuple(padding)
                ),
                *_i32(count_include_pad),
                *_i64(divisor_override or 0),
            ),
        )


def relu_backward(grad_y, y, grad_x):
    """grad_x = grad_y where y > 0 else 0 (any shape, all three the same)."""
    _compat.require_cupy()
    with grad_x.device:
        _launch_1d(
            "elementwise.cu",
            "relu_backward",
            grad_x.dtype,
            grad_x.size,
            (grad_y, y, grad_x, *_i64(grad_x.size)),
        )


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
            _launch_1d(
                "elementwise.cu",
                "bias_act",
                y.dtype,
                y.size,
                (y, b, *_i64(*y.shape), *_i32(bias is not None, relu)),
            )


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
        _launch_rows(
            "elementwise.cu",
            "softmax_xent_forward",
            logits.dtype,
            N,
            1,
            (logits, labels, log_probs, losses, *_i64(N, K)),
        )


def softmax_cross_entropy_backward(log_probs, labels, grad_logits, scale):
    """grad_logits (N,K) = (exp(log_probs (N,K)) - onehot(labels (N,))) * scale."""
    _compat.require_cupy()
    N, K = log_probs.shape
    with log_probs.device:
        dtype = grad_logits.dtype
        _launch_1d(
            "elementwise.cu",
            "softmax_xent_backward",
            dtype,
            grad_logits.size,
            (log_probs, labels, grad_logits, *_i64(N, K), dtype.type(scale)),
        )
