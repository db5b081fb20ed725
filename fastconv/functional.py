"""The public functional namespace: every op of fastconv, NumPy or CuPy arrays in and out."""
from ._args import conv_output_shape
from .conv import conv2d, conv2d_backward, conv2d_grad_input, conv2d_grad_weight

__all__ = [
    "conv2d",
    "conv2d_backward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "conv_output_shape",
]
