"""What the convolution layers (Conv2D, Conv1D, ConvTranspose2D) share: their constructor's
channel, kernel, geometry, activation and init arguments, the geometry they pass to their
functional op, and their repr."""

from typing import Any, Dict, Optional, Tuple

from .._validation import as_activation
from .checks import check_groups
from .init import check_init, default_init
from .layer import Layer

__all__ = ["ConvLayer"]


class ConvLayer(Layer):
    """A convolution layer's common arguments. Subclasses set GEOMETRY: the keyword arguments
    (with their defaults) that they keep as attributes, pass to their op, and show in their
    repr where they differ from the default."""

    GEOMETRY: Tuple[Tuple[str, Any], ...] = ()
    in_channels: int
    out_channels: int
    kernel_size: Any  # (KH, KW), or K for Conv1D
    groups: int
    activation: Optional[str]
    init: str

    def _arguments(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        activation: Optional[str],
        init: Optional[str],
        **geometry: Any,
    ) -> None:
        """Check and keep the arguments every convolution layer takes (`geometry`: those of
        GEOMETRY, groups included)."""
        as_activation(activation)
        check_groups(in_channels, out_channels, geometry["groups"])
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = kernel_size
        for name, value in geometry.items():
            setattr(self, name, value)
        self.groups = int(geometry["groups"])
        self.activation = activation
        self.init = check_init(init if init is not None else default_init(activation))

    def _geometry(self) -> Dict[str, Any]:
        """The keyword arguments of the layer's functional op, from GEOMETRY."""
        return {name: getattr(self, name) for name, _ in self.GEOMETRY}

    def extra_repr(self) -> str:
        k = self.kernel_size
        kernel = f"({k[0]}, {k[1]})" if isinstance(k, tuple) else f"{k}"
        parts = [f"{self.in_channels}, {self.out_channels}, kernel_size={kernel}"]
        for name, default in self.GEOMETRY:
            value = getattr(self, name)
            if value != default:
                parts.append(f"{name}={value!r}")
        if getattr(self, "bias", None) is None:
            parts.append("bias=False")
        if self.activation is not None:
            parts.append(f"activation={self.activation!r}")
        parts.append(f"dtype={getattr(self, 'weight').dtype}")
        return ", ".join(parts)
