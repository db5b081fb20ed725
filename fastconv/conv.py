"""Public 2-D convolution: conv2d and its gradients (NCHW, cross-correlation, torch's semantics).

Each function validates in Python, picks the backend from the array type (NumPy -> CPU kernels,
CuPy -> GPU kernels), makes the inputs C-contiguous of the computed dtype (at most one copy each),
allocates the result and calls the backend. Inputs are never modified.
"""

from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ._backend import dask as _dask
from ._typing import Array, DTypeLike, IntPair, Padding
from ._validation import (
    NEEDS,
    as_activation,
    as_algorithm,
    as_needs,
    as_shape,
    conv_geometry,
    shapes_geometry,
)
from ._validation import arrays as _arrays


def _kernel_args(geom):
    """Backend arguments: stride, (pad_top, pad_left), dilation, groups."""
    return geom.stride, (geom.padding[0], geom.padding[2]), geom.dilation, geom.groups


def _check_grad_out(grad_out, shape, names):
    if tuple(grad_out.shape) != tuple(shape):
        raise ValueError(
            f"grad_out must have the shape of conv2d's output for {names[0]} and "
            f"{names[1]}, {tuple(shape)}, got {tuple(grad_out.shape)}"
        )


def conv2d(
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
    algorithm: str = "auto",
) -> Array:
    """2-D convolution (cross-correlation) of a batch of images.

    Parameters
    ----------
    x : ndarray (N, C, H, W)
    weight : ndarray (F, C // groups, KH, KW)
    bias : ndarray (F,) or None
    stride, dilation : int or (h, w)
    padding : int, (ph, pw), ((top, bottom), (left, right)), 'valid' or 'same'
        'same' follows TensorFlow's rule, also with stride > 1: OH = ceil(H / stride_h), the odd
        extra row/column of padding goes to the bottom/right.
    groups : int dividing C and F (groups = C is depthwise).
    activation : None or 'relu' (fused with the bias in the same pass).
    out : ndarray (N, F, OH, OW), optional; C-contiguous, of the result dtype, not overlapping an
        input. Written and returned.
    algorithm : "auto" (the planner's choice) or one of "gemm", "direct", "depthwise", "matmul",
        "winograd", "fft"; ValueError if it cannot compute this convolution (see conv2d_plan).

    Returns
    -------
    y : ndarray (N, F, OH, OW), float32 or float64 (see the dtype rule in the README), on the
        inputs' device (NumPy or CuPy).
    """
    be = _arrays.backend(x=x, weight=weight, bias=bias, out=out)
    x = _arrays.as_array(x, "x", 4)
    weight = _arrays.as_array(weight, "weight", 4)
    if bias is not None:
        bias = _arrays.as_array(bias, "bias", 1)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(
                f"bias must have shape ({weight.shape[0]},) (one per filter of "
                f"weight), got {tuple(bias.shape)}"
            )
    activation = as_activation(activation)
    algorithm = as_algorithm(algorithm)
    geom = conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    dtype = _arrays.compute_dtype(x=x, weight=weight, bias=bias)
    if _dask.is_dask(x, weight, bias):
        if out is not None:
            raise TypeError("out= cannot be used with Dask arrays (the result is lazy)")
        return _dask.conv2d(
            x, weight, bias, stride, padding, dilation, groups, activation, algorithm
        )
    if out is not None:
        y = _arrays.check_out(
            out, geom.output_shape, dtype, {"x": x, "weight": weight, "bias": bias}
        )
    else:
        y = _arrays.empty(x, geom.output_shape, dtype)
    if y.size == 0:
        return y
    x = _arrays.contiguous(x, dtype)
    weight = _arrays.contiguous(weight, dtype)
    if bias is not None:
        bias = _arrays.contiguous(bias, dtype)
    be.conv2d_forward(x, weight, bias, y, *_kernel_args(geom), activation == "relu", algorithm)
    return y


def conv2d_backward(
    grad_out: Array,
    x: Array,
    weight: Array,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    needs: Union[str, Sequence[str]] = NEEDS,
    algorithm: str = "auto",
) -> Tuple[Optional[Array], Optional[Array], Optional[Array]]:
    """Gradients of conv2d with respect to its input, weight and bias.

    Parameters
    ----------
    grad_out : ndarray (N, F, OH, OW), the gradient of the loss with respect to conv2d's output.
    x : ndarray (N, C, H, W), weight : ndarray (F, C // groups, KH, KW): conv2d's inputs.
    stride, padding, dilation, groups : as given to conv2d.
    needs : names from ("input", "weight", "bias"); gradients not named are not computed.
    algorithm : "auto" or an algorithm name (as for conv2d) for both gradient passes.

    Returns
    -------
    (grad_input (N, C, H, W), grad_weight (F, C // groups, KH, KW), grad_bias (F,)), each None
    when not in `needs`; dtype: the dtype rule over (grad_out, x, weight).
    """
    needs = as_needs(needs)
    algorithm = as_algorithm(algorithm)
    be = _arrays.backend(grad_out=grad_out, x=x, weight=weight)
    grad_out = _arrays.as_array(grad_out, "grad_out", 4)
    x = _arrays.as_array(x, "x", 4)
    weight = _arrays.as_array(weight, "weight", 4)
    geom = conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    _check_grad_out(grad_out, geom.output_shape, ("x", "weight"))
    dtype = _arrays.compute_dtype(grad_out=grad_out, x=x, weight=weight)
    if _dask.is_dask(grad_out, x, weight):
        return _dask.conv2d_backward(
            grad_out, x, weight, stride, padding, dilation, groups, needs, algorithm
        )
    grad_out = _arrays.contiguous(grad_out, dtype)
    grad_input = grad_weight = grad_bias = None
    if "input" in needs:
        grad_input = _grad_input(
            be, grad_out, _arrays.contiguous(weight, dtype), x.shape, geom, algorithm
        )
    if {"weight", "bias"} <= set(needs) and algorithm == "auto" and grad_out.size:
        # grad_weight and grad_bias from one pass over grad_out where the backend can (GPU: a
        # launch or two less; CPU: the direct kernels)
        grad_weight = _arrays.empty(grad_out, weight.shape, dtype)
        grad_bias = _arrays.empty(grad_out, (weight.shape[0],), dtype)
        x = _arrays.contiguous(x, dtype)
        be.conv2d_grad_weight_bias(grad_out, x, grad_weight, grad_bias, *_kernel_args(geom))
        return grad_input, grad_weight, grad_bias
    if "weight" in needs:
        grad_weight = _grad_weight(
            be, grad_out, _arrays.contiguous(x, dtype), weight.shape, geom, algorithm
        )
    if "bias" in needs:
        grad_bias = _arrays.empty(grad_out, (weight.shape[0],), dtype)
        if grad_out.size == 0:
            grad_bias[...] = 0
        else:
            be.conv2d_grad_bias(grad_out, grad_bias)
    return grad_input, grad_weight, grad_bias


def _grad_input(be, grad_out, weight, input_shape, geom, algorithm):
    grad_input = _arrays.empty(grad_out, input_shape, grad_out.dtype)
    if grad_input.size:
        be.conv2d_grad_input(grad_out, weight, grad_input, *_kernel_args(geom), algorithm)
    return grad_input


def _grad_weight(be, grad_out, x, weight_shape, geom, algorithm):
    grad_weight = _arrays.empty(grad_out, weight_shape, grad_out.dtype)
    if grad_out.size == 0:
        grad_weight[...] = 0
    else:
        be.conv2d_grad_weight(grad_out, x, grad_weight, *_kernel_args(geom), algorithm)
    return grad_weight


def conv2d_grad_input(
    grad_out: Array,
    weight: Array,
    input_shape: Sequence[int],
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    algorithm: str = "auto",
) -> Array:
    """Gradient of conv2d with respect to its input.

    grad_out (N, F, OH, OW), weight (F, C // groups, KH, KW), input_shape (N, C, H, W)
    -> grad_input (N, C, H, W). `algorithm` as for conv2d.
    """
    algorithm = as_algorithm(algorithm)
    be = _arrays.backend(grad_out=grad_out, weight=weight)
    grad_out = _arrays.as_array(grad_out, "grad_out", 4)
    weight = _arrays.as_array(weight, "weight", 4)
    input_shape = as_shape(input_shape, "input_shape", 4)
    geom = conv_geometry(
        input_shape, weight.shape, stride, padding, dilation, groups, ("input_shape", "weight")
    )
    _check_grad_out(grad_out, geom.output_shape, ("input_shape", "weight"))
    dtype = _arrays.compute_dtype(grad_out=grad_out, weight=weight)
    if _dask.is_dask(grad_out, weight):
        return _dask.conv2d_grad_input(
            grad_out, weight, input_shape, stride, padding, dilation, groups, algorithm
        )
    return _grad_input(
        be,
        _arrays.contiguous(grad_out, dtype),
        _arrays.contiguous(weight, dtype),
        input_shape,
        geom,
        algorithm,
    )


def conv2d_grad_weight(
    grad_out: Array,
    x: Array,
    weight_shape: Sequence[int],
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    algorithm: str = "auto",
) -> Array:
    """Gradient of conv2d with respect to its weight.

    grad_out (N, F, OH, OW), x (N, C, H, W), weight_shape (F, C // groups, KH, KW)
    -> grad_weight (F, C // groups, KH, KW). `algorithm` as for conv2d.
    """
    algorithm = as_algorithm(algorithm)
    be = _arrays.backend(grad_out=grad_out, x=x)
    grad_out = _arrays.as_array(grad_out, "grad_out", 4)
    x = _arrays.as_array(x, "x", 4)
    weight_shape = as_shape(weight_shape, "weight_shape", 4)
    geom = conv_geometry(
        x.shape, weight_shape, stride, padding, dilation, groups, ("x", "weight_shape")
    )
    _check_grad_out(grad_out, geom.output_shape, ("x", "weight_shape"))
    dtype = _arrays.compute_dtype(grad_out=grad_out, x=x)
    if _dask.is_dask(grad_out, x):
        return _dask.conv2d_grad_weight(
            grad_out, x, weight_shape, stride, padding, dilation, groups, algorithm
        )
    return _grad_weight(
        be,
        _arrays.contiguous(grad_out, dtype),
        _arrays.contiguous(x, dtype),
        weight_shape,
        geom,
        algorithm,
    )


def _plan_args(input_shape, weight_shape, stride, padding, dilation, groups, dtype, device):
    input_shape, weight_shape, geom = shapes_geometry(
        input_shape, weight_shape, stride, padding, dilation, groups
    )
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a NumPy dtype, got {dtype!r}") from None
    dtype = _arrays.compute_dtype(dtype=np.empty(0, dtype))
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    be = _arrays.backend_for(device)
    return be, (input_shape, weight_shape, geom.output_shape, *_kernel_args(geom), dtype)


def conv2d_plan(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    dtype: DTypeLike = np.float32,
    algorithm: str = "auto",
    device: str = "cpu",
) -> Dict[str, str]:
    """Which algorithm computes each pass of this convolution.

    Parameters
    ----------
    input_shape : (N, C, H, W); weight_shape : (F, C // groups, KH, KW)
    stride, padding, dilation, groups : as for conv2d.
    dtype : the computing dtype (float32 or float64; the dtype rule of conv2d applies).
    algorithm : "auto" or a name, as conv2d takes it: ValueError if it cannot run a pass.
    device : "cpu" (NumPy arrays) or "gpu" (CuPy arrays).

    Returns
    -------
    {"forward": name, "grad_input": name, "grad_weight": name}. For finite data: inputs holding
    inf or NaN are computed on paths that keep NumPy's inf/NaN semantics ("gemm"), whatever the
    plan.
    """
    algorithm = as_algorithm(algorithm)
    be, args = _plan_args(
        input_shape, weight_shape, stride, padding, dilation, groups, dtype, device
    )
    return be.conv2d_plan(*args, algorithm)


def conv2d_algorithms(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    dtype: DTypeLike = np.float32,
    device: str = "cpu",
) -> Dict[str, Tuple[str, ...]]:
    """The algorithms that can compute each pass of this convolution (arguments as for
    conv2d_plan): {"forward": (names...), "grad_input": (...), "grad_weight": (...)}."""
    be, args = _plan_args(
        input_shape, weight_shape, stride, padding, dilation, groups, dtype, device
    )
    return be.conv2d_algorithms(*args)
