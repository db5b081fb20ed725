"""CPU backend: the backend interface (docs/INTERNALS.md) over the compiled kernels.

Arguments arrive validated and C-contiguous; outputs are preallocated. Each op picks its kernel,
hands it the thread count and, where the kernel calls BLAS from OpenMP threads, holds BLAS to one
thread meanwhile.
"""
import numpy as np

from . import _cpu_conv, _cpu_dense, _cpu_depthwise, _cpu_direct, _cpu_pool, _cpu_winograd
from ._threads import blas_single_thread, get_num_threads

OPS = (
    "conv2d_forward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "conv2d_grad_bias",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "relu_backward",
    "linear_forward",
    "linear_backward",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward",
)


def _conv_kernel(weight, groups, skipped_operand=None):
    """The direct kernel for depthwise convolutions (one input channel per group, groups > 1: a
    GEMM per group would have an inner dimension of KH*KW only), unless `skipped_operand` (what
    meets the padding) holds inf/NaN: the direct kernel skips padded taps, and 0 * inf must still
    give NaN. With a single group (C = 1) one GEMM over all filters measured faster."""
    if weight.shape[1] != 1 or groups == 1:
        return _cpu_conv
    if skipped_operand is not None and not np.isfinite(skipped_operand).all():
        return _cpu_conv
    return _cpu_depthwise


def _direct_level():
    return _cpu_direct.level()


def _direct_fits(filters, taps, dtype):
    """Whether the SIMD direct kernels beat im2col + GEMM for `filters` outputs per pixel (the
    SIMD lanes) of `taps` = C * KH * KW products each (one group). Measured with AVX2 (2 threads,
    forward): direct 1.3-3x faster from 4 up to 32 float32 (2 to 16 float64) filters, and up to
    64 / 32 when taps <= 160 (7x7 on RGB); about even at 64 float32 filters of 3x3x64; GEMM faster
    beyond, and for a single filter (grad-input of a one-channel input: 2x)."""
    if _direct_level() == 0:
        return False
    filter_bytes = filters * np.dtype(dtype).itemsize
    return 16 <= filter_bytes and (filter_bytes <= 128 or (filter_bytes <= 256 and taps <= 160))


def _bias_or_empty(bias, dtype):
    # The kernels take a typed memoryview; an empty one stands for "no bias".
    return (np.empty(0, dtype=dtype), False) if bias is None else (bias, True)


def conv2d_forward(x, weight, bias, y, stride, padding, dilation, groups, relu):
    bias, has_bias = _bias_or_empty(bias, x.dtype)
    F, Cg, KH, KW = weight.shape
    if groups == 1 and _direct_fits(F, Cg * KH * KW, x.dtype):
        _cpu_direct.forward(x, weight, bias, y, *stride, *padding, *dilation, groups, has_bias,
                            relu, get_num_threads())
        return
    with blas_single_thread:
        kernel = _conv_kernel(weight, groups, weight)
        kernel.forward(x, weight, bias, y, *stride, *padding, *dilation, groups, has_bias, relu,
                       get_num_threads())


def conv2d_grad_input(grad_y, weight, grad_x, stride, padding, dilation, groups):
    F, Cg, KH, KW = weight.shape
    # With stride 1, grad_x is the convolution of grad_y, padded by the kernel's reach less the
    # forward padding, with the flipped, transposed weight: a forward pass of the direct kernels.
    # They multiply that padding by the weights, where the GEMM path adds nothing: so finite
    # weights only.
    if tuple(stride) == (1, 1) and _direct_level() > 0 and np.isfinite(weight).all():
        direct = groups == 1 and _direct_fits(Cg, F * KH * KW, weight.dtype)
        depthwise = groups == F == grad_x.shape[1] and Cg == 1  # one filter per channel
        if direct or depthwise:
            flipped = np.ascontiguousarray(weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
            if depthwise:
                flipped = flipped.reshape(F, 1, KH, KW)
            (dh, dw), (pt, pl) = dilation, padding
            no_bias, _ = _bias_or_empty(None, weight.dtype)
            kernel = _cpu_direct if direct else _cpu_depthwise
            kernel.forward(grad_y, flipped, no_bias, grad_x, 1, 1, (KH - 1) * dh - pt,
                           (KW - 1) * dw - pl, dh, dw, groups, False, False, get_num_threads())
            return
    with blas_single_thread:
        kernel = _conv_kernel(weight, groups)
        kernel.grad_input(grad_y, weight, grad_x, *stride, *padding, *dilation, groups,
                          get_num_threads())


def _winograd_applies(weight, stride, groups, dtype):
    """Whether the Winograd F(4x4, 3x3) kernel can run this convolution: float32, 3x3 weights,
    stride 1, one group (any padding and dilation)."""
    return (np.dtype(dtype) == np.float32 and tuple(weight.shape[2:]) == (3, 3)
            and tuple(stride) == (1, 1) and groups == 1)


def _winograd_forward(x, weight, bias, y, padding, dilation, relu):
    """y = conv2d(x, weight) (+ bias) (then ReLU) by Winograd F(4x4, 3x3), stride 1, one group.

    Parameters
    ----------
    x : (N, C, H, W) float32, C-contiguous
    weight : (F, C, 3, 3) float32, C-contiguous
    bias : (F,) float32 or None
    y : (N, F, OH, OW) float32, C-contiguous, written in full
    padding : (top, left); bottom and right follow from OH, OW
    dilation : (dh, dw)
    relu : bool, fuse a ReLU

    Accurate to about 3e-6 relative to max|y| (tests/test_winograd.py bounds it by 1e-5). A NaN
    or inf in the input reaches every output of its 4x4 tile (see src/winograd_f43.h): the
    planner must keep non-finite inputs on the exact paths where IEEE propagation matters.
    """
    bias, has_bias = _bias_or_empty(bias, x.dtype)
    # No BLAS inside (the kernel has its own GEMM), so BLAS's threads need no limit.
    _cpu_winograd.forward(x, weight, bias, y, *padding, *dilation, has_bias, relu,
                          get_num_threads())


def _winograd_grad_input(grad_y, weight, grad_x, padding, dilation):
    """grad_x of a stride-1, one-group 3x3 convolution by Winograd F(4x4, 3x3).

    With stride 1, grad_x is the convolution of grad_y, padded by 2 * dh - top (and the same for
    left), with the weights rotated 180 degrees and transposed (F <-> C), which the kernel's
    weight transform reads in place. The kernel reads out-of-image taps as zeros and takes any
    padding, so a negative one (forward padding above 2 * d) needs no cropping.

    Parameters
    ----------
    grad_y : (N, F, OH, OW) float32, C-contiguous
    weight : (F, C, 3, 3) float32, C-contiguous
    grad_x : (N, C, H, W) float32, C-contiguous, written in full
    padding : (top, left) of the forward convolution
    dilation : (dh, dw)

    Accurate to about 3e-6 relative to max|grad_x| (tests bound it by 5e-5).
    """
    _cpu_winograd.grad_input(grad_y, weight, grad_x, *padding, *dilation, get_num_threads())


def conv2d_grad_weight(grad_y, x, grad_weight, stride, padding, dilation, groups):
    F, Cg, KH, KW = grad_weight.shape
    if groups == 1 and _direct_fits(F, Cg * KH * KW, x.dtype):
        _cpu_direct.grad_weight(grad_y, x, grad_weight, *stride, *padding, *dilation, groups,
                                get_num_threads())
        return
    with blas_single_thread:
        kernel = _conv_kernel(grad_weight, groups, grad_y)
        kernel.grad_weight(grad_y, x, grad_weight, *stride, *padding, *dilation, groups,
                           get_num_threads())


def conv2d_grad_bias(grad_y, grad_bias):
    _cpu_conv.grad_bias(grad_y, grad_bias, get_num_threads())


def max_pool2d_forward(x, y, indices, kernel, stride, padding):
    _cpu_pool.max_forward(x, y, indices, *kernel, *stride, *padding, get_num_threads())


def max_pool2d_backward(grad_y, indices, grad_x):
    _cpu_pool.max_backward(grad_y, indices, grad_x, get_num_threads())


def avg_pool2d_forward(x, y, kernel, stride, padding, count_include_pad):
    _cpu_pool.avg_forward(x, y, *kernel, *stride, *padding, count_include_pad, get_num_threads())


def avg_pool2d_backward(grad_y, grad_x, kernel, stride, padding, count_include_pad):
    _cpu_pool.avg_backward(grad_y, grad_x, *kernel, *stride, *padding, count_include_pad,
                           get_num_threads())


def relu_backward(grad_y, y, grad_x):
    _cpu_dense.relu_backward(grad_y.reshape(-1), y.reshape(-1), grad_x.reshape(-1),
                             get_num_threads())


def linear_forward(x, weight, bias, y, relu):
    bias, has_bias = _bias_or_empty(bias, x.dtype)
    with blas_single_thread:
        _cpu_dense.linear_forward(x, weight, bias, y, has_bias, relu, get_num_threads())


def linear_backward(grad_y, x, weight, grad_x, grad_weight, grad_bias):
    with blas_single_thread:
        if grad_x is not None:
            _cpu_dense.linear_grad_input(grad_y, weight, grad_x, get_num_threads())
        if grad_weight is not None:
            _cpu_dense.linear_grad_weight(grad_y, x, grad_weight, get_num_threads())
    if grad_bias is not None:
        _cpu_dense.column_sums(grad_y, grad_bias)


def softmax_cross_entropy_forward(logits, labels, log_probs, losses):
    _cpu_dense.softmax_xent_forward(logits, labels, log_probs, losses, get_num_threads())


def softmax_cross_entropy_backward(log_probs, labels, grad_logits, scale):
    _cpu_dense.softmax_xent_backward(log_probs, labels, grad_logits, float(scale),
                                     get_num_threads())
