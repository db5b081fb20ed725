"""The array backends of in-memory arrays: the array interface (ARRAY_OPS) over one kernel
backend, fastconv._backend.cpu.ops (NumPy arrays) or fastconv._backend.gpu.ops (CuPy arrays).

The dispatcher hands an op validated arguments, inputs already C-contiguous in the computing
dtype, a validated geometry and `out` (checked, or None). Each op allocates what it returns, asks
the planner what the kernel backend runs (fusions included), and calls the kernels; it returns
its results. The Dask backend (fastconv._backend.dask) has the same ops, lazily, and runs these
on its blocks.
"""

import numpy as np

from .. import _compat
from . import ARRAY_OPS  # noqa: F401  (the interface: the op names this class has)
from . import losses as _losses


def _kernel_args(geom):
    """The kernel backends' geometry arguments: stride, (pad_top, pad_left), dilation, groups."""
    return geom.stride, (geom.padding[0], geom.padding[2]), geom.dilation, geom.groups


def _pool_args(geom):
    return geom.kernel, geom.stride, geom.padding


class Eager:
    """The array ops of one device ("cpu" or "gpu") over its kernel backend module."""

    def __init__(self, device, kernels, xp):
        self.device, self.kernels, self.xp = device, kernels, xp
        # The CPU's conv2d_backward in one kernel backend call, by steps prepared per signature
        # (cpu/ops.py); None: the ops one by one.
        self._backward_prepared = getattr(kernels, "conv2d_backward_prepared", None)

    def __repr__(self):
        return f"Eager({self.device!r})"

    def _empty(self, shape, dtype):
        return self.xp.empty(shape, dtype=dtype)

    # ---------------------------------------------------------------------- convolution
    def conv2d(self, x, weight, bias, geom, relu, algorithm, out):
        """y (N, F, OH, OW) = conv2d(x, weight) + bias, then ReLU if `relu`; into `out` if given."""
        y = self._empty(geom.output_shape, x.dtype) if out is None else out
        if y.size:
            self.kernels.conv2d_forward(x, weight, bias, y, *_kernel_args(geom), relu, algorithm)
        return y

    def conv2d_backward(self, grad_out, x, weight, geom, needs, algorithm, out):
        """(grad_input, grad_weight, grad_bias), None where not in `needs`; written into the
        arrays of `out` (a checked triple, None entries allocated) where given."""
        gi_out, gw_out, gb_out = (None, None, None) if out is None else out
        dtype, empty = grad_out.dtype, self.xp.empty
        grad_input = grad_weight = grad_bias = None
        if "input" in needs:
            grad_input = empty(x.shape, dtype) if gi_out is None else gi_out
        if "weight" in needs:
            grad_weight = empty(weight.shape, dtype) if gw_out is None else gw_out
        if "bias" in needs:
            grad_bias = empty(weight.shape[:1], dtype) if gb_out is None else gb_out
        prepared = self._backward_prepared
        args = _kernel_args(geom)
        if prepared is not None and prepared(
            grad_out, x, weight, grad_input, grad_weight, grad_bias, *args, algorithm
        ):
            return grad_input, grad_weight, grad_bias
        if grad_input is not None:
            self._grad_input_into(grad_out, weight, grad_input, geom, algorithm)
        fused = grad_weight is not None and grad_bias is not None
        if fused and self._fuses("grad_weight_bias", x, weight.shape, geom, algorithm):
            self.kernels.conv2d_grad_weight_bias(grad_out, x, grad_weight, grad_bias, *args)
            return grad_input, grad_weight, grad_bias
        if grad_weight is not None:
            self._grad_weight_into(grad_out, x, grad_weight, geom, algorithm)
        if grad_bias is not None:
            self._grad_bias_into(grad_out, grad_bias)
        return grad_input, grad_weight, grad_bias

    def _fuses(self, fusion, x, w_shape, geom, algorithm):
        """Whether the planner runs the pair of passes `fusion` as one kernel backend call."""
        y_shape = geom.output_shape
        args = (x.shape, w_shape, y_shape, *_kernel_args(geom), x.dtype, algorithm)
        return self.kernels.conv2d_fuses(fusion, *args)

    def _grad_bias_into(self, grad_out, grad_bias):
        if grad_out.size == 0:
            grad_bias[...] = 0
        else:
            self.kernels.conv2d_grad_bias(grad_out, grad_bias)
        return grad_bias

    def _grad_input_into(self, grad_out, weight, grad_input, geom, algorithm):
        if grad_input.size:
            self.kernels.conv2d_grad_input(
                grad_out, weight, grad_input, *_kernel_args(geom), algorithm
            )
        return grad_input

    def _grad_weight_into(self, grad_out, x, grad_weight, geom, algorithm):
        if grad_out.size == 0:
            grad_weight[...] = 0
        else:
            self.kernels.conv2d_grad_weight(
                grad_out, x, grad_weight, *_kernel_args(geom), algorithm
            )
        return grad_weight

    def conv2d_grad_input(self, grad_out, weight, input_shape, geom, algorithm):
        grad_input = self._empty(input_shape, grad_out.dtype)
        return self._grad_input_into(grad_out, weight, grad_input, geom, algorithm)

    def conv2d_grad_weight(self, grad_out, x, weight_shape, geom, algorithm):
        grad_weight = self._empty(weight_shape, grad_out.dtype)
        return self._grad_weight_into(grad_out, x, grad_weight, geom, algorithm)

    def conv2d_and_grad_weight(self, x, weight, grad_y, geom):
        """(conv2d(x, weight), conv2d_grad_weight(grad_y, x)): both gradients of a transposed
        convolution, whose input is this convolution's grad_y; in one pass over x's columns
        where the planner fuses them."""
        if self._fuses("forward_grad_weight", x, weight.shape, geom, "auto"):
            y = self._empty(geom.output_shape, x.dtype)
            grad_weight = self._empty(weight.shape, x.dtype)
            self.kernels.conv2d_forward_and_grad_weight(
                x, weight, y, grad_y, grad_weight, *_kernel_args(geom)
            )
            return y, grad_weight
        y = self.conv2d(x, weight, None, geom, False, "auto", None)
        return y, self.conv2d_grad_weight(grad_y, x, weight.shape, geom, "auto")

    def conv2d_grad_bias(self, grad_out):
        """grad_out (N, F, OH, OW) summed over N, OH, OW: (F,)."""
        return self._grad_bias_into(grad_out, self._empty((grad_out.shape[1],), grad_out.dtype))

    # ------------------------------------------------------------------------- pooling
    def max_pool2d(self, x, geom, return_indices, out):
        """y, and (y, indices) with return_indices; written into `out` where given (a checked
        pair (y, indices), None entries allocated)."""
        y, indices = (None, None) if out is None else out
        if y is None:
            y = self._empty(geom.output_shape, x.dtype)
        if indices is None:
            indices = self._empty(geom.output_shape, np.int64)
        if y.size:
            self.kernels.max_pool2d_forward(x, y, indices, *_pool_args(geom), geom.dilation)
        return (y, indices) if return_indices else y

    def adaptive_max_pool2d(self, x, windows_h, windows_w, return_indices):
        """Maxima over torch's adaptive windows [(start, stop)] of rows and of columns, with
        max_pool2d's indices (which max_pool2d_backward takes)."""
        shape = x.shape[:2] + (len(windows_h), len(windows_w))
        y = self._empty(shape, x.dtype)
        indices = self._empty(shape, np.int64)
        if y.size:
            self.kernels.adaptive_max_pool2d_forward(x, y, indices, windows_h, windows_w)
        return (y, indices) if return_indices else y

    def max_pool2d_backward(self, grad_out, indices, input_shape, out):
        grad_x = self._empty(input_shape, grad_out.dtype) if out is None else out
        if grad_out.size == 0:
            grad_x[...] = 0
            return grad_x
        # The CPU kernel checks the indices as it scatters (ValueError for one outside [0, H*W),
        # grad_x then undefined). On the GPU the check would read values back (a host
        # synchronisation in every training step): there, out-of-range indices add nothing
        # instead (docs/guide/gpu.md).
        self.kernels.max_pool2d_backward(grad_out, indices, grad_x)
        return grad_x

    def avg_pool2d(self, x, geom, count_include_pad, divisor_override):
        y = self._empty(geom.output_shape, x.dtype)
        if y.size:
            self.kernels.avg_pool2d_forward(
                x, y, *_pool_args(geom), count_include_pad, divisor_override
            )
        return y

    def avg_pool2d_backward(self, grad_out, input_shape, geom, count_include_pad, divisor_override):
        grad_x = self._empty(input_shape, grad_out.dtype)
        if grad_out.size == 0:
            grad_x[...] = 0
            return grad_x
        self.kernels.avg_pool2d_backward(
            grad_out, grad_x, *_pool_args(geom), count_include_pad, divisor_override
        )
        return grad_x

    def adaptive_avg_pool2d(self, x, windows_h, windows_w):
        """Means over torch's adaptive windows [(start, stop)] of rows, then of columns, one
        window at a time with the array module's reductions (no BLAS: the same numbers for any
        thread count)."""
        xp = self.xp
        N, C, _, W = x.shape
        OH, OW = len(windows_h), len(windows_w)
        rows = xp.empty((N, C, OH, W), x.dtype)
        for i, (a, b) in enumerate(windows_h):
            rows[:, :, i, :] = x[:, :, a:b, :].mean(axis=2)
        y = xp.empty((N, C, OH, OW), x.dtype)
        for j, (a, b) in enumerate(windows_w):
            y[:, :, :, j] = rows[:, :, :, a:b].mean(axis=3)
        return y

    def adaptive_avg_pool2d_backward(self, grad_out, input_shape, windows_h, windows_w):
        """Each output's gradient spread evenly over its window."""
        xp = self.xp
        N, C, H, W = input_shape
        OH = grad_out.shape[2]
        grad_rows = xp.zeros((N, C, OH, W), grad_out.dtype)
        for j, (a, b) in enumerate(windows_w):
            grad_rows[:, :, :, a:b] += grad_out[:, :, :, j : j + 1] / (b - a)
        grad_x = xp.zeros((N, C, H, W), grad_out.dtype)
        for i, (a, b) in enumerate(windows_h):
            grad_x[:, :, a:b, :] += grad_rows[:, :, i : i + 1, :] / (b - a)
        return grad_x

    # --------------------------------------------------------------------- elementwise
    def _array(self, a):
        # NumPy's ufuncs give a scalar for a 0-d array: the ops promise an array of x's shape
        return np.asarray(a) if isinstance(a, np.generic) else a

    def relu(self, x):
        return self._array(self.xp.maximum(x, 0))

    def relu_backward(self, grad_out, y, out):
        """grad_out where y > 0, else 0; into `out` where given (which may be grad_out)."""
        grad_x = self._empty(grad_out.shape, grad_out.dtype) if out is None else out
        if grad_x.size:
            self.kernels.relu_backward(grad_out, y, grad_x)
        return grad_x

    def sigmoid(self, x):
        """1 / (1 + exp(-x)) from z = exp(-|x|) in (0, 1]: 1 / (1 + z) for x >= 0, z / (1 + z)
        for x < 0, so no exp overflows and the negative tail keeps its relative precision."""
        xp = self.xp
        # exp(-|x|) underflows to 0 for large |x|: the right limit, not worth a warning (or an
        # exception under np.errstate(all="raise"))
        with np.errstate(under="ignore"):
            z = self._array(xp.abs(x))  # an array: the ufuncs below write into it
            xp.negative(z, out=z)
            xp.exp(z, out=z)
            numerator = xp.where(x >= 0, xp.ones_like(z), z)
            z += 1
            numerator /= z
        return numerator

    def sigmoid_backward(self, grad_out, y):
        return self._array(grad_out * y * (1 - y))

    def tanh(self, x):
        return self._array(self.xp.tanh(x))

    def tanh_backward(self, grad_out, y):
        return self._array(grad_out * (1 - y * y))

    # --------------------------------------------------------------------------- dense
    def linear(self, x, weight, bias, relu, out):
        y = self._empty((x.shape[0], weight.shape[0]), x.dtype) if out is None else out
        if y.size == 0:
            return y
        if x.shape[1] == 0:
            y[...] = 0 if bias is None else bias
            if relu:
                self.xp.maximum(y, 0, out=y)
            return y
        self.kernels.linear_forward(x, weight, bias, y, relu)
        return y

    def linear_backward(self, grad_out, x, weight, needs, out):
        """(grad_input, grad_weight, grad_bias), None where not in `needs`; written into the
        arrays of `out` (a checked triple, None entries allocated) where given."""
        dtype = grad_out.dtype
        given = dict(zip(("input", "weight", "bias"), (None,) * 3 if out is None else out))
        shapes = {"input": x.shape, "weight": weight.shape, "bias": (weight.shape[0],)}
        grads = {
            name: (self._empty(shapes[name], dtype) if given[name] is None else given[name])
            if name in needs
            else None
            for name in shapes
        }
        if grad_out.size == 0 or x.shape[1] == 0:
            for g in grads.values():
                if g is not None:
                    g[...] = 0
            if grad_out.size == 0 or grads["bias"] is None:
                return grads["input"], grads["weight"], grads["bias"]
        self.kernels.linear_backward(
            grad_out, x, weight, grads["input"], grads["weight"], grads["bias"]
        )
        return grads["input"], grads["weight"], grads["bias"]

    def _labels(self, labels, K):
        # Not on the GPU: reading labels back would synchronise every training step; there a
        # label outside [0, K) gives a NaN loss instead (docs/guide/gpu.md).
        if labels.size and self.device == "cpu":
            if int(labels.min()) < 0 or int(labels.max()) >= K:
                raise ValueError(f"labels must lie in [0, {K}) (the number of classes)")
        return labels

    def softmax_cross_entropy(self, logits, labels, out):
        """(mean loss (0-d), log_probs (N, K)); log_probs written into `out` where given."""
        N, K = logits.shape
        labels = self._labels(labels, K)
        log_probs = self._empty((N, K), logits.dtype) if out is None else out
        losses = self._empty((N,), logits.dtype)
        self.kernels.softmax_cross_entropy_forward(logits, labels, log_probs, losses)
        return losses.mean(), log_probs

    def softmax_cross_entropy_backward(self, log_probs, labels, grad_loss, out):
        N, K = log_probs.shape
        labels = self._labels(labels, K)
        grad = self._empty((N, K), log_probs.dtype) if out is None else out
        self.kernels.softmax_cross_entropy_backward(log_probs, labels, grad, grad_loss / N)
        return grad

    def _log_softmax(self, logits):
        """log_probs (M, C), stable: the kernels' softmax cross-entropy forward, whose labels
        (zeros here) only choose the losses it also writes."""
        M, C = logits.shape
        log_probs = self._empty((M, C), logits.dtype)
        if M:
            labels = self.xp.zeros(M, np.int64)
            losses = self._empty((M,), logits.dtype)
            self.kernels.softmax_cross_entropy_forward(logits, labels, log_probs, losses)
        return log_probs

    def _bad_targets(self, result, target, ignore_index, C):
        """Class indices outside [0, C) that are not ignore_index: a ValueError on the CPU;
        NaN rows on the GPU, where checking would read values back (a host synchronisation
        in every training step), as for softmax_cross_entropy's labels."""
        if target.ndim != 1 or target.size == 0:
            return result
        bad = _losses.out_of_range(target, ignore_index, C)
        if self.device == "cpu":
            if bad.any():
                raise ValueError(
                    f"target must hold class indices in [0, {C}) or ignore_index "
                    f"({ignore_index}), got {int(target[bad][0])}"
                )
            return result
        return self.xp.where(bad if result.ndim == 1 else bad[:, None], np.nan, result)

    def cross_entropy(self, logits, target, weight, ignore_index, reduction, label_smoothing):
        """logits (M, C), target (M,) int64 class indices or (M, C) probabilities -> the losses
        (M,) ('none') or their sum or mean, 0-d (fastconv._backend.losses has the formulas)."""
        xp = self.xp
        M, C = logits.shape
        log_probs = self._log_softmax(logits)
        losses = _losses.losses(xp, log_probs, target, weight, ignore_index, label_smoothing)
        losses = self._bad_targets(losses, target, ignore_index, C)
        if reduction == "none":
            return losses
        total = self._array(losses.sum())
        if reduction == "sum":
            return total
        count = _losses.denominator(xp, target, weight, ignore_index, C, logits.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):  # no rows counted: NaN, as torch
            return self._array(xp.asarray(total / count, dtype=logits.dtype))

    def cross_entropy_backward(
        self, grad_out, logits, target, weight, ignore_index, reduction, label_smoothing
    ):
        """grad_logits (M, C) of cross_entropy; grad_out (M,) for reduction 'none', else a
        float or a 0-d array (of logits' dtype)."""
        xp = self.xp
        M, C = logits.shape
        if M == 0:
            return self._empty((0, C), logits.dtype)
        log_probs = self._log_softmax(logits)
        # A 'mean' that counts nothing divides by 0: NaN (ignored rows stay 0), as torch's
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = grad_out
            if reduction == "mean":
                scale = grad_out / _losses.denominator(
                    xp, target, weight, ignore_index, C, logits.dtype
                )
            grad = _losses.grad(xp, log_probs, target, weight, ignore_index, label_smoothing, scale)
        return self._bad_targets(grad, target, ignore_index, C)


def cpu():
    from .cpu import ops

    return Eager("cpu", ops, np)


def gpu():
    from .gpu import ops

    return Eager("gpu", ops, _compat.require_cupy())
