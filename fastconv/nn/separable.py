"""DepthwiseConv2D and SeparableConv2D: the MobileNet / Xception building blocks.

A depthwise convolution filters each input channel on its own (groups = C, ``depth_multiplier``
filters per channel); a separable convolution follows it with a pointwise (1x1) convolution that
mixes the channels: C*M*KH*KW + C*M*F weights instead of a full convolution's C*F*KH*KW.
"""

from typing import Any, Dict, Optional, Tuple

import numpy as np

from .. import functional as F
from .._typing import Array, DTypeLike, IntPair, Padding, RNGLike
from .._validation import as_pair
from ..parameter import Parameter
from .checks import check_input
from .conv import Conv2D
from .conv_base import WeightedLayer, describe
from .init import as_generator, initial_weights
from .layer import accumulate_grad

__all__ = ["DepthwiseConv2D", "SeparableConv2D"]

# The geometry arguments the two layers show in their repr where they differ from the default.
_GEOMETRY = (("stride", 1), ("padding", 0), ("dilation", 1))


def _head(channels: str, kernel_size: Tuple[int, int], depth_multiplier: int) -> str:
    head = f"{channels}, kernel_size={kernel_size}"
    return head if depth_multiplier == 1 else f"{head}, depth_multiplier={depth_multiplier}"


def _depth_multiplier(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"depth_multiplier must be an int >= 1, got {value!r}")
    return int(value)


class DepthwiseConv2D(Conv2D):
    """Depthwise 2-D convolution: each of the C input channels convolved with its own
    ``depth_multiplier`` filters (a :class:`Conv2D` with groups = C).

    Parameters
    ----------
    in_channels : int
        C.
    kernel_size : int or (KH, KW)
    depth_multiplier : int, default 1
        M: output channels per input channel (F = C * M).
    stride, padding, dilation, bias, activation, init, rng, dtype
        As for :class:`Conv2D`.

    Shapes
    ------
    x (N, C, H, W) -> y (N, C * M, OH, OW); ``weight`` (C * M, 1, KH, KW), ``bias`` (C * M,).
    Output channel c * M + m is filter m of input channel c.
    """

    def __init__(
        self,
        in_channels: int,
        kernel_size: IntPair,
        depth_multiplier: int = 1,
        stride: IntPair = 1,
        padding: Padding = 0,
        dilation: IntPair = 1,
        bias: bool = True,
        activation: Optional[str] = None,
        init: Optional[str] = None,
        rng: RNGLike = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        M = _depth_multiplier(depth_multiplier)
        super().__init__(
            in_channels,
            int(in_channels) * M,
            kernel_size,
            stride,
            padding,
            dilation,
            groups=int(in_channels),
            bias=bias,
            activation=activation,
            init=init,
            rng=rng,
            dtype=dtype,
        )
        self.depth_multiplier = M

    def extra_repr(self) -> str:
        head = _head(f"{self.in_channels}", self.kernel_size, self.depth_multiplier)
        return describe(head, self, _GEOMETRY, self.weight.dtype)


class SeparableConv2D(WeightedLayer):
    """Depthwise-separable 2-D convolution: depthwise (groups = C, no bias), then pointwise 1x1
    with the one bias (and the optional fused ReLU), as Keras' SeparableConv2D.

    Parameters
    ----------
    in_channels, out_channels : int
        C and F.
    kernel_size : int or (KH, KW)
        The depthwise kernel.
    depth_multiplier : int, default 1
        M: depthwise filters per input channel.
    stride, padding, dilation
        Of the depthwise convolution (the pointwise one has none).
    bias : bool, default True
    activation : None or 'relu' (fused into the pointwise convolution)
    init : str, optional
        For both weights; default 'he_uniform' with activation='relu', else 'glorot_uniform'.
    rng : None, int or numpy.random.Generator
    dtype : float dtype, default float32

    Shapes
    ------
    x (N, C, H, W) -> (N, C * M, OH, OW) -> y (N, F, OH, OW) (one sample: the same without N);
    ``depthwise_weight`` (C * M, 1, KH, KW), ``pointwise_weight`` (F, C * M, 1, 1), ``bias``
    (F,). The forward caches its input, the depthwise output and (with ReLU) its output.

    Notes
    -----
    In :meth:`state_dict` (PyTorch's names) the three parameters are ``depthwise.weight``,
    ``pointwise.weight`` and ``pointwise.bias``: those of a torch module holding
    ``depthwise = nn.Conv2d(C, C * M, kernel_size, groups=C, bias=False)`` and ``pointwise =
    nn.Conv2d(C * M, F, 1)``. (A torch ``nn.Sequential`` of those two convolutions matches a
    fastconv ``Sequential(DepthwiseConv2D(C, kernel_size, M, bias=False), Conv2D(C * M, F, 1))``.)
    """

    _STATE_NAMES = {
        "depthwise_weight": "depthwise.weight",
        "pointwise_weight": "pointwise.weight",
        "bias": "pointwise.bias",
    }

    _CACHE = "_cache"
    depthwise_weight: Parameter
    pointwise_weight: Parameter
    bias: Optional[Parameter]
    _cache: Optional[Tuple[Array, Array, Array]]  # (input, depthwise output, output)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        depth_multiplier: int = 1,
        stride: IntPair = 1,
        padding: Padding = 0,
        dilation: IntPair = 1,
        bias: bool = True,
        activation: Optional[str] = None,
        init: Optional[str] = None,
        rng: RNGLike = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__(activation, init)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        if self.in_channels < 1 or self.out_channels < 1:
            raise ValueError(
                f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}"
            )
        self.kernel_size = as_pair(kernel_size, "kernel_size", 1)
        self.depth_multiplier = _depth_multiplier(depth_multiplier)
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        rng = as_generator(rng)
        kh, kw = self.kernel_size
        M = self.depth_multiplier
        mid = self.in_channels * M
        self._new_parameter(
            "depthwise_weight",
            initial_weights(self.init, (mid, 1, kh, kw), kh * kw, M * kh * kw, rng, dtype),
        )
        self._new_parameter(
            "pointwise_weight",
            initial_weights(
                self.init, (self.out_channels, mid, 1, 1), mid, self.out_channels, rng, dtype
            ),
        )
        if bias:
            self._new_parameter("bias", np.zeros(self.out_channels, dtype=dtype))
        else:
            self.bias = None

    def _depthwise(self) -> Dict[str, Any]:
        return dict(
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.in_channels,
        )

    def forward(self, x: Array) -> Array:
        """x (N, C, H, W) -> y (N, F, OH, OW)."""
        check_input(self, x, "in_channels", ("N", "C", "H", "W"))
        t = F.conv2d(x, self.depthwise_weight.data, None, **self._depthwise())
        y = F.conv2d(
            t,
            self.pointwise_weight.data,
            None if self.bias is None else self.bias.data,
            activation=self.activation,
        )
        self._cache = (x, t, y) if self.training else None
        return y

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """grad (N, F, OH, OW) -> grad wrt x (N, C, H, W) (None if not input_grad); accumulates
        depthwise_weight.grad, pointwise_weight.grad and bias.grad."""
        x, t, y = self._cached(self._cache)
        if self.activation == "relu":
            grad = F.relu_backward(grad, y)
        needs = ("input", "weight") + (("bias",) if self.bias is not None else ())
        grad_t, grad_pw, grad_bias = F.conv2d_backward(
            grad, t, self.pointwise_weight.data, needs=needs
        )
        needs = ("input", "weight") if input_grad else ("weight",)
        grad_x, grad_dw, _ = F.conv2d_backward(
            grad_t, x, self.depthwise_weight.data, needs=needs, **self._depthwise()
        )
        accumulate_grad(self.depthwise_weight, grad_dw)
        accumulate_grad(self.pointwise_weight, grad_pw)
        if self.bias is not None:
            accumulate_grad(self.bias, grad_bias)
        return grad_x

    def extra_repr(self) -> str:
        channels = f"{self.in_channels}, {self.out_channels}"
        head = _head(channels, self.kernel_size, self.depth_multiplier)
        return describe(head, self, _GEOMETRY, self.pointwise_weight.dtype)
