"""The arithmetic of a convolutional network, as plain functions on ints: output sizes of one axis
(convolution, transposed convolution, pooling) and receptive fields.

    >>> from fastconv.arith import conv_output_size, conv_transpose_output_size, receptive_field
    >>> conv_output_size(32, 5)                     # LeNet-5's C1
    28
    >>> conv_transpose_output_size(28, 4, stride=2, padding=1)
    56
    >>> receptive_field([(5, 1), (2, 2), (5, 1), (2, 2)])  # LeNet's C1..S4: (size, jump) after each
    [(5, 1), (6, 2), (14, 2), (16, 4)]

Receptive field (Dumoulin & Visin, "A guide to convolution arithmetic", 2016; Araujo et al.,
"Computing receptive fields of convolutional neural networks", Distill 2019): after a layer of
kernel k, stride s and dilation d, an output cell sees ``size + (d (k - 1)) * jump`` input pixels,
and neighbouring output cells are ``jump * s`` input pixels apart. A transposed convolution divides
the jump by s, and one of its outputs is reached by at most ``floor(d (k - 1) / s) + 1``
neighbouring inputs, so its size grows by ``floor(d (k - 1) / s) * jump``. Jumps are exact fractions.
"""

from fractions import Fraction

from ._validation import as_int, output_size, pool_output_size
from ._validation.geometry import _same_padding

__all__ = [
    "conv_output_size",
    "conv_transpose_output_size",
    "pool_output_size",
    "receptive_field",
    "receptive_field_step",
]


def _axis_padding(padding, size, kernel, stride, dilation):
    """One axis' padding: int, (before, after), torch's (p,), 'valid' or 'same' ->
    (before, after)."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0
        if padding == "same":
            return _same_padding(size, kernel, stride, dilation)
        raise ValueError(
            f"padding must be an int, (before, after), 'valid' or 'same'; got {padding!r}"
        )
    if isinstance(padding, (tuple, list)):
        if len(padding) == 1:
            p = as_int(padding[0], "padding[0]", 0)
            return p, p
        if len(padding) != 2:
            raise ValueError(f"padding must be an int or a pair (before, after), got {padding!r}")
        return as_int(padding[0], "padding[0]", 0), as_int(padding[1], "padding[1]", 0)
    p = as_int(padding, "padding", 0)
    return p, p


def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    """Output length of a convolution along one axis.

    Parameters
    ----------
    size, kernel : int >= 1
    stride, dilation : int >= 1
    padding : int, (before, after), 'valid' or 'same' (TensorFlow's rule: ceil(size / stride))

    Returns
    -------
    int: ``(size + before + after - dilation * (kernel - 1) - 1) // stride + 1``; may be < 1 for
    a kernel larger than the padded input (conv2d refuses that).
    """
    size = as_int(size, "size", 1)
    kernel = as_int(kernel, "kernel", 1)
    stride = as_int(stride, "stride", 1)
    dilation = as_int(dilation, "dilation", 1)
    before, after = _axis_padding(padding, size, kernel, stride, dilation)
    return output_size(size, kernel, stride, dilation, before, after)


def conv_transpose_output_size(size, kernel, stride=1, padding=0, output_padding=0, dilation=1):
    """Output length of a transposed convolution along one axis (PyTorch's formula).

    ``(size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1``: the input
    length of the convolution whose gradient it is, ``output_padding`` choosing among the
    ``stride`` lengths that convolution maps to ``size``. May be < 1 (conv_transpose2d refuses).
    """
    size = as_int(size, "size", 1)
    kernel = as_int(kernel, "kernel", 1)
    stride = as_int(stride, "stride", 1)
    padding = as_int(padding, "padding", 0)
    output_padding = as_int(output_padding, "output_padding", 0)
    dilation = as_int(dilation, "dilation", 1)
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def receptive_field_step(size, jump, kernel, stride=1, dilation=1, transposed=False):
    """(size, jump) of the receptive field after one more layer.

    Parameters
    ----------
    size : int
        Receptive field so far, in input pixels (1 for the input itself).
    jump : int or Fraction
        Distance in input pixels between neighbouring cells so far (1 for the input).
    kernel, stride, dilation : int >= 1
        The layer's, along this axis (a pooling layer: its kernel and stride).
    transposed : bool
        A transposed convolution (see the module docstring).

    Returns
    -------
    (size, jump): size an int, jump an int or a Fraction (< 1 after upsampling).
    """
    kernel = as_int(kernel, "kernel", 1)
    stride = as_int(stride, "stride", 1)
    dilation = as_int(dilation, "dilation", 1)
    reach = dilation * (kernel - 1)
    jump = Fraction(jump)
    if transposed:
        size = size + int((reach // stride) * jump)
        jump = jump / stride
    else:
        size = size + int(reach * jump)
        jump = jump * stride
    return int(size), (int(jump) if jump.denominator == 1 else jump)


def receptive_field(layers, size=1, jump=1):
    """Receptive field along one axis after each of a chain of layers.

    Parameters
    ----------
    layers : iterable of (kernel, stride) or (kernel, stride, dilation)
        The layers in order; an element may also be a dict with those keys and ``transposed``.
    size, jump : the starting receptive field (1, 1: the input's pixels).

    Returns
    -------
    list of (size, jump), one per layer (see :func:`receptive_field_step`).
    """
    out = []
    for layer in layers:
        if isinstance(layer, dict):
            size, jump = receptive_field_step(size, jump, **layer)
        else:
            size, jump = receptive_field_step(size, jump, *layer)
        out.append((size, jump))
    return out
