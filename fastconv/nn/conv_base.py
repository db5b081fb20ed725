"""What the weighted layers share. WeightedLayer (Linear, the convolution layers, the separable
one): the activation and init arguments. ConvLayer (Conv2D, Conv1D, ConvTranspose2D): their
constructor's channel, kernel and geometry arguments, the geometry they pass to their functional
op, and their repr."""

from typing import Any, Dict, Optional, Tuple

from .._typing import Array
from .._validation import as_activation
from .checks import check_groups
from .init import check_init, default_init
from .layer import Layer

__all__ = ["WeightedLayer", "ConvLayer", "describe"]


class WeightedLayer(Layer):
    """A layer with weights, an optional bias and an optional fused activation: checks and keeps
    the `activation` and `init` arguments (init None: the activation's default scheme)."""

    activation: Optional[str]
    init: str

    def __init__(self, activation: Optional[str], init: Optional[str]) -> None:
        super().__init__()
        as_activation(activation)
        self.activation = activation
        self.init = check_init(init if init is not None else default_init(activation))

    def _relu_output(self) -> bool:
        return self.activation == "relu"

    def _backward_masked(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        # backward() with fused_backward told to skip the ReLU's derivative (layers that take
        # it elsewhere mask twice, which changes nothing)
        object.__setattr__(self, "_relu_masked", True)
        try:
            return self.backward(grad, input_grad=input_grad)
        finally:
            object.__setattr__(self, "_relu_masked", False)


class ConvLayer(WeightedLayer):
    """A convolution layer's common arguments. Subclasses set GEOMETRY: the keyword arguments
    (with their defaults) that they keep as attributes, pass to their op, and show in their
    repr where they differ from the default."""

    GEOMETRY: Tuple[Tuple[str, Any], ...] = ()
    in_channels: int
    out_channels: int
    kernel_size: Any  # (KH, KW), or K for Conv1D
    groups: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        activation: Optional[str],
        init: Optional[str],
        **geometry: Any,
    ) -> None:
        """Check and keep the arguments every convolution layer takes (`kernel_size` checked by
        the subclass; `geometry`: those of GEOMETRY, groups included)."""
        super().__init__(activation, init)
        check_groups(in_channels, out_channels, geometry["groups"])
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = kernel_size
        for name, value in geometry.items():
            setattr(self, name, value)
        self.groups = int(geometry["groups"])

    def _geometry(self) -> Dict[str, Any]:
        """The keyword arguments of the layer's functional op, from GEOMETRY."""
        return {name: getattr(self, name) for name, _ in self.GEOMETRY}

    def extra_repr(self) -> str:
        head = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        return describe(head, self, self.GEOMETRY, getattr(self, "weight").dtype)


def describe(head: str, layer: Layer, geometry: Tuple[Tuple[str, Any], ...], dtype: Any) -> str:
    """A convolution layer's repr arguments: `head` (channels, kernel size, ...), then those of
    `geometry` ((name, default) pairs) that differ from their default, bias=False, the
    activation and the dtype."""
    parts = [head]
    for name, default in geometry:
        value = getattr(layer, name)
        if value != default:
            parts.append(f"{name}={value!r}")
    if getattr(layer, "bias", None) is None:
        parts.append("bias=False")
    activation = getattr(layer, "activation", None)
    if activation is not None:
        parts.append(f"activation={activation!r}")
    parts.append(f"dtype={dtype}")
    return ", ".join(parts)
