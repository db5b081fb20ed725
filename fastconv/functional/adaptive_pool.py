"""Public global and adaptive average pooling and their gradients (NCHW, torch's semantics).

Global pooling is avg_pool2d with the whole plane as its window (the pooling kernels of either
backend). Adaptive pooling to (OH, OW) uses torch's windows: output row i averages input rows
[floor(i H / OH), ceil((i + 1) H / OH)); when OH divides H (and OW divides W) they are the tiles
of avg_pool2d with kernel = stride = H / OH, which runs. Otherwise the windows have two sizes and
may overlap: the mean is taken over rows, then over columns, one window at a time with the array
module's reductions (OH + OW vectorised steps; no BLAS, so the same numbers for any thread count).
"""

from typing import Sequence

from .. import _dispatch
from .._typing import Array, IntPair
from .._validation import arrays as _arrays
from .._validation import as_int, as_shape
from ._batch import unbatched
from .pool import avg_pool2d, avg_pool2d_backward

__all__ = [
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
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


def _output_size(output_size, H, W):
    """int, (oh, ow) or None entries (keep the input's size) -> (OH, OW)."""
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"output_size must be an int or a pair (h, w), got {output_size!r}")
        sizes = [
            size if o is None else as_int(o, f"output_size[{i}]", 1)
            for i, (o, size) in enumerate(zip(output_size, (H, W)))
        ]
        return tuple(sizes)
    o = as_int(output_size, "output_size", 1)
    return o, o


def adaptive_windows(size, out):
    """torch's adaptive windows of one axis: [(start, stop)] for each of `out` outputs over
    `size` inputs, start = floor(i size / out), stop = ceil((i + 1) size / out)."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


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
    OH, OW = _output_size(output_size, H, W)
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
