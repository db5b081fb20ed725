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

from ._backend import dask as _dask
from ._typing import Array, IntPair, Padding
from ._validation import (
    BLAS_INT_MAX,
    as_int,
    as_pair,
    as_shape,
    conv_geometry,
    too_big_for_blas,
)
from ._validation import arrays as _arrays
from .arith import conv_transpose_output_size
from .conv import _kernel_args, conv2d, conv2d_grad_input, conv2d_grad_weight

__all__ = ["conv_transpose2d", "conv_transpose2d_backward", "conv_transpose_output_shape"]

_NEEDS = ("input", "weight", "bias")

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
    y : ndarray (N, C_out, OH, OW), OH = (H - 1) * stride_h - 2 * padding_h + dilation_h * (KH - 1)
        + output_padding_h + 1 (likewise OW); the dtype rule over (x, weight, bias); on the
        inputs' device.
    """
    _arrays.backend(x=x, weight=weight, bias=bias)
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
    dtype = _arrays.compute_dtype(x=x, weight=weight, bias=bias)
    x = _arrays.contiguous(x, dtype)
    weight = _arrays.contiguous(weight, dtype)
    if N == 0:
        return _arrays.empty(x, geom.output_shape, dtype)
    CH, CW = geom.core_hw
    if (CH, CW) == (OH, OW):
        y = conv2d_grad_input(x, weight, (N, C_out, CH, CW), **geom.conv)
    else:  # output_padding beyond every input's reach: zero rows/columns (maybe all of them)
        # np.zeros_like dispatches on x's type: a NumPy, CuPy or Dask array like x
        y = np.zeros_like(x, shape=geom.output_shape, dtype=dtype)
        if CH and CW:
            y[:, :, :CH, :CW] = conv2d_grad_input(x, weight, (N, C_out, CH, CW), **geom.conv)
    if bias is not None:
        y += _arrays.contiguous(bias, dtype).reshape(C_out, 1, 1)
    return y


def _as_needs(needs):
    if isinstance(needs, str):
        needs = (needs,)
    try:
        needs = tuple(needs)
    except TypeError:
        raise TypeError(f"needs must be a tuple of names from {_NEEDS}, got {needs!r}") from None
    unknown = [n for n in needs if n not in _NEEDS]
    if unknown:
        raise ValueError(f"needs must name gradients from {_NEEDS}, got unknown {unknown!r}")
    return set(needs)


def _fuses(be, core, x, weight):
    """Whether the backend computes both gradients in one call (the CPU backend: one im2col per
    tile of grad_out serves grad-input's and grad-weight's GEMMs); not for Dask or empty arrays."""
    return (
        hasattr(be, "conv2d_forward_and_grad_weight")
        and not _dask.is_dask(core, x, weight)
        and min(core.size, x.size, weight.size) > 0
    )


def _input_and_weight(be, core, x, weight, dtype, geom):
    """(grad_input, grad_weight): conv2d(core, weight) and conv2d_grad_weight(x, core), in one
    backend call."""
    conv = conv_geometry(core.shape, weight.shape, **geom.conv)
    grad_input = _arrays.empty(core, conv.output_shape, dtype)
    grad_weight = _arrays.empty(core, weight.shape, dtype)
    be.conv2d_forward_and_grad_weight(
        _arrays.contiguous(core, dtype),
        _arrays.contiguous(weight, dtype),
        grad_input,
        _arrays.contiguous(x, dtype),
        grad_weight,
        *_kernel_args(conv),
    )
    return grad_input, grad_weight


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
    needs: Union[str, Sequence[str]] = _NEEDS,
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
    needs = _as_needs(needs)
    be = _arrays.backend(grad_out=grad_out, x=x, weight=weight)
    grad_out = _arrays.as_array(grad_out, "grad_out", 4)
    x = _arrays.as_array(x, "x", 4)
    weight = _arrays.as_array(weight, "weight", 4)
    geom = _geometry(x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    if tuple(grad_out.shape) != geom.output_shape:
        raise ValueError(
            f"grad_out must have the transposed convolution's output shape "
            f"{geom.output_shape}, got {tuple(grad_out.shape)}"
        )
    dtype = _arrays.compute_dtype(grad_out=grad_out, x=x, weight=weight)
    grad_out = _arrays.contiguous(grad_out, dtype)
    CH, CW = geom.core_hw
    # The equivalent convolution's input: the output rows some input reaches (a view).
    core = grad_out if (CH, CW) == geom.output_shape[2:] else grad_out[:, :, :CH, :CW]
    grad_input = grad_weight = grad_bias = None
    if CH == 0 or CW == 0:  # every output lies in output_padding: x and weight reach none
        if "input" in needs:
            grad_input = np.zeros_like(x, dtype=dtype)
        if "weight" in needs:
            grad_weight = np.zeros_like(weight, dtype=dtype)
    elif "input" in needs and "weight" in needs and _fuses(be, core, x, weight):
        grad_input, grad_weight = _input_and_weight(be, core, x, weight, dtype, geom)
    if "input" in needs and grad_input is None:
        grad_input = conv2d(core, _arrays.contiguous(weight, dtype), **geom.conv)
    if "weight" in needs and grad_weight is None:
        grad_weight = conv2d_grad_weight(
            _arrays.contiguous(x, dtype), core, weight.shape, **geom.conv
        )
    if "bias" in needs and _dask.is_dask(grad_out):
        grad_bias = grad_out.sum(axis=(0, 2, 3))  # lazy, a tree sum over the blocks
    elif "bias" in needs:
        grad_bias = _arrays.empty(grad_out, (geom.output_shape[1],), dtype)
        if grad_out.size == 0:
            grad_bias[...] = 0
        else:
            be.conv2d_grad_bias(grad_out, grad_bias)
    return grad_input, grad_weight, grad_bias
