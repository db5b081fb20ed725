"""ConvTranspose2D: a 2-D transposed convolution layer (upsampling, PyTorch's weight layout)."""

from typing import Optional, Tuple

import numpy as np

from .. import functional as F
from .._typing import Array, DTypeLike, IntPair, Padding, RNGLike
from .._validation import as_pair
from ..parameter import Parameter
from .checks import check_input
from .conv_base import ConvLayer

__all__ = ["ConvTranspose2D"]


class ConvTranspose2D(ConvLayer):
    """2-D transposed convolution over :func:`fastconv.functional.conv_transpose2d`.

    Parameters
    ----------
    in_channels, out_channels : int
        C_in and C_out; both divisible by ``groups``.
    kernel_size : int or (KH, KW)
    stride, padding, output_padding, groups, dilation
        As for :func:`fastconv.functional.conv_transpose2d` (``output_padding`` smaller than
        max(stride, dilation)). The usual 2x upsampling: kernel 4, stride 2, padding 1.
    bias : bool, default True
    init : str, default 'glorot_uniform'
        A scheme of :mod:`fastconv.nn.init`; fan_in = C_in/groups * KH * KW, fan_out =
        C_out/groups * KH * KW. Biases start at zero.
    rng : None, int or numpy.random.Generator
    dtype : float dtype, default float32

    Shapes
    ------
    x (N, C_in, H, W) -> y (N, C_out, OH, OW) (or one sample, (C_in, H, W) -> (C_out, OH, OW)),
    OH = (H - 1) * stride - 2 * padding
    + dilation * (KH - 1) + output_padding + 1; ``weight`` (C_in, C_out // groups, KH, KW),
    ``bias`` (C_out,).
    """

    GEOMETRY = (
        ("stride", 1),
        ("padding", 0),
        ("output_padding", 0),
        ("groups", 1),
        ("dilation", 1),
    )
    _CACHE = "_input"
    kernel_size: Tuple[int, int]
    stride: IntPair
    padding: Padding
    output_padding: IntPair
    dilation: IntPair
    weight: Parameter
    bias: Optional[Parameter]
    _input: Optional[Array]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: Padding = 0,
        output_padding: IntPair = 0,
        groups: int = 1,
        dilation: IntPair = 1,
        bias: bool = True,
        init: Optional[str] = None,
        rng: RNGLike = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        kernel = as_pair(kernel_size, "kernel_size", 1)
        geometry = dict(
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            groups=groups,
            dilation=dilation,
        )
        super().__init__(in_channels, out_channels, kernel, None, init, **geometry)
        kh, kw = kernel
        shape = (self.in_channels, self.out_channels // self.groups, kh, kw)
        fan_in = self.in_channels // self.groups * kh * kw
        fan_out = shape[1] * kh * kw
        self._new_weight_and_bias(
            shape, fan_in, fan_out, self.init, rng, dtype, bias, self.out_channels
        )

    def forward(self, x: Array) -> Array:
        """x (N, C_in, H, W) -> y (N, C_out, OH, OW)."""
        check_input(self, x, "in_channels", ("N", "C_in", "H", "W"))
        y = F.conv_transpose2d(
            x, self.weight.data, None if self.bias is None else self.bias.data, **self._geometry()
        )
        self._input = x if self.training else None
        return y

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """grad (N, C_out, OH, OW) -> grad wrt x (N, C_in, H, W) (None if not input_grad);
        accumulates weight.grad and bias.grad."""
        x = self._cached(self._input)
        needs = self._needs(input_grad)
        grad_x, grad_weight, grad_bias = F.conv_transpose2d_backward(
            grad, x, self.weight.data, needs=needs, **self._geometry()
        )
        self._accumulate(grad_weight, grad_bias)
        return grad_x
