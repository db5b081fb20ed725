"""Sequential: layers applied one after the other; backward runs them in reverse."""

from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Sequence, Tuple, Union

from .._typing import Array
from .layer import Layer

if TYPE_CHECKING:
    from .summary import ModelSummary

__all__ = ["Sequential"]


class Sequential(Layer):
    """A chain of layers: ``forward`` feeds each layer's output to the next.

    Build it from layers, named "0", "1", ... (``Sequential(Conv2D(...), ReLU())``), or from one
    dict name -> layer (``Sequential({"conv1": Conv2D(...), "relu1": ReLU()})``): the names
    prefix the parameter names ("0.weight", "conv1.weight"). A child can be reached as
    ``seq[0]``, ``seq["conv1"]`` or ``seq.conv1``.

    Shapes: whatever the first layer takes, to whatever the last one returns.
    """

    _sequence: Tuple[Layer, ...]

    def __init__(self, *layers: Union[Layer, Dict[str, Layer]]) -> None:
        super().__init__()
        named: Dict[Any, Any]  # names and layers are checked below
        if len(layers) == 1 and isinstance(layers[0], dict):
            named = dict(layers[0])
        else:
            named = {str(i): layer for i, layer in enumerate(layers)}
        for name, layer in named.items():
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"Sequential takes Layers, got a {type(layer).__name__} for {name!r}"
                )
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"layer names must be non-empty strings without '.', got {name!r}")
            setattr(self, name, layer)
        self._sequence = tuple(named.values())

    def forward(self, x: Array) -> Array:
        """Apply every layer in order."""
        for layer in self._sequence:
            x = layer(x)
        return x

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """Backpropagate through every layer in reverse; returns grad wrt the first input (or
        None when ``input_grad`` is False: the first layer then skips that computation).

        A max pooling after a ReLU (a layer's fused one, or a ReLU layer) takes the ReLU's
        derivative on its own output, a quarter of the ReLU's at 2x2: bitwise the same
        gradients (see Layer._grad_before_relu)."""
        i = len(self._sequence) - 1
        while i >= 0:
            layer = self._sequence[i]
            if i > 0 and self._sequence[i - 1]._relu_output():
                before_relu = layer._grad_before_relu(grad)
                if before_relu is not None:
                    i -= 1
                    grad = self._sequence[i]._backward_masked(
                        before_relu, input_grad=input_grad or i > 0
                    )
                    i -= 1
                    continue
            grad = layer.backward(grad, input_grad=input_grad or i > 0)
            i -= 1
        return grad

    def summary(self, input_shape: Sequence[int]) -> "ModelSummary":
        """The model's layers with output shapes, parameters, multiply-adds and receptive fields
        for inputs of `input_shape` (without the batch axis): ``print(model.summary((1, 32,
        32)))``. See :func:`fastconv.nn.summary`."""
        from .summary import summary  # summary knows every layer type, this module none

        return summary(self, input_shape)

    def __len__(self) -> int:
        return len(self._sequence)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self._sequence)

    # Any, not Layer: a child's own attributes (``seq["c1"].weight``) need no cast.
    def __getitem__(self, key: Union[int, str]) -> Any:
        if isinstance(key, str):
            try:
                return self._children[key]
            except KeyError:
                raise KeyError(f"no layer named {key!r}; names: {list(self._children)}") from None
        return self._sequence[key]
