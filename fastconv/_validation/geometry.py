"""Convolution and pooling geometry: padding forms, output sizes (the one place that computes
them), and the validated geometry every public function works from."""

import functools
from collections import namedtuple

import numpy as np

from .values import as_int, as_pair, as_shape, plain, shown

# Every GEMM dimension and leading dimension must fit BLAS's 32-bit int: a plane (H * W, OH * OW),
# an im2col row (C * KH * KW) and the filters (F).
BLAS_INT_MAX = 2**31 - 1


def too_big_for_blas(cause):
    """The ValueError for a GEMM dimension past BLAS_INT_MAX; `cause` names the argument that
    leads to it and the size it makes ("padding 9 makes an output of 20 x 20: 400 elements per
    plane")."""
    return ValueError(
        f"{cause}, more than 2**31 - 1, the most the kernels' 32-bit BLAS indices take"
    )


ConvGeometry = namedtuple("ConvGeometry", "stride padding dilation groups output_shape")
ConvGeometry.__doc__ = """Normalised convolution arguments.

stride, dilation: (h, w); padding: (top, bottom, left, right); output_shape: (N, F, OH, OW).
"""


def _same_padding(size, kernel, stride, dilation):
    """TensorFlow's 'SAME': output = ceil(size / stride); the odd extra goes after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def conv_padding(padding, hw, khw, stride, dilation):
    """Any accepted padding form -> (top, bottom, left, right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            return _same_padding(hw[0], khw[0], stride[0], dilation[0]) + _same_padding(
                hw[1], khw[1], stride[1], dilation[1]
            )
        raise ValueError(
            f"padding must be an int, a pair, a pair of pairs, 'valid' or 'same'; got {shown(padding)}"
        )
    if isinstance(padding, (tuple, list)):
        if len(padding) not in (1, 2):  # (p,): torch's one-element form, as as_pair takes it
            raise ValueError(
                f"padding must be an int, (ph, pw) or ((top, bottom), (left, right)); "
                f"got {shown(padding)}"
            )
        if len(padding) == 2 and all(isinstance(p, (tuple, list)) for p in padding):
            out = []
            for axis, pair in zip(("h", "w"), padding):
                if len(pair) != 2:
                    raise ValueError(
                        f"padding must be ((top, bottom), (left, right)); got {shown(padding)}"
                    )
                out += [as_int(p, f"padding ({axis})", 0) for p in pair]
            return tuple(out)
        ph, pw = as_pair(padding, "padding", 0)
        return (ph, ph, pw, pw)
    p = as_int(padding, "padding", 0)
    return (p, p, p, p)


def output_size(size, kernel, stride, dilation, pad_before, pad_after):
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def conv_geometry(
    input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1, names=("x", "weight")
):
    """Validate convolution arguments for x (N,C,H,W), weight (F,C//groups,KH,KW) -> ConvGeometry.

    `names`: what the caller calls the input and the weight (or their shapes), for messages.
    A pure function of its arguments: cached for the plain forms (ints, tuples of ints, str),
    since embedding code makes many small calls with the same few geometries."""
    if type(groups) is int and plain(stride) and plain(padding) and plain(dilation):
        shapes = (tuple(input_shape), tuple(weight_shape))
        return _cached_geometry(*shapes, stride, padding, dilation, groups, names)
    return _conv_geometry(input_shape, weight_shape, stride, padding, dilation, groups, names)


@functools.lru_cache(maxsize=1024)
def _cached_geometry(input_shape, weight_shape, stride, padding, dilation, groups, names):
    return _conv_geometry(input_shape, weight_shape, stride, padding, dilation, groups, names)


def _conv_geometry(input_shape, weight_shape, stride, padding, dilation, groups, names):
    N, C, H, W = input_shape
    F, Cg, KH, KW = weight_shape
    xn, wn = names
    groups = as_int(groups, "groups", 1)
    stride = as_pair(stride, "stride", 1)
    dilation = as_pair(dilation, "dilation", 1)
    for name, value in (
        (f"{xn} channels (C, axis 1)", C),
        (f"{xn} height (H, axis 2)", H),
        (f"{xn} width (W, axis 3)", W),
        (f"{wn} filters (F, axis 0)", F),
        (f"{wn} channels (C // groups, axis 1)", Cg),
        (f"{wn} height (KH, axis 2)", KH),
        (f"{wn} width (KW, axis 3)", KW),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if C != Cg * groups:
        raise ValueError(
            f"{xn} has C={C} channels but {wn} expects {wn}[1] * groups = "
            f"{Cg} * {groups} = {Cg * groups}"
        )
    if F % groups:
        raise ValueError(f"{wn}[0] (F={F}) must be divisible by groups={groups}")
    padding = conv_padding(padding, (H, W), (KH, KW), stride, dilation)
    OH = output_size(H, KH, stride[0], dilation[0], padding[0], padding[1])
    OW = output_size(W, KW, stride[1], dilation[1], padding[2], padding[3])
    if OH < 1 or OW < 1:
        raise ValueError(
            f"output size would be {OH}x{OW} (< 1): {xn} ({H}x{W}) with padding {padding} is "
            f"smaller than the kernel of {wn} ({KH}x{KW}) at dilation {dilation} "
            f"({dilation[0] * (KH - 1) + 1}x{dilation[1] * (KW - 1) + 1})"
        )
    # Huge strides or dilations of a size-1 kernel axis are valid but do not fit a C integer;
    # clamped, they give the same output.
    stride = (
        min(stride[0], H + padding[0] + padding[1]),
        min(stride[1], W + padding[2] + padding[3]),
    )
    dilation = (1 if KH == 1 else dilation[0], 1 if KW == 1 else dilation[1])
    if max(C * KH * KW, OH * OW, H * W, F) > BLAS_INT_MAX:
        raise _conv_too_big(names, (C, H, W), (F, KH, KW), padding, (OH, OW))
    return ConvGeometry(stride, padding, dilation, groups, (N, F, OH, OW))


def _padding_text(padding):
    """(top, bottom, left, right) as the user most likely wrote it: one int when all are equal."""
    if len(set(padding)) == 1:
        return str(padding[0])
    return f"(top, bottom, left, right) {padding}"


def _conv_too_big(names, input_chw, weight_fhw, padding, output_hw):
    """too_big_for_blas for the first GEMM dimension of a convolution past the limit, naming
    what leads to it. The output plane can outgrow the input's only through padding."""
    xn, wn = names
    C, H, W = input_chw
    F, KH, KW = weight_fhw
    OH, OW = output_hw
    if H * W > BLAS_INT_MAX:
        return too_big_for_blas(f"{xn} of {H} x {W} has {H * W} elements per plane")
    if OH * OW > BLAS_INT_MAX:
        return too_big_for_blas(
            f"padding {_padding_text(padding)} makes an output of {OH} x {OW}: "
            f"{OH * OW} elements per plane"
        )
    if C * KH * KW > BLAS_INT_MAX:
        return too_big_for_blas(
            f"{xn}'s {C} channels times {wn}'s {KH} x {KW} kernel make a GEMM dimension "
            f"(C * KH * KW) of {C * KH * KW}"
        )
    return too_big_for_blas(f"{wn} has {F} filters (F, axis 0)")


def shapes_geometry(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    """(input_shape, weight_shape, ConvGeometry) for a convolution given by shapes (N, C, H, W)
    and (F, C // groups, KH, KW) rather than arrays; ValueError/TypeError like conv2d."""
    input_shape = as_shape(input_shape, "input_shape", 4)
    weight_shape = as_shape(weight_shape, "weight_shape", 4)
    names = ("input_shape", "weight_shape")
    geom = conv_geometry(input_shape, weight_shape, stride, padding, dilation, groups, names)
    return input_shape, weight_shape, geom


def conv_output_shape(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    """Output shape (N, F, OH, OW) of conv2d for x of `input_shape` (N, C, H, W) and weight of
    `weight_shape` (F, C // groups, KH, KW); raises ValueError/TypeError like conv2d."""
    geom = shapes_geometry(input_shape, weight_shape, stride, padding, dilation, groups)[2]
    return geom.output_shape


PoolGeometry = namedtuple("PoolGeometry", "kernel stride padding dilation output_shape")
PoolGeometry.__doc__ = """Normalised pooling arguments: kernel, stride, padding (symmetric) and
dilation as (h, w) pairs; output_shape (N, C, OH, OW)."""


def pool_output_size(size, kernel, stride, pad, ceil_mode=False, dilation=1):
    """Pooled length of one axis (torch's rule), over the dilated kernel dilation * (kernel - 1)
    + 1. ceil_mode counts a last, partial window, provided it starts inside the input or its
    left padding (never in the right padding alone)."""
    if not ceil_mode:
        return output_size(size, kernel, stride, dilation, pad, pad)
    out = -(-(size + 2 * pad - dilation * (kernel - 1) - 1) // stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _first_empty_window(size, kernel, stride, pad, dilation, out):
    """The first of `out` outputs whose dilated window holds no input cell (all its taps in the
    padding or skipping over the input), or None. Only windows starting in the left padding can
    be empty (any other starts on an input cell: a ceil-mode last window starts before size),
    and only when dilated (pad <= kernel / 2: an undilated one reaches cell 0)."""
    if dilation == 1:
        return None
    for o in range(min(out, -(-pad // stride))):
        start = o * stride - pad  # < 0
        first = -(-(-start) // dilation)  # the first tap at or after input cell 0
        if first >= kernel or start + first * dilation >= size:
            return o
    return None


def pool_geometry(
    input_shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, x_name="x"
):
    """Validate pooling arguments for x (N, C, H, W) -> PoolGeometry (floor mode unless
    ceil_mode, like torch). `x_name`: what the caller calls the input (or its shape)."""
    N, C, H, W = input_shape
    kernel = as_pair(kernel_size, "kernel_size", 1)
    # torch's stride=() (or []) means the default too
    default_stride = stride is None or (isinstance(stride, (tuple, list)) and not stride)
    stride = kernel if default_stride else as_pair(stride, "stride", 1)
    padding = as_pair(padding, "padding", 0)
    dilation = as_pair(dilation, "dilation", 1)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {type(ceil_mode).__name__}")
    for axis, k, p in zip(("h", "w"), kernel, padding):
        # torch's rule: half the kernel_size, whatever the dilation
        if 2 * p > k:
            raise ValueError(f"padding ({axis}) must be at most half the kernel size {k}, got {p}")
    OH = pool_output_size(H, kernel[0], stride[0], padding[0], ceil_mode, dilation[0])
    OW = pool_output_size(W, kernel[1], stride[1], padding[1], ceil_mode, dilation[1])
    if OH < 1 or OW < 1:
        dilated = ""
        if dilation != (1, 1):
            dilated = f" at dilation {dilation} ({_dilated(kernel[0], dilation[0])}x"
            dilated += f"{_dilated(kernel[1], dilation[1])})"
        raise ValueError(
            f"output size would be {OH}x{OW} (< 1): {x_name} ({H}x{W}) with "
            f"padding {padding} is smaller than kernel_size {kernel}{dilated}"
        )
    axes = zip(("h", "w"), (H, W), kernel, stride, padding, dilation, (OH, OW))
    for axis, size, k, s, p, d, out in axes:
        # torch returns -inf there, with an index outside the plane: refused instead
        empty = _first_empty_window(size, k, s, p, d, out)
        if empty is not None:
            raise ValueError(
                f"dilation ({axis}) {d} with padding {p}: output {empty} along {axis} would "
                f"pool no cell of {x_name} ({H}x{W}) (its {k} taps fall in the padding or "
                f"skip over the input)"
            )
    # A stride past the padded input gives one window per axis, as the clamped stride does (and
    # fits the kernels' C integers); so does any dilation of a size-1 kernel axis.
    stride = (min(stride[0], H + 2 * padding[0]), min(stride[1], W + 2 * padding[1]))
    dilation = (1 if kernel[0] == 1 else dilation[0], 1 if kernel[1] == 1 else dilation[1])
    return PoolGeometry(kernel, stride, padding, dilation, (N, C, OH, OW))


def _dilated(kernel, dilation):
    return dilation * (kernel - 1) + 1


def pool_output_shape(
    input_shape, kernel_size, stride=None, padding=0, ceil_mode=False, dilation=1
):
    """Output shape (N, C, OH, OW) of max_pool2d/avg_pool2d for x of `input_shape` (N, C, H, W)
    (dilation: max_pool2d's)."""
    input_shape = as_shape(input_shape, "input_shape", 4)
    return pool_geometry(
        input_shape, kernel_size, stride, padding, dilation, ceil_mode, "input_shape"
    ).output_shape


def adaptive_output_size(output_size, H, W):
    """An adaptive pool's output_size: int, (oh, ow) or None entries (keep the input's size),
    -> (OH, OW)."""
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(
                f"output_size must be an int or a pair (h, w), got {shown(output_size)}"
            )
        return tuple(
            size if o is None else as_int(o, f"output_size[{i}]", 1)
            for i, (o, size) in enumerate(zip(output_size, (H, W)))
        )
    o = as_int(output_size, "output_size", 1)
    return o, o


def adaptive_windows(size, out):
    """torch's adaptive windows of one axis: [(start, stop)] for each of `out` outputs over
    `size` inputs, start = floor(i size / out), stop = ceil((i + 1) size / out)."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]
