"""CPU backend: the backend interface (docs/INTERNALS.md) over the compiled kernels.

Arguments arrive validated and C-contiguous; outputs are preallocated. Each op picks its kernel,
hands it the thread count and holds BLAS to one thread while the kernel's OpenMP threads run.
"""
import numpy as np

from . import _cpu_conv, _cpu_depthwise
from ._threads import blas_single_thread, get_num_threads

OPS = (
    "conv2d_forward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "conv2d_grad_bias",
)


def _conv_kernel(weight):
    # One input channel per group: a GEMM's inner dimension would be KH*KW only.
    return _cpu_depthwise if weight.shape[1] == 1 else _cpu_conv


def conv2d_forward(x, weight, bias, y, stride, padding, dilation, groups, relu):
    has_bias = bias is not None
    if not has_bias:
        bias = np.empty(0, dtype=x.dtype)
    with blas_single_thread:
        _conv_kernel(weight).forward(x, weight, bias, y, *stride, *padding, *dilation, groups,
                                     has_bias, relu, get_num_threads())


def conv2d_grad_input(grad_y, weight, grad_x, stride, padding, dilation, groups):
    with blas_single_thread:
        _conv_kernel(weight).grad_input(grad_y, weight, grad_x, *stride, *padding, *dilation,
                                        groups, get_num_threads())


def conv2d_grad_weight(grad_y, x, grad_weight, stride, padding, dilation, groups):
    with blas_single_thread:
        _conv_kernel(grad_weight).grad_weight(grad_y, x, grad_weight, *stride, *padding,
                                              *dilation, groups, get_num_threads())


def conv2d_grad_bias(grad_y, grad_bias):
    _cpu_conv.grad_bias(grad_y, grad_bias, get_num_threads())
