"""Linear: a fully connected layer, optionally with the bias + ReLU fused into the kernel."""

from typing import Optional, Tuple

import numpy as np

from .. import functional as F
from .._typing import Array, DTypeLike, RNGLike
from .._validation import as_activation
from ..parameter import Parameter
from .checks import check_features
from .init import check_init, default_init
from .layer import Layer

__all__ = ["Linear"]


class Linear(Layer):
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
        super().__init__()
        as_activation(activation)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.activation = activation
        self.init = check_init(init if init is not None else default_init(activation))
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
        self._cache = None

    def _clear_cache(self) -> None:
        self._cache = None

    def forward(self, x: Array) -> Array:
        """x ``(*, IN)`` -> y ``(*, OUT)``: any leading axes, none included (torch's rule)."""
        check_features(self, x)
        y = F.linear(
            x,
            self.weight.data,
            None if self.bias is None else self.bias.data,
            activation=self.activation,
        )
        self._cache = (x, y) if self.training else None
        return y

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """grad ``(*, OUT)`` -> grad wrt x ``(*, IN)`` (None if not input_grad); accumulates
        weight.grad and bias.grad (sums over all the leading axes)."""
        x, y = self._cached(self._cache)
        if self.activation == "relu":
            grad = F.relu_backward(grad, y)
        needs = self._needs(input_grad)
        grad_x, grad_weight, grad_bias = F.linear_backward(grad, x, self.weight.data, needs=needs)
        self._accumulate(grad_weight, grad_bias)
        return grad_x

    def extra_repr(self) -> str:
        parts = [f"{self.in_features}, {self.out_features}"]
        if self.bias is None:
            parts.append("bias=False")
        if self.activation is not None:
            parts.append(f"activation={self.activation!r}")
        parts.append(f"dtype={self.weight.dtype}")
        return ", ".join(parts)
