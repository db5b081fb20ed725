"""Public 2-D max and average pooling and their gradients (NCHW, floor or ceil mode, torch's
semantics)."""

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from . import _compat
from ._backend import dask as _dask
from ._typing import Array, IntPair, Padding
from ._validation import arrays as _arrays
from ._validation import as_shape, pool_geometry


def _input(x):
    x = _arrays.as_array(x, "x", 4)
    return x, _arrays.compute_dtype(x=x)


def max_pool2d(
    x: Array,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: Padding = 0,
    *,
    return_indices: bool = False,
    ceil_mode: bool = False,
) -> Union[Array, Tuple[Array, Array]]:
    """Max pooling.

    x (N, C, H, W); kernel_size, stride (default: kernel_size), padding: int or (h, w); padding at
    most half the kernel, padded cells never win. Returns y (N, C, OH, OW), and with
    return_indices also indices (N, C, OH, OW) int64: ih * W + iw of each max within its plane
    (ties: the first in row-major order; a NaN in the window wins), what max_pool2d_backward needs.
    ceil_mode=True rounds OH, OW up (torch's rule): a last, partial window is kept when it starts
    inside the input or its left padding; it is clipped to the input.
    """
    be = _arrays.backend(x=x)
    x, dtype = _input(x)
    geom = pool_geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    if _dask.is_dask(x):
        y = _dask.pool2d(max_pool2d, x, kernel_size, stride, padding, ceil_mode=ceil_mode)
        if not return_indices:
            return y
        return y, _dask.max_pool2d_indices(x, kernel_size, stride, padding, ceil_mode)
    y = _arrays.empty(x, geom.output_shape, dtype)
    indices = _arrays.empty(x, geom.output_shape, np.int64)
    if y.size:
        be.max_pool2d_forward(
            _arrays.contiguous(x, dtype), y, indices, geom.kernel, geom.stride, geom.padding
        )
    return (y, indices) if return_indices else y


def max_pool2d_backward(grad_out: Array, indices: Array, input_shape: Sequence[int]) -> Array:
    """Gradient of max_pool2d: grad_out (N, C, OH, OW) and the indices from
    max_pool2d(..., return_indices=True) -> grad_input of `input_shape` (N, C, H, W)."""
    be = _arrays.backend(grad_out=grad_out, indices=indices)
    grad_out = _arrays.as_array(grad_out, "grad_out", 4)
    indices = _arrays.as_array(indices, "indices", 4)
    N, C, H, W = as_shape(input_shape, "input_shape", 4)
    if tuple(indices.shape) != tuple(grad_out.shape):
        raise ValueError(
            f"indices must have grad_out's shape {tuple(grad_out.shape)}, "
            f"got {tuple(indices.shape)}"
        )
    if grad_out.shape[:2] != (N, C):
        raise ValueError(
            f"grad_out must have shape ({N}, {C}, OH, OW) for input_shape "
            f"{(N, C, H, W)}, got {tuple(grad_out.shape)}"
        )
    if indices.dtype.kind not in "iu":
        raise TypeError(f"indices must be an integer array (from max_pool2d), got {indices.dtype}")
    dtype = _arrays.compute_dtype(grad_out=grad_out)
    if _dask.is_dask(grad_out, indices):
        return _dask.per_plane(max_pool2d_backward, grad_out, indices, plane=(H, W), dtype=dtype)
    grad_x = _arrays.empty(grad_out, (N, C, H, W), dtype)
    if grad_out.size == 0:
        grad_x[...] = 0
        return grad_x
    # On the GPU the check would read values back (a host synchronisation in every training
    # step): there, out-of-range indices add nothing instead (README, GPU backend).
    on_gpu = _compat.is_cupy_array(indices)
    if not on_gpu and (int(indices.min()) < 0 or int(indices.max()) >= H * W):
        raise ValueError(
            f"indices must lie in [0, H*W) = [0, {H * W}) for input_shape {(N, C, H, W)}"
        )
    be.max_pool2d_backward(
        _arrays.contiguous(grad_out, dtype), _arrays.contiguous(indices, np.int64), grad_x
    )
    return grad_x


def avg_pool2d(
    x: Array,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: Padding = 0,
    count_include_pad: bool = True,
    *,
    ceil_mode: bool = False,
) -> Array:
    """Average pooling: x (N, C, H, W) -> y (N, C, OH, OW).

    count_include_pad=True (torch's default) divides every window by KH*KW, padded zeros included;
    False divides by the number of cells inside the image. ceil_mode as for max_pool2d; a last,
    partial window is divided by its cells inside the input and the padding (torch's rule).
    """
    be = _arrays.backend(x=x)
    x, dtype = _input(x)
    geom = pool_geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    if _dask.is_dask(x):
        return _dask.pool2d(
            avg_pool2d,
            x,
            kernel_size,
            stride,
            padding,
            ceil_mode=ceil_mode,
            count_include_pad=count_include_pad,
        )
    y = _arrays.empty(x, geom.output_shape, dtype)
    if y.size:
        be.avg_pool2d_forward(
            _arrays.contiguous(x, dtype),
            y,
            geom.kernel,
            geom.stride,
            geom.padding,
            bool(count_include_pad),
        )
    return y


def avg_pool2d_backward(
    grad_out: Array,
    input_shape: Sequence[int],
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: Padding = 0,
    count_include_pad: bool = True,
    *,
    ceil_mode: bool = False,
) -> Array:
    """Gradient of avg_pool2d: grad_out (N, C, OH, OW) -> grad_input of `input_shape`."""
    be = _arrays.backend(grad_out=grad_out)
    grad_out = _arrays.as_array(grad_out, "grad_out", 4)
    input_shape = as_shape(input_shape, "input_shape", 4)
    geom = pool_geometry(input_shape, kernel_size, stride, padding, ceil_mode, "input_shape")
    if tuple(grad_out.shape) != geom.output_shape:
        raise ValueError(
            f"grad_out must have shape {geom.output_shape}, got {tuple(grad_out.shape)}"
        )
    dtype = _arrays.compute_dtype(grad_out=grad_out)
    if _dask.is_dask(grad_out):
        return _dask.per_plane(
            avg_pool2d_backward,
            grad_out,
            plane=input_shape[2:],
            dtype=dtype,
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            count_include_pad=count_include_pad,
            ceil_mode=ceil_mode,
        )
    grad_x = _arrays.empty(grad_out, input_shape, dtype)
    if grad_out.size == 0:
        grad_x[...] = 0
        return grad_x
    be.avg_pool2d_backward(
        _arrays.contiguous(grad_out, dtype),
        grad_x,
        geom.kernel,
        geom.stride,
        geom.padding,
        bool(count_include_pad),
    )
    return grad_x
