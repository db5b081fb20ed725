"""Public 2-D max and average pooling and their gradients (NCHW, floor or ceil mode, max pooling
dilated, average pooling with a divisor_override: torch's semantics)."""

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .. import _dispatch
from .._typing import Array, IntPair, Padding
from .._validation import arrays as _arrays
from .._validation import as_int, as_shape, pool_geometry
from ._batch import unbatched

# Calls validated before, by signature (fastconv._dispatch.signature), as conv2d keeps them: the
# backend and what validation gave. A LeNet-5 step makes four pooling calls.
_MAX_POOL2D_SEEN = _dispatch.Memo()
_MAX_POOL2D_BACKWARD_SEEN = _dispatch.Memo()


def _input(x):
    """(backend, x C-contiguous in the computing dtype)."""
    be = _dispatch.backend(x=x)
    x = _arrays.as_array(x, "x", 4)
    (x,) = _dispatch.inputs(_dispatch.dtype(x=x), x)
    return be, x


@unbatched(x="N, C, H, W")
def max_pool2d(
    x: Array,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: Padding = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    out: Union[None, Array, Tuple[Optional[Array], Optional[Array]]] = None,
) -> Union[Array, Tuple[Array, Array]]:
    """Max pooling, with torch's arguments in torch's order.

    Parameters
    ----------
    x : array (N, C, H, W)
    kernel_size : int or (KH, KW)
    stride : int or (h, w), default kernel_size
    padding : int or (h, w), default 0
        At most half the kernel size (torch's rule, whatever the dilation); padded cells never
        win.
    dilation : int or (h, w), default 1
        Spacing of the window's cells: window (oh, ow) reads rows oh * sh - ph + i * dh,
        i < KH (columns alike), spanning dh * (KH - 1) + 1 rows. A window whose cells all fall
        in the padding or skip over the input is refused (torch returns -inf there).
    ceil_mode : bool, default False
        Round OH, OW up (torch's rule): a last, partial window is kept when it starts inside
        the input or its left padding; it is clipped to the input.
    return_indices : bool, default False
        Also return the indices max_pool2d_backward needs.
    out : ndarray (N, C, OH, OW), or with return_indices a pair (y, indices), optional
        Arrays the results are written into and returned: y of the result dtype, indices int64
        (a None entry is allocated); C-contiguous, not overlapping x or each other.

    Returns
    -------
    y : array (N, C, OH, OW)
    indices : int64 array (N, C, OH, OW), with return_indices
        ih * W + iw of each max within its plane (ties: the first in row-major order; a NaN in
        the window wins).
    """
    key = None
    if type(ceil_mode) is bool and type(return_indices) is bool:  # (bools are not plain())
        arguments = (kernel_size, stride, padding, dilation, int(ceil_mode), int(return_indices))
        key = _dispatch.signature((x,), arguments)
    known = _MAX_POOL2D_SEEN.get(key)
    if known is not None:
        be, geom = known
    else:
        be, x = _input(x)
        geom = pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
        _MAX_POOL2D_SEEN.remember(key, (be, geom))
    if out is not None:
        shape = geom.output_shape
        if return_indices:
            specs = (("y", shape, x.dtype), ("indices", shape, np.dtype(np.int64)))
            out = _dispatch.outputs(be, out, specs, x=x)
        else:
            out = (_dispatch.output(be, out, shape, x.dtype, x=x), None)
    return be.max_pool2d(x, geom, bool(return_indices), out)


@unbatched(grad_out="N, C, OH, OW", indices="N, C, OH, OW", input_shape="N, C, H, W")
def max_pool2d_backward(
    grad_out: Array, indices: Array, input_shape: Sequence[int], *, out: Optional[Array] = None
) -> Array:
    """Gradient of max_pool2d (any dilation, and of adaptive_max_pool2d): grad_out (N, C, OH, OW)
    and the indices from max_pool2d(..., return_indices=True) -> grad_input of `input_shape`
    (N, C, H, W), each grad_out added at its index. `out`: an array of that shape and the result
    dtype, C-contiguous, not overlapping grad_out or indices, written and returned."""
    key = None
    if (
        type(indices) is np.ndarray
        and indices.dtype == np.int64
        and indices.flags.c_contiguous
        and type(input_shape) is tuple
    ):
        key = _dispatch.signature((grad_out,), (indices.shape, input_shape))
    known = _MAX_POOL2D_BACKWARD_SEEN.get(key)
    if known is not None:
        be, shape = known
        if out is not None:
            out = _dispatch.output(
                be, out, shape, grad_out.dtype, grad_out=grad_out, indices=indices
            )
        return be.max_pool2d_backward(grad_out, indices, shape, out)
    be = _dispatch.backend(grad_out=grad_out, indices=indices)
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
        raise TypeError(
            f"indices must be an integer array (from max_pool2d or adaptive_max_pool2d), "
            f"got {indices.dtype}"
        )
    dtype = _dispatch.dtype(grad_out=grad_out)
    out = _dispatch.output(be, out, (N, C, H, W), dtype, grad_out=grad_out, indices=indices)
    (grad_out,) = _dispatch.inputs(dtype, grad_out)
    (indices,) = _dispatch.inputs(np.dtype(np.int64), indices)
    _MAX_POOL2D_BACKWARD_SEEN.remember(key, (be, (N, C, H, W)))
    return be.max_pool2d_backward(grad_out, indices, (N, C, H, W), out)


def _divisor_override(value):
    """torch's divisor_override: None, or a nonzero int (torch refuses only 0: a negative one
    divides by it, as torch's does)."""
    if value is None:
        return None
    value = as_int(value, "divisor_override")
    if value == 0:
        raise ValueError("divisor_override must be a nonzero int (or None), got 0")
    return value


@unbatched(x="N, C, H, W")
def avg_pool2d(
    x: Array,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Optional[int] = None,
) -> Array:
    """Average pooling: x (N, C, H, W) -> y (N, C, OH, OW).

    count_include_pad=True (torch's default) divides every window by KH*KW, padded zeros included;
    False divides by the number of cells inside the image. divisor_override (a nonzero int, or None)
    divides every window's sum by that number instead, as torch's does. The arguments are torch's,
    in torch's order, so a call ported verbatim (`avg_pool2d(x, 3, 2, 1, False)`) means what it
    means there (earlier fastconv versions took count_include_pad 5th, then made the flags
    keyword-only). ceil_mode as for max_pool2d; a last, partial window is divided by
    its cells inside the input and the padding (torch's rule).
    """
    be, x = _input(x)
    geom = pool_geometry(x.shape, kernel_size, stride, padding, ceil_mode=ceil_mode)
    divisor = _divisor_override(divisor_override)
    return be.avg_pool2d(x, geom, bool(count_include_pad), divisor)


@unbatched(grad_out="N, C, OH, OW", input_shape="N, C, H, W")
def avg_pool2d_backward(
    grad_out: Array,
    input_shape: Sequence[int],
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: Padding = 0,
    *,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Optional[int] = None,
) -> Array:
    """Gradient of avg_pool2d (the same arguments): grad_out (N, C, OH, OW) -> grad_input of
    `input_shape` (N, C, H, W)."""
    be = _dispatch.backend(grad_out=grad_out)
    grad_out = _arrays.as_array(grad_out, "grad_out", 4)
    input_shape = as_shape(input_shape, "input_shape", 4)
    geom = pool_geometry(
        input_shape, kernel_size, stride, padding, ceil_mode=ceil_mode, x_name="input_shape"
    )
    divisor = _divisor_override(divisor_override)
    if tuple(grad_out.shape) != geom.output_shape:
        raise ValueError(
            f"grad_out must have shape {geom.output_shape}, got {tuple(grad_out.shape)}"
        )
    (grad_out,) = _dispatch.inputs(_dispatch.dtype(grad_out=grad_out), grad_out)
    return be.avg_pool2d_backward(grad_out, input_shape, geom, bool(count_include_pad), divisor)
