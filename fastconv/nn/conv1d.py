"""Conv1D: a 1-D convolution layer (NCL), optionally with the bias + ReLU fused."""

from typing import Optional, Tuple

import numpy as np

from .. import functional as F
from .._typing import Array, DTypeLike, Padding, RNGLike
from .._validation import as_int
from ..parameter import Parameter
from .checks import check_input
from .conv_base import ConvLayer
from .layer import fused_backward, fused_forward

__all__ = ["Conv1D"]


class Conv1D(ConvLayer):
    """1-D convolution (cross-correlation) over :func:`fastconv.functional.conv1d`.

    Parameters
    ----------
    in_channels, out_channels : int
        C and F; both divisible by ``groups``.
    kernel_size : int
        K.
    stride, dilation : int
    padding : int, (left, right), 'valid' or 'same'
    groups : int
    bias : bool, default True
    activation : None or 'relu' (fused with the bias)
    init : str, optional
        Default 'he_uniform' with activation='relu', else 'glorot_uniform'; fan_in =
        C/groups * K, fan_out = F/groups * K. Biases start at zero.
    rng : None, int or numpy.random.Generator
    dtype : float dtype, default float32

    Shapes
    ------
    x (N, C, L) -> y (N, F, OL), or one sample (C, L) -> (F, OL); ``weight`` (F, C // groups, K),
    ``bias`` (F,).
    """

    GEOMETRY = (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1))
    _CACHE = "_cache"
    kernel_size: int
    stride: int
    padding: Padding
    dilation: int
    weight: Parameter
    bias: Optional[Parameter]
    _cache: Optional[Tuple[Array, Array]]  # (input, output)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: Padding = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        activation: Optional[str] = None,
        init: Optional[str] = None,
        rng: RNGLike = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        k = as_int(kernel_size, "kernel_size", 1)
        geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        super().__init__(in_channels, out_channels, k, activation, init, **geometry)
        shape = (self.out_channels, self.in_channels // self.groups, k)
        fan_in, fan_out = shape[1] * k, self.out_channels // self.groups * k
        self._new_weight_and_bias(
            shape, fan_in, fan_out, self.init, rng, dtype, bias, self.out_channels
        )

    def forward(self, x: Array) -> Array:
        """x (N, C, L) -> y (N, F, OL)."""
        check_input(self, x, "in_channels", ("N", "C", "L"))
        return fused_forward(self, F.conv1d, x, **self._geometry())

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """grad (N, F, OL) -> grad wrt x (N, C, L) (None if not input_grad); accumulates
        weight.grad and bias.grad."""
        return fused_backward(self, F.conv1d_backward, grad, input_grad, **self._geometry())
