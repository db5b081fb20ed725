"""Checks the layers share: of constructor arguments (groups) and of what forward is given
(in_channels / in_features), in the words of the layer's constructor rather than the kernel's."""

from typing import Tuple

import numpy as np

from .._typing import Array
from .layer import Layer

__all__ = ["check_groups", "check_input"]


def check_groups(in_channels: int, out_channels: int, groups: int) -> None:
    """ValueError unless `groups` >= 1 divides both channel counts."""
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(
            f"in_channels ({in_channels}) and out_channels ({out_channels}) "
            f"must both be divisible by groups ({groups})"
        )


def check_input(layer: Layer, x: Array, argument: str, axes: Tuple[str, ...]) -> None:
    """ValueError unless `x` has one axis per name in `axes` and ``getattr(layer, argument)``
    entries along axis 1 (the layer's in_channels or in_features).

    The functional ops say what is wrong in the kernel's words (weight[1] * groups); a layer
    can name its constructor's argument and the usual slips behind a mismatch: a missing batch
    axis, channels last, images not flattened for a Linear. Checked before the op, at the cost
    of two comparisons."""
    shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
    if len(shape) != len(axes) or shape[1] != getattr(layer, argument):
        raise ValueError(_input_mismatch(layer, shape, argument, axes))


def _input_mismatch(
    layer: Layer, shape: Tuple[int, ...], argument: str, axes: Tuple[str, ...]
) -> str:
    """check_input's message for x of `shape`, with a hint where a usual slip explains it."""
    expected = getattr(layer, argument)
    ndim = len(axes)
    layout = f"({', '.join(axes)})"
    head = f"{type(layer).__name__}({argument}={expected}, ...)"
    if len(shape) != ndim:
        hint = _ndim_hint(shape, expected, ndim)
        return f"{head} takes {ndim}-D x {layout}, got {len(shape)}-D x of shape {shape}{hint}"
    what = argument[len("in_") :]  # channels / features
    message = f"{head} got x with {shape[1]} {what} (axis 1 of {layout} {shape})"
    if ndim > 2 and shape[-1] == expected:
        message += f"; channels last? x.transpose{_channels_first(ndim)} puts them on axis 1"
    return message


def _ndim_hint(shape: Tuple[int, ...], expected: int, ndim: int) -> str:
    """For x of `shape` where the layer takes `ndim` axes: the hint if it reads as one sample
    without its batch axis (channels first or last), or as images a Linear takes flattened;
    else ""."""
    if len(shape) == ndim - 1 and shape and shape[0] == expected:
        return f": the batch axis is missing? x[None] has shape {(1,) + shape}"
    if len(shape) == ndim - 1 and ndim > 2 and shape and shape[-1] == expected:
        return (
            f": one channels-last sample? x[None].transpose{_channels_first(ndim)} has shape "
            f"{(1, expected) + shape[:-1]}"
        )
    if ndim == 2 and len(shape) > 2 and int(np.prod(shape[1:])) == expected:
        flat = (shape[0], expected)
        return f": not flattened? x.reshape(len(x), -1) (or nn.Flatten()) has shape {flat}"
    return ""


def _channels_first(ndim: int) -> Tuple[int, ...]:
    """The axis order that moves the last axis of an `ndim`-D array to axis 1."""
    return (0, ndim - 1) + tuple(range(1, ndim - 1))
