"""Dask arrays in, lazy Dask arrays out: the public ops over chunked arrays.

The public functions send a call with a ``dask.array.Array`` argument here. Each chunk of work is
one call of the same public function on NumPy (CPU kernels) or CuPy (GPU kernels) blocks, so the
result is computed by fastconv's kernels wherever Dask runs it (threads, processes, a
``dask.distributed`` cluster). Shapes, chunks, dtype and the array type (``_meta``) of the lazy
result are exact before anything is computed.

How a convolution is cut:
- along N: one call per chunk;
- along H and W: output blocks whose windows start in one input chunk; each reads the input rows
  and columns its windows span (the halo), with per-block padding where the block meets the
  image's border, so 'same', asymmetric padding, stride and dilation are exact;
- along C: with one group, partial convolutions of each channel chunk summed by a tree
  reduction; with groups, chunks are aligned to whole groups and give their own filters.
Grad-input is cut like x; grad-weight and grad-bias are sums over the blocks.

Weights are small: a Dask weight is computed once, when the call is made.
"""

from ... import _compat
from .conv import conv2d, conv2d_backward, conv2d_grad_input, conv2d_grad_weight
from .dense import (
    elementwise,
    linear_backward,
    rows,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
)
from .pool import max_pool2d_indices, per_plane, planes, pool2d

__all__ = [
    "conv2d",
    "conv2d_backward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "elementwise",
    "linear_backward",
    "rows",
    "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
    "max_pool2d_indices",
    "per_plane",
    "planes",
    "pool2d",
    "is_dask",
]


def is_dask(*arrays):
    """Whether any of `arrays` (None ignored) is a Dask array."""
    for a in arrays:  # a loop, not any(generator): called on every op
        if a is not None and _compat.is_dask_array(a):
            return True
    return False
