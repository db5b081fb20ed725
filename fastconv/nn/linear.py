"""Linear: a fully connected layer, optionally with the bias + ReLU fused into the kernel."""

from typing import Optional, Tuple

import numpy as np

from .. import functional as F
from .._typing import Array, DTypeLike, RNGLike
from ..parameter import Parameter
from .checks import check_features
from .conv_base import WeightedLayer, describe
from .layer import fused_backward, fused_forward

__all__ = ["Linear"]


class Linear(WeightedLayer):
    """Fully connected layer: y = x @ weight.T + bias, then ReLU when activation='relu'.

    Parameters
    ----------
    in_features, out_features : int
        IN and OUT.
    bias : bool, default True
    activation : None or 'relu'
        'relu' is fused with the bias; its backward uses the cached output.
    init : str, optional
        A scheme of :mod:`fastconv.nn.init`; default 'he_uniform' with activation='relu',
        else 'glorot_uniform'. Biases start at zero.
    rng : None, int or numpy.random.Generator
    dtype : float dtype, default float32

    Shapes
    ------
    x ``(*, IN)`` -> y ``(*, OUT)``, ``*`` any leading axes (none: one sample (IN,) -> (OUT,); (B, T, IN)
    for sequences); ``weight`` (OUT, IN), ``bias`` (OUT,).
    """

    _CACHE = "_cache"
    weight: Parameter
    bias: Optional[Parameter]
    _cache: Optional[Tuple[Array, Array]]  # (input, output)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: Optional[str] = None,
        init: Optional[str] = None,
        rng: RNGLike = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__(activation, init)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        shape = (self.out_features, self.in_features)
        self._new_weight_and_bias(
            shape,
            self.in_features,
            self.out_features,
            self.init,
            rng,
            dtype,
            bias,
            self.out_features,
        )

    def forward(self, x: Array) -> Array:
        """x ``(*, IN)`` -> y ``(*, OUT)``: any leading axes, none included (torch's rule)."""
        check_features(self, x)
        return fused_forward(self, F.linear, x)

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """grad ``(*, OUT)`` -> grad wrt x ``(*, IN)`` (None if not input_grad); accumulates
        weight.grad and bias.grad (sums over all the leading axes)."""
        return fused_backward(self, F.linear_backward, grad, input_grad)

    def extra_repr(self) -> str:
        return describe(f"{self.in_features}, {self.out_features}", self, (), self.weight.dtype)
