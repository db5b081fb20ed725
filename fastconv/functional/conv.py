"""Public 2-D convolution: conv2d and its gradients (NCHW, cross-correlation, torch's semantics).

Each function validates its arguments, asks the dispatcher (fastconv._dispatch) for the backend
of its arrays and the computing dtype (inputs made C-contiguous in it, at most one copy each),
and calls the backend. Inputs are never
modified.
"""

from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _dispatch
from .._typing import Array, DTypeLike, IntPair, Padding
from .._validation import (
    NEEDS,
    as_activation,
    as_algorithm,
    as_needs,
    as_shape,
    conv_geometry,
    shapes_geometry,
)
from .._validation import arrays as _arrays
from ._batch import unbatched

# Calls validated before, by signature (fastconv._dispatch.signature): the backend and what
# validation gave. A call of a known signature goes straight to the backend.
_CONV2D_SEEN = _dispatch.Memo()
_CONV2D_BACKWARD_SEEN = _dispatch.Memo()


def _check_grad_out(grad_out, shape, names):
    if tuple(grad_out.shape) != tuple(shape):
        raise ValueError(
            f"grad_out must have the shape of conv2d's output for {names[0]} and "
            f"{names[1]}, {tuple(shape)}, got {tuple(grad_out.shape)}"
        )


@unbatched(x="N, C, H, W", out="N, F, OH, OW")
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
    y : ndarray (N, F, OH, OW)
        float32 or float64 (see the dtype rule in docs/guide/dtypes.md), on the inputs' device
        (NumPy or CuPy).
    """
    arguments = (stride, padding, dilation, groups, activation, algorithm)
    key = None if out is not None else _dispatch.signature((x, weight, bias), arguments)
    known = _CONV2D_SEEN.get(key)
    if known is not None:
        be, geom = known
        return be.conv2d(x, weight, bias, geom, activation == "relu", algorithm, None)
    be = _dispatch.backend(x=x, weight=weight, bias=bias, out=out)
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
    dtype = _dispatch.dtype(x=x, weight=weight, bias=bias)
    out = _dispatch.output(be, out, geom.output_shape, dtype, x=x, weight=weight, bias=bias)
    x, weight, bias = _dispatch.inputs(dtype, x, weight, bias)
    _CONV2D_SEEN.remember(key, (be, geom))
    return be.conv2d(x, weight, bias, geom, activation == "relu", algorithm, out)


@unbatched((0,), grad_out="N, F, OH, OW", x="N, C, H, W")
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
    arguments = (stride, padding, dilation, groups, needs, algorithm)
    key = _dispatch.signature((grad_out, x, weight), arguments)
    known = _CONV2D_BACKWARD_SEEN.get(key)
    if known is not None:
        be, geom, needs = known
        return be.conv2d_backward(grad_out, x, weight, geom, needs, algorithm)
    needs = as_needs(needs)
    algorithm = as_algorithm(algorithm)
    be = _dispatch.backend(grad_out=grad_out, x=x, weight=weight)
    grad_out = _arrays.as_array(grad_out, "grad_out", 4)
    x = _arrays.as_array(x, "x", 4)
    weight = _arrays.as_array(weight, "weight", 4)
    geom = conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    _check_grad_out(grad_out, geom.output_shape, ("x", "weight"))
    dtype = _dispatch.dtype(grad_out=grad_out, x=x, weight=weight)
    grad_out, x, weight = _dispatch.inputs(dtype, grad_out, x, weight)
    _CONV2D_BACKWARD_SEEN.remember(key, (be, geom, frozenset(needs)))
    return be.conv2d_backward(grad_out, x, weight, geom, needs, algorithm)


@unbatched(grad_out="N, F, OH, OW", input_shape="N, C, H, W")
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
    geometry = (stride, padding, dilation, groups)
    return _one_gradient("input", grad_out, weight, input_shape, geometry, algorithm)


@unbatched((), grad_out="N, F, OH, OW", x="N, C, H, W")
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
    geometry = (stride, padding, dilation, groups)
    return _one_gradient("weight", grad_out, x, weight_shape, geometry, algorithm)


def _one_gradient(wrt, grad_out, operand, shape, geometry, algorithm):
    """conv2d_grad_input (`wrt` "input": `operand` is the weight, `shape` the input's) or
    conv2d_grad_weight ("weight": `operand` is x, `shape` the weight's), validated and run."""
    operand_name, shape_name = (
        ("weight", "input_shape") if wrt == "input" else ("x", "weight_shape")
    )
    algorithm = as_algorithm(algorithm)
    be = _dispatch.backend(grad_out=grad_out, **{operand_name: operand})
    grad_out = _arrays.as_array(grad_out, "grad_out", 4)
    operand = _arrays.as_array(operand, operand_name, 4)
    shape = as_shape(shape, shape_name, 4)
    if wrt == "input":  # conv_geometry takes the input's side first
        shapes, names = (shape, operand.shape), (shape_name, operand_name)
    else:
        shapes, names = (operand.shape, shape), (operand_name, shape_name)
    geom = conv_geometry(*shapes, *geometry, names)
    _check_grad_out(grad_out, geom.output_shape, names)
    dtype = _dispatch.dtype(grad_out=grad_out, **{operand_name: operand})
    grad_out, operand = _dispatch.inputs(dtype, grad_out, operand)
    return getattr(be, f"conv2d_grad_{wrt}")(grad_out, operand, shape, geom, algorithm)


def _plan_args(input_shape, weight_shape, stride, padding, dilation, groups, dtype, device):
    input_shape, weight_shape, geom = shapes_geometry(
        input_shape, weight_shape, stride, padding, dilation, groups
    )
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a NumPy dtype, got {dtype!r}") from None
    dtype = _dispatch.dtype(dtype=np.empty(0, dtype))
    kernels = _dispatch.device(device)
    padding = (geom.padding[0], geom.padding[2])  # top, left: the rest follows from the shapes
    args = (geom.stride, padding, geom.dilation, geom.groups)
    return kernels, (input_shape, weight_shape, geom.output_shape, *args, dtype)


_FUSION_TEXT = {
    "grad_weight_bias": "grad_weight + grad_bias in one pass over grad_out (conv2d_backward)",
    "forward_grad_weight": "forward + grad_weight sharing one im2col (conv_transpose2d_backward)",
}


class ConvPlan(Dict[str, str]):
    """What conv2d and its gradients run for one convolution: conv2d_plan's answer.

    A dict {"forward": algorithm, "grad_input": algorithm, "grad_weight": algorithm}, equal to
    the plain dict of the same items, with three more attributes (``str(plan)`` shows them all):

    Attributes
    ----------
    fusions : dict
        {"grad_weight_bias": bool, "forward_grad_weight": bool}: whether conv2d_backward computes
        grad_weight and grad_bias (when both are asked for) in one pass over grad_out, and
        whether the two gradients of the transposed convolution that is this convolution's
        adjoint (conv_transpose2d_backward: this forward and this grad-weight) share one
        im2col. Never with a forced algorithm.
    sources : dict
        {pass: where its algorithm comes from}: "heuristic" (the planner's "auto" rule),
        "forced" (``algorithm=``), "autotune" (measured in this process) or "autotune cache"
        (read from the autotune disk cache).
    seconds : dict
        {pass: {algorithm: seconds per call, None where not timed}} for the autotuned passes
        (the least of each candidate's timed runs; {} for the others).
    """

    fusions: Dict[str, bool]
    sources: Dict[str, str]
    seconds: Dict[str, Dict[str, Optional[float]]]

    def __init__(
        self,
        algorithms: Mapping[str, str],
        fusions: Mapping[str, bool],
        sources: Mapping[str, str],
        seconds: Mapping[str, Mapping[str, Optional[float]]],
    ) -> None:
        super().__init__(algorithms)
        self.fusions = dict(fusions)
        self.sources = dict(sources)
        self.seconds = {p: dict(t) for p, t in seconds.items()}

    def __repr__(self) -> str:
        return (
            f"ConvPlan({dict(self)!r}, fusions={self.fusions!r}, sources={self.sources!r}, "
            f"seconds={self.seconds!r})"
        )

    def __str__(self) -> str:
        lines = []
        for pass_, algorithm in self.items():
            line = f"{pass_:<12} {algorithm:<10} {self.sources.get(pass_, '')}"
            times = self.seconds.get(pass_)
            if times:
                timed = sorted((t, a) for a, t in times.items() if t is not None)
                parts = [f"{a} {t * 1e3:.3g} ms" for t, a in timed]
                parts += [f"{a} not timed" for a, t in times.items() if t is None]
                line += ": " + ", ".join(parts)
            lines.append(line)
        for fusion, on in self.fusions.items():
            lines.append(f"{'fused' if on else 'not fused'}: {_FUSION_TEXT.get(fusion, fusion)}")
        return "\n".join(lines)


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
) -> ConvPlan:
    """What computes each pass of this convolution: algorithms, fusions, autotuning's times.

    Parameters
    ----------
    input_shape : (N, C, H, W); weight_shape : (F, C // groups, KH, KW)
    stride, padding, dilation, groups : as for conv2d.
    dtype : the computing dtype (float32 or float64; the dtype rule of conv2d applies).
    algorithm : "auto" or a name, as conv2d takes it: ValueError if it cannot run a pass.
    device : "cpu" (NumPy arrays) or "gpu" (CuPy arrays).

    Returns
    -------
    ConvPlan: a dict {"forward": name, "grad_input": name, "grad_weight": name} with
    ``fusions``, ``sources`` and ``seconds`` (see ConvPlan; ``print(plan)`` shows them). For
    finite data: inputs holding inf or NaN are computed on paths that keep NumPy's inf/NaN
    semantics ("gemm"), whatever the plan. With autotuning on (set_autotune) and "auto", the
    passes of a CPU convolution not tuned yet are tuned by this call, on random data of these
    shapes, so that the plan is what the calls will run.
    """
    algorithm = as_algorithm(algorithm)
    be, args = _plan_args(
        input_shape, weight_shape, stride, padding, dilation, groups, dtype, device
    )
    return ConvPlan(**be.conv2d_plan(*args, algorithm))


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
