"""Conv2D: a 2-D convolution layer, optionally with the bias + ReLU fused into the kernel."""

from typing import Optional, Tuple

import numpy as np

from .. import functional as F
from .._typing import Array, DTypeLike, IntPair, Padding, RNGLike
from .._validation import as_algorithm, as_pair
from ..parameter import Parameter
from .checks import check_input
from .conv_base import ConvLayer
from .layer import fused_backward, fused_forward

__all__ = ["Conv2D"]


class Conv2D(ConvLayer):
    """2-D convolution (cross-correlation, NCHW) with an optional fused ReLU.

    Parameters
    ----------
    in_channels, out_channels : int
        C and F; both divisible by ``groups``.
    kernel_size : int or (KH, KW)
    stride, padding, dilation, groups
        As for :func:`fastconv.functional.conv2d` (padding may also be 'same' or 'valid').
    bias : bool, default True
    activation : None or 'relu'
        'relu' applies max(., 0) in the same pass as the bias (and its backward uses the cached
        output, so nothing else is stored).
    init : str, optional
        A scheme of :mod:`fastconv.nn.init`; default 'he_uniform' with activation='relu',
        else 'glorot_uniform'. Biases start at zero.
    rng : None, int or numpy.random.Generator
        Source of the initial weights (None: fresh entropy, not reproducible).
    dtype : float dtype, default float32
    algorithm : "auto" or an algorithm name, as :func:`fastconv.functional.conv2d` takes it
        (forward and both gradients).

    Shapes
    ------
    x (N, C, H, W) -> y (N, F, OH, OW), or one sample (C, H, W) -> (F, OH, OW) as torch takes
    it; ``weight`` (F, C // groups, KH, KW), ``bias`` (F,).
    """

    GEOMETRY = (
        ("stride", 1),
        ("padding", 0),
        ("dilation", 1),
        ("groups", 1),
        ("algorithm", "auto"),
    )
    _CACHE = "_cache"
    kernel_size: Tuple[int, int]
    stride: IntPair
    padding: Padding
    dilation: IntPair
    algorithm: str
    weight: Parameter
    bias: Optional[Parameter]
    _cache: Optional[Tuple[Array, Array]]  # (input, output)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: Padding = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        bias: bool = True,
        activation: Optional[str] = None,
        init: Optional[str] = None,
        rng: RNGLike = None,
        dtype: DTypeLike = np.float32,
        algorithm: str = "auto",
    ) -> None:
        kernel = as_pair(kernel_size, "kernel_size", 1)
        geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        algorithm = as_algorithm(algorithm)
        super().__init__(in_channels, out_channels, kernel, activation, init, **geometry)
        self.algorithm = algorithm
        kh, kw = kernel
        shape = (self.out_channels, self.in_channels // self.groups, kh, kw)
        fan_in = shape[1] * kh * kw
        fan_out = self.out_channels // self.groups * kh * kw
        self._new_weight_and_bias(
            shape, fan_in, fan_out, self.init, rng, dtype, bias, self.out_channels
        )

    def forward(self, x: Array) -> Array:
        """x (N, C, H, W) -> y (N, F, OH, OW)."""
        check_input(self, x, "in_channels", ("N", "C", "H", "W"))
        return fused_forward(self, F.conv2d, x, **self._geometry())

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """grad (N, F, OH, OW) -> grad wrt x (N, C, H, W) (None if not input_grad);
        accumulates weight.grad and bias.grad."""
        return fused_backward(self, F.conv2d_backward, grad, input_grad, **self._geometry())
