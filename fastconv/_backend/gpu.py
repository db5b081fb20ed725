"""GPU backend: the backend interface of docs/INTERNALS.md over CuPy.

Same op names and signatures as ``fastconv._backend.cpu``. Arguments arrive validated: C-contiguous
CuPy arrays of one float dtype (float32 or float64; ``indices``/``labels`` int64) on one
device, outputs preallocated with ``empty`` and fully written here. Every op returns None.

The kernels, their compilation and the launch helpers live in ``fastconv._backend.gpu_kernels``
(names the tests use are re-exported here); every launch passes C-contiguous arrays and
scalars of the exact C++ type the kernel expects.

Importing this module never imports CuPy (only ``_compat`` does); calling an op without CuPy
raises RuntimeError saying how to install it.
"""

from __future__ import annotations

from .. import _compat
from . import OPS  # noqa: F401  (the interface: the op names this module exports)
from . import gpu_kernels as _gpu_kernels

# Re-exported: the tests and tests/gpu_emulation reach these through fastconv._backend.gpu.
from .gpu_kernels import (  # noqa: F401
    GEMM_BK,
    GEMM_BM,
    GEMM_BN,
    GEMM_THREADS,
    KERNEL_DIR,
    KERNELS,
    NVRTC_OPTIONS,
    REDUCE_THREADS,
    DeviceInfo,
    _cdiv,
    _device_infos,
    _i32,
    _i64,
    _launch,
    _launch_1d,
    _launch_gemm,
    _launch_rows,
    _modules,
    _splits,
    device_info,
    kernel_source,
    name_expressions,
)
from .gpu_optim import adam_update, sgd_update  # noqa: F401  (ops of the interface)


def _kernel(filename, name, dtype):
    """``_gpu_kernels._kernel`` over this module's ``_modules`` (the same cache unless swapped)."""
    return _gpu_kernels._kernel(filename, name, dtype, _modules)


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
        *_i64(N),
        *_i32(C),
        *_i64(H, W),
        *_i32(F),
        *_i64(y_shape[2], y_shape[3]),
        *_i32(KH, KW, *stride, *padding, *dilation),
    )


def _algorithm(w_shape):
    """The one kernel family the GPU runs a convolution with: depthwise when each group has one
    input channel (a GEMM would reduce over KH*KW only), else implicit GEMM."""
    return "depthwise" if w_shape[1] == 1 else "gemm"


def _check_algorithm(algorithm, w_shape, pass_):
    if algorithm not in ("auto", _algorithm(w_shape)):
        raise ValueError(
            f"algorithm {algorithm!r} cannot compute the {pass_} pass of this "
            f"convolution on the GPU; it runs {_algorithm(w_shape)!r} (or 'auto')"
        )


def conv2d_plan(x_shape, w_shape, y_shape, stride, padding, dilation, groups, dtype, algorithm):
    """{pass: algorithm} for the three passes, with `algorithm` ("auto" or a name) resolved."""
    _compat.require_cupy()
    passes = ("forward", "grad_input", "grad_weight")
    for p in passes:
        _check_algorithm(algorithm, w_shape, p)
    return {p: _algorithm(w_shape) for p in passes}


def conv2d_algorithms(x_shape, w_shape, y_shape, stride, padding, dilation, groups, dtype):
    """{pass: the algorithms that can compute it}."""
    _compat.require_cupy()
    return {p: (_algorithm(w_shape),) for p in ("forward", "grad_input", "grad_weight")}


def conv2d_forward(x, weight, bias, y, stride, padding, dilation, groups, relu, algorithm):
    """y (N,F,OH,OW) = conv(x (N,C,H,W), weight (F,C//groups,KH,KW)) + bias (F,) or None.

    ReLU applied when ``relu``. padding is (pad_top, pad_left); bottom/right follow from OH/OW.
    """
    _compat.require_cupy()
    _check_algorithm(algorithm, weight.shape, "forward")
    if y.size == 0:
        return
    with x.device:
        args = _conv_args(x.shape, weight.shape, y.shape, stride, padding, dilation)
        flags = _i32(bias is not None, relu)
        b = bias if bias is not None else weight  # never read when has_bias == 0
        if weight.shape[1] == 1:  # depthwise (or C == 1): a GEMM would reduce over KH*KW only
            _launch_1d(
                "conv_depthwise.cu",
                "depthwise_forward",
                x.dtype,
                y.size,
                (x, weight, b, y, *args, *flags),
            )
        else:
            _launch_gemm(
                "conv_implicit_gemm.cu",
                "conv2d_forward_igemm",
                x.dtype,
                y.size // y.shape[1],
                weight.shape[0] // groups,
                groups,
                (x, weight, b, y, *args, *_i32(groups), *flags),
            )


def conv2d_grad_input(grad_y, weight, grad_x, stride, padding, dilation, groups, algorithm):
    """grad_x (N,C,H,W) from grad_y (N,F,OH,OW) and weight (F,C//groups,KH,KW): a gather."""
    _compat.require_cupy()
    _check_algorithm(algorithm, weight.shape, "grad_input")
    if grad_x.size == 0:
        return
    with grad_x.device:
        args = _conv_args(grad_x.shape, weight.shape, grad_y.shape, stride, padding, dilation)
        if weight.shape[1] == 1:
            _launch_1d(
                "conv_depthwise.cu",
                "depthwise_grad_input",
                grad_x.dtype,
                grad_x.size,
                (grad_y, weight, grad_x, *args),
            )
        else:
            _launch_gemm(
                "conv_implicit_gemm.cu",
                "conv2d_grad_input_igemm",
                grad_x.dtype,
                grad_x.size // grad_x.shape[1],
                weight.shape[1],
                groups,
                (grad_y, weight, grad_x, *args, *_i32(groups)),
            )


def conv2d_grad_weight(grad_y, x, grad_weight, stride, padding, dilation, groups, algorithm):
    """grad_weight (F,C//groups,KH,KW) = sum over N, OH, OW of grad_y (N,F,OH,OW) x im2col(x).

    The reduction over N*OH*OW is split over blocks; splits are summed in a fixed order.
    """
    cupy = _compat.require_cupy()
    _check_algorithm(algorithm, grad_weight.shape, "grad_weight")
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
            _launch_rows(
                "conv_depthwise.cu",
                "depthwise_grad_weight",
                dtype,
                grad_weight.size,
                splits,
                (grad_y, x, part, *args, *_i64(per)),
            )
        else:
            Fg, K = F // groups, Cg * KH * KW
            base = _cdiv(K, GEMM_BN) * _cdiv(Fg, GEMM_BM) * groups
            splits, per = _splits(P, base, 16 * GEMM_BK, align=GEMM_BK)
            part = grad_weight if splits == 1 else cupy.empty((splits, grad_weight.size), dtype)
            _launch_gemm(
                "conv_grad_weight.cu",
                "conv2d_grad_weight_igemm",
                dtype,
                K,
                Fg,
                groups * splits,
                (grad_y, x, part, *args, *_i32(groups, splits), *_i64(per)),
            )
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
        _launch_rows(
            "reduce.cu",
            "conv2d_grad_bias_partial",
            grad_y.dtype,
            F,
            splits,
            (grad_y, part, *_i64(N), *_i32(F), *_i64(OH * OW, per)),
        )
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
        _launch_1d(
            "pool.cu",
            "max_pool2d_forward",
            x.dtype,
            y.size,
            (x, y, indices, *_pool_args(x.shape, y.shape, kernel, stride, padding)),
        )


def max_pool2d_backward(grad_y, indices, grad_x):
    """grad_x (N,C,H,W) = scatter-add of grad_y (N,C,OH,OW) at indices (N,C,OH,OW)."""
    _compat.require_cupy()
    N, C, H, W = grad_x.shape
    OH, OW = grad_y.shape[2:]
    if grad_x.size == 0:
        return
    with grad_x.device:
        grad_x.fill(0)
        _launch_1d(
            "pool.cu",
            "max_pool2d_backward",
            grad_x.dtype,
            grad_y.size,
            (grad_y, indices, grad_x, *_i64(N * C, OH * OW, H * W)),
        )


def avg_pool2d_forward(x, y, kernel, stride, padding, count_include_pad):
    """y (N,C,OH,OW) = window means of x (N,C,H,W); divisor KH*KW if count_include_pad,
    else the number of non-padded cells."""
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
                *_pool_args(x.shape, y.shape, kernel, stride, padding),
                *_i32(count_include_pad),
            ),
        )


def avg_pool2d_backward(grad_y, grad_x, kernel, stride, padding, count_include_pad):
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
                *_pool_args(grad_x.shape, grad_y.shape, kernel, stride, padding),
                *_i32(count_include_pad),
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
