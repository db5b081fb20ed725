"""Public 1-D convolution and its gradients (NCL, cross-correlation, torch's semantics).

A 1-D convolution is a 2-D one of height 1: (N, C, L) is viewed as (N, C, 1, L) and the weight
(F, C // groups, K) as (F, C // groups, 1, K) (views, no copies), so every conv2d path of either
backend serves it, and the results are reshaped views of conv2d's.
"""

from typing import Optional, Sequence, Tuple, Union

from .._typing import Array, IntPair, Padding
from .._validation import arrays as _arrays
from .._validation import as_shape, as_single, conv_output_shape, output_size
from ..arith import _axis_padding
from ._batch import unbatched
from .conv import conv2d, conv2d_backward, conv2d_grad_input, conv2d_grad_weight

__all__ = [
    "conv1d",
    "conv1d_backward",
    "conv1d_grad_input",
    "conv1d_grad_weight",
    "conv1d_output_shape",
]

_NEEDS = ("input", "weight", "bias")


def _geometry(input_shape, weight_shape, stride, padding, dilation, groups):
    """Validate the 1-D arguments; -> (conv2d keyword arguments, output shape (N, F, OL))."""
    N, C, L = input_shape
    F, Cg, K = weight_shape
    stride = as_single(stride, "stride", 1)
    dilation = as_single(dilation, "dilation", 1)
    for name, value in (("x length (L)", L), ("weight length (K)", K)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    left, right = _axis_padding(padding, L, K, stride, dilation)
    OL = output_size(L, K, stride, dilation, left, right)
    if OL < 1:
        raise ValueError(
            f"output length would be {OL} (< 1): input length {L} with padding "
            f"{(left, right)} is shorter than the dilated kernel "
            f"{dilation * (K - 1) + 1}"
        )
    kwargs = dict(
        stride=(1, stride), padding=((0, 0), (left, right)), dilation=(1, dilation), groups=groups
    )
    return kwargs, (N, F, OL)


def conv1d_output_shape(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Tuple[int, int, int]:
    """Output shape (N, F, OL) of conv1d for x of `input_shape` (N, C, L) and weight of
    `weight_shape` (F, C // groups, K); raises ValueError/TypeError like conv1d."""
    input_shape = as_shape(input_shape, "input_shape", 3)
    weight_shape = as_shape(weight_shape, "weight_shape", 3)
    kwargs, shape = _geometry(input_shape, weight_shape, stride, padding, dilation, groups)
    # conv2d's checks of channels and groups
    conv_output_shape(
        tuple(input_shape[:2]) + (1,) + tuple(input_shape[2:]),
        tuple(weight_shape[:2]) + (1,) + tuple(weight_shape[2:]),
        **kwargs,
    )
    return shape


@unbatched(x="N, C, L", out="N, F, OL")
def conv1d(
    x: Array,
    weight: Array,
    bias: Optional[Array] = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    activation: Optional[str] = None,
    out: Optional[Array] = None,
) -> Array:
    """1-D convolution (cross-correlation) of a batch of sequences.

    Parameters
    ----------
    x : ndarray (N, C, L)
    weight : ndarray (F, C // groups, K)
    bias : ndarray (F,) or None
    stride, dilation : int
    padding : int, (left, right), 'valid' or 'same' (TensorFlow's rule, OL = ceil(L / stride),
        the odd extra cell on the right)
    groups : int dividing C and F (groups = C is depthwise).
    activation : None or 'relu' (fused with the bias).
    out : ndarray (N, F, OL), optional; C-contiguous, of the result dtype. Written and returned.

    Returns
    -------
    y : ndarray (N, F, OL); the dtype rule over (x, weight, bias), on the inputs' device.
    """
    x = _arrays.as_array(x, "x", 3)
    weight = _arrays.as_array(weight, "weight", 3)
    kwargs, shape = _geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    out4 = None
    if out is not None:
        if not hasattr(out, "ndim") or out.ndim != 3:
            raise ValueError(f"out must be a 3-D array of shape {shape}")
        out4 = out[:, :, None, :]
    y = conv2d(
        x[:, :, None, :], weight[:, :, None, :], bias, activation=activation, out=out4, **kwargs
    )
    return out if out is not None else y.reshape(shape)


@unbatched((0,), grad_out="N, F, OL", x="N, C, L")
def conv1d_backward(
    grad_out: Array,
    x: Array,
    weight: Array,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    needs: Union[str, Sequence[str]] = _NEEDS,
) -> Tuple[Optional[Array], Optional[Array], Optional[Array]]:
    """Gradients of conv1d with respect to its input, weight and bias.

    grad_out (N, F, OL), x (N, C, L), weight (F, C // groups, K), the arguments given to conv1d,
    needs: names from ("input", "weight", "bias") -> (grad_input (N, C, L),
    grad_weight (F, C // groups, K), grad_bias (F,)), None where not in `needs`.
    """
    grad_out = _arrays.as_array(grad_out, "grad_out", 3)
    x = _arrays.as_array(x, "x", 3)
    weight = _arrays.as_array(weight, "weight", 3)
    kwargs, shape = _geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    if tuple(grad_out.shape) != shape:
        raise ValueError(
            f"grad_out must have the conv1d output's shape {shape}, got {tuple(grad_out.shape)}"
        )
    gx, gw, gb = conv2d_backward(
        grad_out[:, :, None, :], x[:, :, None, :], weight[:, :, None, :], needs=needs, **kwargs
    )
    return (
        None if gx is None else gx.reshape(x.shape),
        None if gw is None else gw.reshape(weight.shape),
        gb,
    )


@unbatched(grad_out="N, F, OL", input_shape="N, C, L")
def conv1d_grad_input(
    grad_out: Array,
    weight: Array,
    input_shape: Sequence[int],
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Array:
    """Gradient of conv1d with respect to its input: grad_out (N, F, OL), weight (F, C // groups,
    K), input_shape (N, C, L) -> grad_input (N, C, L)."""
    grad_out = _arrays.as_array(grad_out, "grad_out", 3)
    weight = _arrays.as_array(weight, "weight", 3)
    input_shape = as_shape(input_shape, "input_shape", 3)
    kwargs, _ = _geometry(input_shape, weight.shape, stride, padding, dilation, groups)
    N, C, L = input_shape
    gx = conv2d_grad_input(grad_out[:, :, None, :], weight[:, :, None, :], (N, C, 1, L), **kwargs)
    return gx.reshape(input_shape)


@unbatched((), grad_out="N, F, OL", x="N, C, L")
def conv1d_grad_weight(
    grad_out: Array,
    x: Array,
    weight_shape: Sequence[int],
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Array:
    """Gradient of conv1d with respect to its weight: grad_out (N, F, OL), x (N, C, L),
    weight_shape (F, C // groups, K) -> grad_weight (F, C // groups, K)."""
    grad_out = _arrays.as_array(grad_out, "grad_out", 3)
    x = _arrays.as_array(x, "x", 3)
    weight_shape = as_shape(weight_shape, "weight_shape", 3)
    kwargs, _ = _geometry(x.shape, weight_shape, stride, padding, dilation, groups)
    F, Cg, K = weight_shape
    gw = conv2d_grad_weight(grad_out[:, :, None, :], x[:, :, None, :], (F, Cg, 1, K), **kwargs)
    return gw.reshape(weight_shape)
