"""Public global and adaptive average pooling, adaptive max pooling, and their gradients (NCHW,
torch's semantics).

Global pooling is avg_pool2d with the whole plane as its window (the pooling kernels of either
backend). Adaptive pooling to (OH, OW) uses torch's windows (fastconv._validation.adaptive_windows):
output row i pools input rows [floor(i H / OH), ceil((i + 1) H / OH)). When OH divides H (and OW
divides W) they are the tiles of avg_pool2d / max_pool2d with kernel = stride = H / OH, which
run. Otherwise the windows have two sizes and may overlap: the average is a mean over rows, then
over columns, one window at a time with the array module's reductions (OH + OW vectorised steps;
no BLAS, so the same numbers for any thread count); the max is a kernel of each backend over the
windows (max_pool2d's rule and indices, so max_pool2d_backward is its gradient).
"""

from typing import Sequence, Tuple, Union

from .. import _dispatch
from .._typing import Array, IntPair
from .._validation import adaptive_output_size, adaptive_windows, as_shape
from .._validation import arrays as _arrays
from ._batch import unbatched
from .pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward

__all__ = [
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
    "adaptive_windows",
]


def _input(x):
    x = _arrays.as_array(x, "x", 4)
    dtype = _dispatch.dtype(x=x)
    N, C, H, W = x.shape
    if H < 1 or W < 1:
        raise ValueError(f"x must have H, W >= 1, got shape {tuple(x.shape)}")
    return x, dtype


@unbatched(x="N, C, H, W")
def global_avg_pool2d(x: Array) -> Array:
    """Mean over each plane: x (N, C, H, W) -> y (N, C, 1, 1) (follow with a reshape or Flatten
    for (N, C))."""
    x, _ = _input(x)
    return avg_pool2d(x, x.shape[2:])


@unbatched(grad_out="N, C, 1, 1", input_shape="N, C, H, W")
def global_avg_pool2d_backward(grad_out: Array, input_shape: Sequence[int]) -> Array:
    """Gradient of global_avg_pool2d: grad_out (N, C, 1, 1) -> grad_input of `input_shape`
    (N, C, H, W), each cell grad_out / (H * W)."""
    input_shape = as_shape(input_shape, "input_shape", 4)
    return avg_pool2d_backward(grad_out, input_shape, (input_shape[2], input_shape[3]))


def _tiles(size, out):
    return size % out == 0


@unbatched(x="N, C, H, W")
def adaptive_avg_pool2d(x: Array, output_size: IntPair) -> Array:
    """Adaptive average pooling: x (N, C, H, W) -> y (N, C, OH, OW) for any H, W.

    output_size : int or (OH, OW) (an entry None keeps the input's size). OH may exceed H (windows
    then repeat input rows), as in torch.
    """
    x, dtype = _input(x)
    N, C, H, W = x.shape
    OH, OW = adaptive_output_size(output_size, H, W)
    if _tiles(H, OH) and _tiles(W, OW):
        return avg_pool2d(x, (H // OH, W // OW))
    be = _dispatch.backend(x=x)
    (x,) = _dispatch.inputs(dtype, x)
    return be.adaptive_avg_pool2d(x, adaptive_windows(H, OH), adaptive_windows(W, OW))


@unbatched(grad_out="N, C, OH, OW", input_shape="N, C, H, W")
def adaptive_avg_pool2d_backward(grad_out: Array, input_shape: Sequence[int]) -> Array:
    """Gradient of adaptive_avg_pool2d: grad_out (N, C, OH, OW) -> grad_input of `input_shape`
    (N, C, H, W); each output's gradient spread evenly over its window."""
    be = _dispatch.backend(grad_out=grad_out)
    grad_out = _arrays.as_array(grad_out, "grad_out", 4)
    N, C, H, W = as_shape(input_shape, "input_shape", 4)
    if H < 1 or W < 1:
        raise ValueError(f"input_shape must have H, W >= 1, got {(N, C, H, W)}")
    OH, OW = grad_out.shape[2:]
    if tuple(grad_out.shape[:2]) != (N, C) or OH < 1 or OW < 1:
        raise ValueError(
            f"grad_out must have shape ({N}, {C}, OH, OW) with OH, OW >= 1 for "
            f"input_shape {(N, C, H, W)}, got {tuple(grad_out.shape)}"
        )
    if _tiles(H, OH) and _tiles(W, OW):
        return avg_pool2d_backward(grad_out, (N, C, H, W), (H // OH, W // OW))
    (grad_out,) = _dispatch.inputs(_dispatch.dtype(grad_out=grad_out), grad_out)
    windows = adaptive_windows(H, OH), adaptive_windows(W, OW)
    return be.adaptive_avg_pool2d_backward(grad_out, (N, C, H, W), *windows)


@unbatched(x="N, C, H, W")
def adaptive_max_pool2d(
    x: Array, output_size: IntPair, return_indices: bool = False
) -> Union[Array, Tuple[Array, Array]]:
    """Adaptive max pooling: x (N, C, H, W) -> y (N, C, OH, OW) for any H, W (torch's windows);
    one sample (C, H, W) -> (C, OH, OW).

    Parameters
    ----------
    x : array (N, C, H, W), H, W >= 1
    output_size : int or (OH, OW)
        An entry None keeps the input's size. OH may exceed H (windows then repeat input rows).
    return_indices : bool, default False
        Also return the indices adaptive_max_pool2d_backward needs.

    Returns
    -------
    y : array (N, C, OH, OW)
    indices : int64 array (N, C, OH, OW), with return_indices
        ih * W + iw of each window's max within its plane, max_pool2d's rule: ties go to the
        first in row-major order, a NaN in the window wins.
    """
    x, dtype = _input(x)
    N, C, H, W = x.shape
    OH, OW = adaptive_output_size(output_size, H, W)
    if _tiles(H, OH) and _tiles(W, OW):
        return max_pool2d(x, (H // OH, W // OW), return_indices=return_indices)
    be = _dispatch.backend(x=x)
    (x,) = _dispatch.inputs(dtype, x)
    windows = adaptive_windows(H, OH), adaptive_windows(W, OW)
    return be.adaptive_max_pool2d(x, *windows, bool(return_indices))


@unbatched(grad_out="N, C, OH, OW", indices="N, C, OH, OW", input_shape="N, C, H, W")
def adaptive_max_pool2d_backward(
    grad_out: Array, indices: Array, input_shape: Sequence[int]
) -> Array:
    """Gradient of adaptive_max_pool2d: grad_out (N, C, OH, OW) and the indices from
    adaptive_max_pool2d(..., return_indices=True) -> grad_input of `input_shape` (N, C, H, W),
    each grad_out added at its window's max (max_pool2d_backward: the indices are the same kind)."""
    return max_pool2d_backward(grad_out, indices, input_shape)
