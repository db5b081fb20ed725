"""Conv2D: a 2-D convolution layer, optionally with the bias + ReLU fused into the kernel."""

from typing import Any, Dict, Optional, Tuple

import numpy as np

from .. import functional as F
from .._typing import Array, DTypeLike, IntPair, Padding, RNGLike
from .._validation import as_activation, as_algorithm, as_pair
from ..parameter import Parameter
from .checks import check_groups, check_input
from .init import check_init, default_init
from .layer import Layer

__all__ = ["Conv2D"]


class Conv2D(Layer):
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
    x (N, C, H, W) -> y (N, F, OH, OW); ``weight`` (F, C // groups, KH, KW), ``bias`` (F,).
    """

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
        super().__init__()
        as_activation(activation)
        check_groups(in_channels, out_channels, groups)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = as_pair(kernel_size, "kernel_size", 1)
        self.algorithm = as_algorithm(algorithm)
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = int(groups)
        self.activation = activation
        self.init = check_init(init if init is not None else default_init(activation))
        kh, kw = self.kernel_size
        shape = (self.out_channels, self.in_channels // self.groups, kh, kw)
        fan_in = shape[1] * kh * kw
        fan_out = self.out_channels // self.groups * kh * kw
        self._new_weight_and_bias(
            shape, fan_in, fan_out, self.init, rng, dtype, bias, self.out_channels
        )
        self._cache = None

    def _clear_cache(self) -> None:
        self._cache = None

    def _geometry(self) -> Dict[str, Any]:
        return dict(
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            algorithm=self.algorithm,
        )

    def forward(self, x: Array) -> Array:
        """x (N, C, H, W) -> y (N, F, OH, OW)."""
        check_input(self, x, "in_channels", ("N", "C", "H", "W"))
        bias = None if self.bias is None else self.bias.data
        y = F.conv2d(x, self.weight.data, bias, activation=self.activation, **self._geometry())
        # The fused ReLU's backward needs its output; the conv's backward needs the input.
        self._cache = (x, y) if self.training else None
        return y

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """grad (N, F, OH, OW) -> grad wrt x (N, C, H, W) (None if not input_grad);
        accumulates weight.grad and bias.grad."""
        x, y = self._cached(self._cache)
        if self.activation == "relu":
            grad = F.relu_backward(grad, y)
        needs = self._needs(input_grad)
        grad_x, grad_weight, grad_bias = F.conv2d_backward(
            grad, x, self.weight.data, needs=needs, **self._geometry()
        )
        self._accumulate(grad_weight, grad_bias)
        return grad_x

    def extra_repr(self) -> str:
        kh, kw = self.kernel_size
        parts = [f"{self.in_channels}, {self.out_channels}, kernel_size=({kh}, {kw})"]
        for name, default in (
            ("stride", 1),
            ("padding", 0),
            ("dilation", 1),
            ("groups", 1),
            ("algorithm", "auto"),
        ):
            value = getattr(self, name)
            if value != default:
                parts.append(f"{name}={value!r}")
        if self.bias is None:
            parts.append("bias=False")
        if self.activation is not None:
            parts.append(f"activation={self.activation!r}")
        parts.append(f"dtype={self.weight.dtype}")
        return ", ".join(parts)
