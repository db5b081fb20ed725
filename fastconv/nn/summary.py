"""summary(model, input_shape): a Keras-like table of a model's layers, shapes and costs.

    >>> from fastconv import nn
    >>> from fastconv.lenet import LeNet5
    >>> s = nn.summary(LeNet5(), (1, 32, 32))
    >>> s.total_params, s.total_mult_adds
    (61706, 416520)
    >>> print(s)                                        # doctest: +SKIP

Per layer: the output shape (N: any batch size), the parameter count, the multiply-adds of one
sample (a convolution's output cells times its C/groups * KH * KW taps; a linear layer's IN *
OUT; pooling and activations count none) and the receptive field along H and W: its size in
input pixels and its jump, the input-pixel distance between neighbouring outputs
(:mod:`fastconv.arith`). After a layer that sees the whole input (Linear, global pooling) the
receptive field is "all".

Shapes are worked out from each layer's arguments, without running it; a layer of an unknown type
is run once on zeros (batch 1, evaluation mode) for its output shape, and its multiply-adds and
receptive field show "?". A Sequential (nested ones included) lists its layers; any other layer
with children is one row.
"""

from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union, cast

import numpy as np

from .. import arith
from .. import functional as F
from .._validation import adaptive_output_size, adaptive_windows, as_pair, as_single
from .activation import ReLU, Sigmoid, Tanh
from .adaptive_pooling import AdaptiveAvgPool2D, AdaptiveMaxPool2D, GlobalAvgPool2D
from .conv import Conv2D
from .conv1d import Conv1D
from .conv_transpose import ConvTranspose2D
from .dropout import Dropout
from .layer import Layer
from .linear import Linear
from .pooling import AvgPool2D, MaxPool2D
from .reshape import Flatten
from .separable import SeparableConv2D

__all__ = ["summary", "ModelSummary"]

_ALL = "all"
_UNKNOWN = "?"

# A receptive-field entry: a tuple per spatial axis, "all" (sees the whole input) or None (unknown).
_RF = Union[Tuple[Any, ...], str, None]
_Step = Union[None, str, List[Dict[str, Any]]]  # see the per-layer rules below
_Shape = Tuple[int, ...]
_Ints = Sequence[int]
_Out = Tuple[_Shape, int, _Step]  # a rule's (output shape, mult-adds, step)


def _pair(value: Any) -> _Shape:
    """A layer's (already validated) int, pair or torch 1-tuple as (h, w)."""
    return cast(_Shape, as_pair(value, "value", 0))


class _Row:
    __slots__ = ("name", "kind", "output_shape", "params", "mult_adds", "rf_size", "rf_jump")
    name: str
    kind: str
    output_shape: _Shape
    params: int
    mult_adds: Optional[int]
    rf_size: _RF
    rf_jump: _RF

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)


class ModelSummary:
    """What :func:`summary` returns: ``str()`` is the table; the numbers are attributes.

    Attributes
    ----------
    rows : list of dict
        Per layer: name, type, output_shape (without the batch axis), params, mult_adds (int or
        None when unknown), rf_size and rf_jump (tuples per spatial axis, "all" or None).
    input_shape : tuple, without the batch axis.
    total_params : int
    total_mult_adds : int or None (None when a layer's is unknown); per sample.
    param_bytes : int
    """

    def __init__(
        self, title: str, input_shape: Sequence[int], rows: List[_Row], param_bytes: int
    ) -> None:
        self.title = title
        self.input_shape = tuple(input_shape)
        self.rows = [{key: getattr(r, key) for key in _Row.__slots__} for r in rows]
        self.total_params = sum(r.params for r in rows)
        macs = [r.mult_adds for r in rows]
        self.total_mult_adds = None if None in macs else sum(cast(List[int], macs))
        self.param_bytes = int(param_bytes)

    def __str__(self) -> str:
        header = ("Layer (type)", "Output shape", "Param #", "Mult-adds", "RF size", "RF jump")
        body = []
        for r in self.rows:
            body.append(
                (
                    f"{r['name']} ({r['kind']})",
                    _shape_text(r["output_shape"]),
                    f"{r['params']:,}",
                    _int_text(r["mult_adds"]),
                    _rf_text(r["rf_size"]),
                    _rf_text(r["rf_jump"]),
                )
            )
        widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
        align = ("<", "<", ">", ">", ">", ">")

        def line(cells: Sequence[str]) -> str:
            return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

        rule = "=" * len(line(header))
        out = [
            f"Model: {self.title}",
            f"Input: {_shape_text(self.input_shape)}",
            rule,
            line(header),
            rule,
        ]
        out += [line(cells) for cells in body]
        out += [
            rule,
            f"Total params: {self.total_params:,} ({_bytes_text(self.param_bytes)})",
            f"Total mult-adds per sample: {_int_text(self.total_mult_adds)}",
            "RF: receptive field per spatial axis, its size in input pixels and its jump "
            "(input pixels between neighbouring outputs)",
        ]
        return "\n".join(out)

    __repr__ = __str__


def _shape_text(shape: tuple) -> str:  # jumps below 1 (after upsampling) are Fractions: "1/2"
    return "(" + ", ".join(["N"] + [str(s) for s in shape]) + ")"


def _int_text(value: Optional[int]) -> str:
    return _UNKNOWN if value is None else f"{value:,}"


def _rf_text(value: _RF) -> str:
    if value is None:
        return _UNKNOWN
    if value == _ALL:
        return _ALL
    return "x".join(str(v) for v in value)


def _bytes_text(n: int) -> str:
    for unit, size in (("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


# ------------------------------------------------------------------ per-layer rules
# Each rule: (layer, input shape without N) -> (output shape, mult-adds, receptive-field step)
# where the step is None (unchanged), "all" (sees everything) or a list per spatial axis of
# dicts for arith.receptive_field_step.


def _steps(
    kernel: _Ints, stride: _Ints, dilation: _Ints = (1, 1), transposed: bool = False
) -> _Step:
    return [
        dict(kernel=k, stride=s, dilation=d, transposed=transposed)
        for k, s, d in zip(kernel, stride, dilation)
    ]


def _conv2d(layer: Conv2D, shape: _Shape) -> _Out:
    out = F.conv_output_shape(
        (1,) + shape, layer.weight.shape, layer.stride, layer.padding, layer.dilation, layer.groups
    )[1:]
    taps = int(np.prod(layer.weight.shape[1:]))
    return (
        out,
        int(np.prod(out)) * taps,
        _steps(layer.kernel_size, _pair(layer.stride), _pair(layer.dilation)),
    )


def _separable(layer: SeparableConv2D, shape: _Shape) -> _Out:
    mid = F.conv_output_shape(
        (1,) + shape,
        layer.depthwise_weight.shape,
        layer.stride,
        layer.padding,
        layer.dilation,
        layer.in_channels,
    )[1:]
    out = (layer.out_channels,) + mid[1:]
    macs = int(np.prod(mid)) * int(np.prod(layer.kernel_size)) + int(np.prod(out)) * mid[0]
    return out, macs, _steps(layer.kernel_size, _pair(layer.stride), _pair(layer.dilation))


def _conv_transpose(layer: ConvTranspose2D, shape: _Shape) -> _Out:
    out = F.conv_transpose_output_shape(
        (1,) + shape,
        layer.weight.shape,
        layer.stride,
        layer.padding,
        layer.output_padding,
        layer.groups,
        layer.dilation,
    )[1:]
    macs = int(np.prod(shape[1:])) * int(np.prod(layer.weight.shape))
    return (
        out,
        macs,
        _steps(layer.kernel_size, _pair(layer.stride), _pair(layer.dilation), transposed=True),
    )


def _conv1d(layer: Conv1D, shape: _Shape) -> _Out:
    out = F.conv1d_output_shape(
        (1,) + shape, layer.weight.shape, layer.stride, layer.padding, layer.dilation, layer.groups
    )[1:]
    taps = int(np.prod(layer.weight.shape[1:]))
    return (
        out,
        int(np.prod(out)) * taps,
        _steps(
            (layer.kernel_size,),
            (as_single(layer.stride, "stride", 1),),
            (as_single(layer.dilation, "dilation", 1),),
        ),
    )


def _pool(layer: Union[MaxPool2D, AvgPool2D], shape: _Shape) -> _Out:
    dilation = getattr(layer, "dilation", 1)  # max pooling's
    out = F.pool_output_shape(
        (1,) + shape, layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode, dilation
    )[1:]
    kernel = _pair(layer.kernel_size)
    default = layer.stride is None or (isinstance(layer.stride, (tuple, list)) and not layer.stride)
    stride = kernel if default else _pair(layer.stride)  # torch's stride=() is the default too
    return out, 0, _steps(kernel, stride, _pair(dilation))


def _global_pool(layer: GlobalAvgPool2D, shape: _Shape) -> _Out:
    return (shape[0], 1, 1), 0, _ALL


def _adaptive_pool(layer: Union[AdaptiveAvgPool2D, AdaptiveMaxPool2D], shape: _Shape) -> _Out:
    out = (shape[0],) + tuple(adaptive_output_size(layer.output_size, *shape[1:]))
    kernel, stride = [], []
    for size, o in zip(shape[1:], out[1:]):
        windows = adaptive_windows(size, o)
        kernel.append(max(b - a for a, b in windows))
        stride.append(max(1, size // o))  # exact when o divides size
    if out[1:] == (1, 1):
        return out, 0, _ALL
    return out, 0, _steps(kernel, stride)


def _flatten(layer: Flatten, shape: _Shape) -> _Out:
    return (int(np.prod(shape)),), 0, None


def _linear(layer: Linear, shape: _Shape) -> _Out:
    if tuple(shape) != (layer.in_features,):
        raise ValueError(f"Linear takes (N, {layer.in_features}) inputs (Flatten first)")
    return (layer.out_features,), layer.in_features * layer.out_features, _ALL


def _same(layer: Layer, shape: _Shape) -> _Out:
    return shape, 0, None


# Most specific first: DepthwiseConv2D is a Conv2D.
_RULES: List[Tuple[Any, Callable[[Any, _Shape], _Out]]] = [
    (SeparableConv2D, _separable),
    (ConvTranspose2D, _conv_transpose),
    (Conv1D, _conv1d),
    (Conv2D, _conv2d),
    ((MaxPool2D, AvgPool2D), _pool),
    (GlobalAvgPool2D, _global_pool),
    ((AdaptiveAvgPool2D, AdaptiveMaxPool2D), _adaptive_pool),
    (Flatten, _flatten),
    (Linear, _linear),
    ((ReLU, Tanh, Sigmoid, Dropout), _same),
]


def _run_once(layer: Layer, shape: _Shape, dtype: Any) -> _Shape:
    was_training = layer.training
    layer.eval()
    try:
        y = layer.forward(np.zeros((1,) + tuple(shape), dtype))
    finally:
        layer.train(was_training)
    return tuple(int(s) for s in y.shape[1:])


def _leaves(model: Layer, prefix: str = "") -> Iterator[Tuple[str, Layer]]:
    """(dotted name, layer) in forward order: Sequentials unrolled, other layers whole. (A
    Sequential is the layer that iterates over its layers in forward order: asked by that, not
    by its class, since nn.container imports this module for Sequential.summary.)"""
    if hasattr(model, "__iter__"):
        names = {id(layer): name for name, layer in model.named_children().items()}
        for layer in model:
            name = names[id(layer)]
            yield from _leaves(layer, f"{prefix}{name}.")
    else:
        yield prefix.rstrip(".") or type(model).__name__, model


def _dtype(model: Layer) -> Any:
    params = model.parameters()
    return params[0].dtype if params else np.float32


def summary(model: Layer, input_shape: Sequence[int]) -> ModelSummary:
    """Per-layer output shapes, parameters, multiply-adds and receptive fields of `model`.

    Parameters
    ----------
    model : fastconv.nn.Layer (a Sequential lists each layer)
    input_shape : tuple of int, without the batch axis: (C, H, W) for images, (C, L) for
        sequences, (IN,) for vectors.

    Returns
    -------
    ModelSummary : ``print()`` it for the table; ``total_params``, ``total_mult_adds``,
    ``rows`` hold the numbers.

    Raises
    ------
    ValueError/TypeError like the layers' own functions when the input does not fit a layer
    (naming the layer).
    """
    if not isinstance(input_shape, (tuple, list)) or not input_shape:
        raise ValueError(
            f"input_shape must be a non-empty tuple without the batch axis, e.g. "
            f"(C, H, W); got {input_shape!r}"
        )
    shape = tuple(int(s) for s in input_shape)
    if any(s < 1 for s in shape):
        raise ValueError(f"input_shape must hold sizes >= 1, got {input_shape!r}")
    spatial = len(shape) - 1
    rf_size: Any = (1,) * spatial  # then "all" or None (_RF), as the steps below decide
    rf_jump: Any = (1,) * spatial
    rows, param_bytes, dtype = [], 0, _dtype(model)
    macs: Optional[int]
    step: Any  # _Step, or "?" for a layer without a rule
    for name, layer in _leaves(model):
        rule = next((r for types, r in _RULES if isinstance(layer, types)), None)
        try:
            if rule is None:
                out, macs, step = _run_once(layer, shape, dtype), None, _UNKNOWN
            else:
                out, macs, step = rule(layer, shape)
        except (ValueError, TypeError) as exc:
            raise type(exc)(
                f"layer {name!r} ({type(layer).__name__}) does not fit its input "
                f"(N, {', '.join(map(str, shape))}): {exc}"
            ) from exc
        if step == _UNKNOWN or rf_size is None:
            rf_size = rf_jump = None
        elif step == _ALL or rf_size == _ALL:
            rf_size = rf_jump = _ALL
        elif step is not None:
            if len(step) != len(rf_size):
                rf_size = rf_jump = None
            else:
                pairs = [
                    arith.receptive_field_step(s, j, **st)
                    for s, j, st in zip(rf_size, rf_jump, step)
                ]
                rf_size = tuple(p[0] for p in pairs)
                rf_jump = tuple(p[1] for p in pairs)
        params = layer.parameters()
        param_bytes += sum(p.data.nbytes for p in params)
        rows.append(
            _Row(
                name=name,
                kind=type(layer).__name__,
                output_shape=tuple(out),
                params=sum(int(p.size) for p in params),
                mult_adds=macs,
                rf_size=rf_size,
                rf_jump=rf_jump,
            )
        )
        shape = tuple(out)
    return ModelSummary(type(model).__name__, input_shape, rows, param_bytes)
