"""The Dask backend: the array interface (fastconv._backend.ARRAY_OPS) over Dask arrays, lazily.

Each block is computed by the in-memory backend of its array type (NumPy: CPU kernels, CuPy: GPU
kernels), so the result is fastconv's wherever Dask runs it (threads, processes, a
``dask.distributed`` cluster). Shapes, chunks, dtype and the array type (``_meta``) of the lazy
result are exact before anything is computed.

How a convolution is cut:
- along N: one call per chunk;
- along H and W: output blocks whose windows start in one input chunk; each reads the input rows
  and columns its windows span (the halo), with per-block padding where the block meets the
  image's border, so 'same', asymmetric padding, stride and dilation are exact (a block whose
  windows read only padding is zeros of its span, with no padding of its own);
- along C: with one group, partial convolutions of each channel chunk summed by a tree
  reduction; with groups, chunks are aligned to whole groups and give their own filters.
Grad-input is cut like x; grad-weight and grad-bias are sums over the blocks. Pooling is cut
along N and C, and along H and W when no window runs past the border; adaptive pooling and the
pooling gradients take whole planes; dense ops and the losses are cut along N.

Weights are small: a Dask weight is computed once, when the call is made.
"""

from . import conv as _conv
from . import dense as _dense
from . import pool as _pool


def _whole_planes(op, grad_out, input_shape, *args):
    """A pooling gradient `op`(grad_out, input_shape, *args) on whole planes (N, C) blocks."""
    return _pool.per_plane(op, grad_out, plane=input_shape[2:], dtype=grad_out.dtype, args=args)


class Dask:
    """The array ops on Dask arrays (a peer of fastconv._backend.eager.Eager)."""

    def __repr__(self):
        return "Dask()"

    # ---------------------------------------------------------------------- convolution
    def conv2d(self, x, weight, bias, geom, relu, algorithm, out):
        return _conv.conv2d(x, weight, bias, geom, relu, algorithm)

    def conv2d_backward(self, grad_out, x, weight, geom, needs, algorithm, out):
        # `out` is None: the dispatcher refuses out= for lazy results
        return _conv.conv2d_backward(grad_out, x, weight, geom, needs, algorithm)

    def conv2d_grad_input(self, grad_out, weight, input_shape, geom, algorithm):
        return _conv.conv2d_grad_input(grad_out, weight, input_shape, geom, algorithm)

    def conv2d_grad_weight(self, grad_out, x, weight_shape, geom, algorithm):
        return _conv.conv2d_grad_weight(grad_out, x, weight_shape, geom, algorithm)

    def conv2d_grad_bias(self, grad_out):
        return _conv.grad_bias(grad_out)

    def conv2d_and_grad_weight(self, x, weight, grad_y, geom):
        y = _conv.conv2d(x, weight, None, geom, False, "auto")
        return y, _conv.conv2d_grad_weight(grad_y, x, weight.shape, geom, "auto")

    # ------------------------------------------------------------------------- pooling
    def max_pool2d(self, x, geom, return_indices, out):
        # `out` is None here and below: the dispatcher refuses out= for lazy results
        return _pool.max_pool2d(x, geom, return_indices)

    def max_pool2d_backward(self, grad_out, indices, input_shape, out):
        plane = input_shape[2:]
        return _pool.per_plane(
            "max_pool2d_backward",
            grad_out,
            indices,
            plane=plane,
            dtype=grad_out.dtype,
            args=(None,),
        )

    def avg_pool2d(self, x, geom, count_include_pad, divisor_override):
        return _pool.pool2d(
            "avg_pool2d",
            x,
            geom,
            x.dtype,
            count_include_pad=count_include_pad,
            divisor_override=divisor_override,
        )

    def avg_pool2d_backward(self, grad_out, input_shape, geom, count_include_pad, divisor_override):
        return _whole_planes(
            "avg_pool2d_backward", grad_out, input_shape, geom, count_include_pad, divisor_override
        )

    def adaptive_avg_pool2d(self, x, windows_h, windows_w):
        out_plane = (len(windows_h), len(windows_w))
        return _pool.planes("adaptive_avg_pool2d", x, out_plane, x.dtype, windows_h, windows_w)

    def adaptive_avg_pool2d_backward(self, grad_out, input_shape, windows_h, windows_w):
        return _whole_planes(
            "adaptive_avg_pool2d_backward", grad_out, input_shape, windows_h, windows_w
        )

    def adaptive_max_pool2d(self, x, windows_h, windows_w, return_indices):
        return _pool.adaptive_max_pool2d(x, windows_h, windows_w, return_indices)

    # --------------------------------------------------------------------- elementwise
    def relu(self, x):
        return _dense.elementwise("relu", x)

    def relu_backward(self, grad_out, y, out):
        return _dense.elementwise("relu_backward", grad_out, y, out=None)

    def sigmoid(self, x):
        return _dense.elementwise("sigmoid", x)

    def sigmoid_backward(self, grad_out, y):
        return _dense.elementwise("sigmoid_backward", grad_out, y)

    def tanh(self, x):
        return _dense.elementwise("tanh", x)

    def tanh_backward(self, grad_out, y):
        return _dense.elementwise("tanh_backward", grad_out, y)

    # --------------------------------------------------------------------------- dense
    def linear(self, x, weight, bias, relu, out):
        return _dense.rows("linear", x, weight, bias, out_cols=weight.shape[0], relu=relu, out=None)

    def linear_backward(self, grad_out, x, weight, needs, out):
        return _dense.linear_backward(grad_out, x, weight, needs)

    def softmax_cross_entropy(self, logits, labels, out):
        return _dense.softmax_cross_entropy(logits, labels)

    def softmax_cross_entropy_backward(self, log_probs, labels, grad_loss, out):
        return _dense.softmax_cross_entropy_backward(log_probs, labels, grad_loss)

    def cross_entropy(self, logits, target, weight, ignore_index, reduction, label_smoothing):
        return _dense.cross_entropy(
            logits, target, weight, ignore_index, reduction, label_smoothing
        )

    def cross_entropy_backward(
        self, grad_out, logits, target, weight, ignore_index, reduction, label_smoothing
    ):
        return _dense.cross_entropy_backward(
            grad_out, logits, target, weight, ignore_index, reduction, label_smoothing
        )
