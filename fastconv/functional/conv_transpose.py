"""Public 2-D transposed convolution and its gradients (NCHW, PyTorch's semantics and layout).

A transposed convolution is the gradient with respect to the input of the convolution that maps
its output back to its input: with that convolution's (stride, padding, dilation, groups) and the
same weight, read as (F = C_in, C_out // groups, KH, KW),

    conv_transpose2d(x, w)         = conv2d_grad_input(x, w, y_shape)
    grad wrt x                     = conv2d(grad_out, w)
    grad wrt w                     = conv2d_grad_weight(x, grad_out, w.shape)   (roles swapped)

so it runs on the conv2d kernels of either backend. ``output_padding`` picks the output size
among the ``stride`` sizes that convolution maps to the input's: it becomes extra bottom/right
padding of the equivalent convolution (rows no input reaches beyond that are zero, plus the bias).
"""

from collections import namedtuple
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .. import _dispatch
from .._typing import Array, IntPair, Padding
from .._validation import (
    BLAS_INT_MAX,
    NEEDS,
    as_int,
    as_needs,
    as_pair,
    as_shape,
    conv_geometry,
    too_big_for_blas,
)
from .._validation import arrays as _arrays
from ..arith import conv_transpose_output_size
from ._batch import unbatched

__all__ = ["conv_transpose2d", "conv_transpose2d_backward", "conv_transpose_output_shape"]

TransposeGeometry = namedtuple("TransposeGeometry", "conv core_hw output_shape")
TransposeGeometry.__doc__ = """conv: the equivalent convolution's keyword arguments (stride,
((top, bottom), (left, right)) padding, dilation, groups); core_hw: the output rows and columns
some input reaches (the rest, at the bottom/right, only get the bias); output_shape (N, C_out, OH,
OW)."""


def _padding(padding):
    if isinstance(padding, str):
        raise ValueError(
            f"padding must be an int or a pair (h, w) for a transposed convolution, got {padding!r}"
        )
    return as_pair(padding, "padding", 0)


def _geometry(input_shape, weight_shape, stride, padding, output_padding, groups, dilation):
    """Validate the arguments of conv_transpose2d -> TransposeGeometry."""
    N, C_in, H, W = input_shape
    Cw, Cg_out, KH, KW = weight_shape
    stride = as_pair(stride, "stride", 1)
    padding = _padding(padding)
    output_padding = as_pair(output_padding, "output_padding", 0)
    dilation = as_pair(dilation, "dilation", 1)
    groups = as_int(groups, "groups", 1)
    for name, value in (
        ("x channels (C_in)", C_in),
        ("x height", H),
        ("x width", W),
        ("weight.shape[1] (C_out // groups)", Cg_out),
        ("weight height (KH)", KH),
        ("weight width (KW)", KW),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if Cw != C_in:
        raise ValueError(
            f"weight must have shape (C_in, C_out // groups, KH, KW) with C_in = x's "
            f"{C_in} channels, got weight.shape[0] = {Cw}"
        )
    if C_in % groups:
        raise ValueError(f"x's channels (C_in={C_in}) must be divisible by groups={groups}")
    for axis, op, s, d in zip(("h", "w"), output_padding, stride, dilation):
        if op >= max(s, d):
            raise ValueError(
                f"output_padding ({axis}) must be smaller than stride or dilation "
                f"(max {max(s, d)}), got {op}"
            )
    OH, OW = (
        conv_transpose_output_size(size, k, s, p, op, d)
        for size, k, s, p, op, d in zip((H, W), (KH, KW), stride, padding, output_padding, dilation)
    )
    if OH < 1 or OW < 1:
        raise ValueError(
            f"output size would be {OH}x{OW} (< 1): input {H}x{W}, kernel {KH}x{KW}, "
            f"padding {padding} crops more than the transposed convolution makes"
        )
    # The output is the equivalent convolution's input plane: named here, where the user's
    # arguments are known (stride and dilation are what grow it)
    if OH * OW > BLAS_INT_MAX:
        raise too_big_for_blas(
            f"x of {H} x {W} at stride {stride} and dilation {dilation} makes an output of "
            f"{OH} x {OW}: {OH * OW} elements per plane"
        )
    conv_padding, core = [], []
    for size, out, s, p, op in zip((H, W), (OH, OW), stride, padding, output_padding):
        # Bottom padding b of the equivalent convolution maps `out` rows back to `size`:
        # 0 <= op + b - p < s. With op >= p + s the last op - p - s + 1 rows are out of reach.
        unreached = max(0, op - p - s + 1)
        conv_padding.append((p, max(0, p - op)))
        core.append(out - unreached)
    conv = dict(stride=stride, padding=tuple(conv_padding), dilation=dilation, groups=groups)
    return TransposeGeometry(conv, tuple(core), (N, Cg_out * groups, OH, OW))


def conv_transpose_output_shape(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: IntPair = 1,
    padding: Padding = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
) -> Tuple[int, int, int, int]:
    """Output shape (N, C_out, OH, OW) of conv_transpose2d for x of `input_shape` (N, C_in, H, W)
    and weight of `weight_shape` (C_in, C_out // groups, KH, KW); raises like conv_transpose2d."""
    input_shape = as_shape(input_shape, "input_shape", 4)
    weight_shape = as_shape(weight_shape, "weight_shape", 4)
    return _geometry(
        input_shape, weight_shape, stride, padding, output_padding, groups, dilation
    ).output_shape


@unbatched(x="N, C_in, H, W")
def conv_transpose2d(
    x: Array,
    weight: Array,
    bias: Optional[Array] = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
) -> Array:
    """2-D transposed convolution ("deconvolution", fractionally strided convolution).

    Parameters
    ----------
    x : ndarray (N, C_in, H, W)
    weight : ndarray (C_in, C_out // groups, KH, KW) (PyTorch's layout)
    bias : ndarray (C_out,) or None
    stride, dilation : int or (h, w)
    padding : int or (h, w): rows/columns cropped from each side of the full output (the
        padding of the convolution this is the gradient of), as in torch.
    output_padding : int or (h, w), each smaller than max(stride, dilation): added to the bottom/
        right output size.
    groups : int dividing C_in.

    Returns
    -------
    y : ndarray (N, C_out, OH, OW)
        OH = (H - 1) * stride_h - 2 * padding_h + dilation_h * (KH - 1) + output_padding_h + 1
        (likewise OW); the dtype rule over (x, weight, bias); on the inputs' device.
    """
    be = _dispatch.backend(x=x, weight=weight, bias=bias)
    x = _arrays.as_array(x, "x", 4)
    weight = _arrays.as_array(weight, "weight", 4)
    geom = _geometry(x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    N, C_out, OH, OW = geom.output_shape
    if bias is not None:
        bias = _arrays.as_array(bias, "bias", 1)
        if bias.shape[0] != C_out:
            raise ValueError(
                f"bias must have shape ({C_out},) (one per output channel C_out = "
                f"weight.shape[1] * groups), got {tuple(bias.shape)}"
            )
    dtype = _dispatch.dtype(x=x, weight=weight, bias=bias)
    x, weight, bias = _dispatch.inputs(dtype, x, weight, bias)
    if N == 0:
        return np.empty_like(x, shape=geom.output_shape)
    CH, CW = geom.core_hw
    if CH == 0 or CW == 0:  # every output lies in output_padding: no input reaches one
        y = np.zeros_like(x, shape=geom.output_shape)  # x's array type (np.zeros_like dispatches)
    else:
        core_shape = (N, C_out, CH, CW)
        conv = conv_geometry(core_shape, weight.shape, **geom.conv)
        y = be.conv2d_grad_input(x, weight, core_shape, conv, "auto")
        if (CH, CW) != (OH, OW):  # output_padding beyond every input's reach: zero rows/columns
            full = np.zeros_like(x, shape=geom.output_shape)
            full[:, :, :CH, :CW] = y
            y = full
    if bias is not None:
        y += bias.reshape(C_out, 1, 1)
    return y


@unbatched((0,), grad_out="N, C_out, OH, OW", x="N, C_in, H, W")
def conv_transpose2d_backward(
    grad_out: Array,
    x: Array,
    weight: Array,
    stride: IntPair = 1,
    padding: Padding = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
    *,
    needs: Union[str, Sequence[str]] = NEEDS,
) -> Tuple[Optional[Array], Optional[Array], Optional[Array]]:
    """Gradients of conv_transpose2d with respect to its input, weight and bias.

    Parameters
    ----------
    grad_out : ndarray (N, C_out, OH, OW)
    x : ndarray (N, C_in, H, W), weight : ndarray (C_in, C_out // groups, KH, KW)
    stride, padding, output_padding, groups, dilation : as given to conv_transpose2d.
    needs : names from ("input", "weight", "bias"); those not named are not computed.

    Returns
    -------
    (grad_input (N, C_in, H, W), grad_weight (C_in, C_out // groups, KH, KW), grad_bias (C_out,)),
    None where not in `needs`; dtype: the dtype rule over (grad_out, x, weight).
    """
    needs = as_needs(needs)
    be = _dispatch.backend(grad_out=grad_out, x=x, weight=weight)
    grad_out = _arrays.as_array(grad_out, "grad_out", 4)
    x = _arrays.as_array(x, "x", 4)
    weight = _arrays.as_array(weight, "weight", 4)
    geom = _geometry(x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    if tuple(grad_out.shape) != geom.output_shape:
        raise ValueError(
            f"grad_out must have the transposed convolution's output shape "
            f"{geom.output_shape}, got {tuple(grad_out.shape)}"
        )
    dtype = _dispatch.dtype(grad_out=grad_out, x=x, weight=weight)
    grad_out, x, weight = _dispatch.inputs(dtype, grad_out, x, weight)
    CH, CW = geom.core_hw
    grad_input = grad_weight = grad_bias = None
    if CH == 0 or CW == 0:  # every output lies in output_padding: x and weight reach none
        if "input" in needs:
            grad_input = np.zeros_like(x)
        if "weight" in needs:
            grad_weight = np.zeros_like(weight)
    else:
        # The equivalent convolution's input: the output rows some input reaches.
        core = grad_out if (CH, CW) == geom.output_shape[2:] else grad_out[:, :, :CH, :CW]
        (core,) = _dispatch.inputs(dtype, core)
        conv = conv_geometry(core.shape, weight.shape, **geom.conv)
        if "input" in needs and "weight" in needs:
            grad_input, grad_weight = be.conv2d_and_grad_weight(core, weight, x, conv)
        elif "input" in needs:
            grad_input = be.conv2d(core, weight, None, conv, False, "auto", None)
        elif "weight" in needs:
            grad_weight = be.conv2d_grad_weight(x, core, weight.shape, conv, "auto")
    if "bias" in needs:
        grad_bias = be.conv2d_grad_bias(grad_out)
    return grad_input, grad_weight, grad_bias
