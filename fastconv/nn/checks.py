"""Checks the layers share: of constructor arguments (groups) and of what forward is given
(in_channels / in_features, a batch or one sample), in the words of the layer's constructor
rather than the kernel's."""

from typing import Tuple

import numpy as np

from .._typing import Array
from .layer import Layer

__all__ = ["check_features", "check_groups", "check_input"]


def check_groups(in_channels: int, out_channels: int, groups: int) -> None:
    """ValueError unless `groups` >= 1 divides both channel counts."""
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(
            f"in_channels ({in_channels}) and out_channels ({out_channels}) "
            f"must both be divisible by groups ({groups})"
        )


def check_input(layer: Layer, x: Array, argument: str, axes: Tuple[str, ...]) -> None:
    """ValueError unless `x` has one axis per name in `axes` (a batch) or one less (one sample
    without its batch axis, as torch's modules take it) and ``getattr(layer, argument)``
    entries along its channel axis (1, or 0 for one sample: the layer's in_channels).

    The functional ops say what is wrong in the kernel's words (weight[1] * groups); a layer
    can name its constructor's argument and the usual slip behind a mismatch: channels last.
    Checked before the op, at the cost of two comparisons."""
    shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
    ndim = len(axes)
    if len(shape) not in (ndim, ndim - 1) or shape[len(shape) - ndim + 1] != getattr(
        layer, argument
    ):
        raise ValueError(_input_mismatch(layer, shape, argument, axes))


def check_features(layer: Layer, x: Array) -> None:
    """ValueError unless `x` is (*, IN): any leading axes (none included, torch's rule) and
    ``layer.in_features`` entries along the last; the hint names a missing Flatten."""
    shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
    expected = getattr(layer, "in_features")
    head = f"{type(layer).__name__}(in_features={expected}, ...)"
    if not shape:
        raise ValueError(f"{head} takes x (*, IN) with at least one axis, got a 0-d x")
    if shape[-1] == expected:
        return
    where = "axis 1 of (N, IN)" if len(shape) == 2 else "the last axis of (*, IN)"
    message = f"{head} got x with {shape[-1]} features ({where} {shape})"
    if len(shape) > 2 and int(np.prod(shape[1:])) == expected:
        flat = (shape[0], expected)
        message += f": not flattened? x.reshape(len(x), -1) (or nn.Flatten()) has shape {flat}"
    raise ValueError(message)


def _input_mismatch(
    layer: Layer, shape: Tuple[int, ...], argument: str, axes: Tuple[str, ...]
) -> str:
    """check_input's message for x of `shape`, with a hint where channels last explain it."""
    expected = getattr(layer, argument)
    ndim = len(axes)
    head = f"{type(layer).__name__}({argument}={expected}, ...)"
    if len(shape) not in (ndim, ndim - 1):
        return (
            f"{head} takes {ndim}-D x ({', '.join(axes)}) or {ndim - 1}-D "
            f"({', '.join(axes[1:])}) for one sample, got {len(shape)}-D x of shape {shape}"
        )
    batched = len(shape) == ndim
    axis = 1 if batched else 0
    layout = f"({', '.join(axes if batched else axes[1:])})"
    what = argument[len("in_") :]  # channels / features
    message = f"{head} got x with {shape[axis]} {what} (axis {axis} of {layout} {shape})"
    if shape[-1] == expected:
        order = _channels_first(len(shape), axis)
        message += f"; channels last? x.transpose{order} puts them on axis {axis}"
    return message


def _channels_first(ndim: int, axis: int) -> Tuple[int, ...]:
    """The axis order that moves the last axis of an `ndim`-D array to `axis`."""
    return tuple(range(axis)) + (ndim - 1,) + tuple(range(axis, ndim - 1))
