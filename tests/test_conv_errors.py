"""Every documented error: the exception type, and a message that names the offending argument."""

import numpy as np
import pytest

import fastconv

# A valid grouped problem: x (2, 4, 8, 8), weight (6, 2, 3, 3), groups=2 -> y (2, 6, 6, 6).
X = np.zeros((2, 4, 8, 8))
W = np.zeros((6, 2, 3, 3))
B = np.zeros(6)
BASE = dict(x=X, weight=W, bias=B, stride=1, padding=0, dilation=1, groups=2)
Y_SHAPE = (2, 6, 6, 6)


def names(*args):
    """A regex matching any of the argument names as a whole word."""
    return r"\b(" + "|".join(args) + r")\b"


def conv(**overrides):
    args = dict(BASE, **overrides)
    return fastconv.conv2d(args.pop("x"), args.pop("weight"), args.pop("bias"), **args)


def shape_only(**overrides):
    """conv_output_shape on the same arguments (it validates like conv2d)."""
    args = dict(BASE, **overrides)
    args.pop("bias")
    return fastconv.conv_output_shape(args.pop("x").shape, args.pop("weight").shape, **args)


def test_base_problem_is_valid():
    assert conv().shape == Y_SHAPE
    assert shape_only() == Y_SHAPE


# --------------------------------------------------------------------------------------------
# Geometry errors: conv2d and conv_output_shape raise the same thing
# --------------------------------------------------------------------------------------------

GEOMETRY_ERRORS = [
    # channels / groups
    pytest.param(
        dict(x=np.zeros((2, 5, 8, 8))), ValueError, names("x", "weight", "groups"), id="C_mismatch"
    ),
    pytest.param(
        dict(groups=1), ValueError, names("x", "weight", "groups"), id="C_mismatch_groups1"
    ),
    pytest.param(
        dict(weight=np.zeros((5, 2, 3, 3)), bias=None),
        ValueError,
        names("weight", "groups"),
        id="F_not_div",
    ),
    pytest.param(
        dict(groups=4, weight=np.zeros((6, 1, 3, 3))),
        ValueError,
        names("weight", "groups"),
        id="F_not_div4",
    ),
    pytest.param(dict(groups=0), ValueError, names("groups"), id="groups0"),
    pytest.param(dict(groups=-2), ValueError, names("groups"), id="groups_negative"),
    pytest.param(dict(groups=2.0), TypeError, names("groups"), id="groups_float"),
    pytest.param(dict(groups="2"), TypeError, names("groups"), id="groups_str"),
    pytest.param(dict(groups=None), TypeError, names("groups"), id="groups_None"),
    pytest.param(dict(groups=True), TypeError, names("groups"), id="groups_bool"),
    # output smaller than one cell
    pytest.param(dict(x=np.zeros((2, 4, 2, 8))), ValueError, r"(?i)output", id="output_H_lt_1"),
    pytest.param(dict(x=np.zeros((2, 4, 8, 2))), ValueError, r"(?i)output", id="output_W_lt_1"),
    pytest.param(dict(dilation=4), ValueError, r"(?i)output", id="output_dilated_kernel_too_big"),
    pytest.param(
        dict(padding="valid", x=np.zeros((2, 4, 8, 1))),
        ValueError,
        r"(?i)output",
        id="output_valid",
    ),
    # stride / dilation
    *[
        pytest.param({arg: value}, exc, names(arg), id=f"{arg}_{tag}")
        for arg in ("stride", "dilation")
        for tag, value, exc in [
            ("0", 0, ValueError),
            ("negative", -1, ValueError),
            ("pair_0", (1, 0), ValueError),
            ("pair_negative", (-2, 1), ValueError),
            ("len3", (1, 1, 1), ValueError),
            # (1,) is torch's form, accepted (tests/test_torch_forms.py); its value is checked
            ("len1_0", (0,), ValueError),
            ("len1_float", (1.5,), TypeError),
            ("len0", (), ValueError),
            ("float", 1.0, TypeError),
            ("pair_float", (1, 1.5), TypeError),
            ("str", "1", TypeError),
            ("None", None, TypeError),
            ("bool", True, TypeError),
            ("pair_bool", (True, 1), TypeError),
            ("pair_None", (1, None), TypeError),
        ]
    ],
    # padding
    pytest.param(dict(padding=-1), ValueError, names("padding"), id="padding_negative"),
    pytest.param(dict(padding=(0, -1)), ValueError, names("padding"), id="padding_pair_negative"),
    pytest.param(
        dict(padding=((0, 0), (-1, 0))),
        ValueError,
        names("padding"),
        id="padding_pairs_negative_left",
    ),
    pytest.param(
        dict(padding=((0, -2), (0, 0))),
        ValueError,
        names("padding"),
        id="padding_pairs_negative_bottom",
    ),
    pytest.param(dict(padding="full"), ValueError, names("padding"), id="padding_full"),
    pytest.param(dict(padding="causal"), ValueError, names("padding"), id="padding_causal"),
    pytest.param(dict(padding=""), ValueError, names("padding"), id="padding_empty_str"),
    pytest.param(dict(padding=(1, 2, 3)), ValueError, names("padding"), id="padding_len3"),
    pytest.param(dict(padding=(-1,)), ValueError, names("padding"), id="padding_len1_negative"),
    pytest.param(
        dict(padding=((1, 2), (3, 4), (5, 6))), ValueError, names("padding"), id="padding_3_pairs"
    ),
    pytest.param(
        dict(padding=((1, 2, 3), (1, 2))), ValueError, names("padding"), id="padding_triple"
    ),
    pytest.param(dict(padding=((1,), (1,))), ValueError, names("padding"), id="padding_singles"),
    pytest.param(dict(padding=1.0), TypeError, names("padding"), id="padding_float"),
    pytest.param(dict(padding=(1, 1.0)), TypeError, names("padding"), id="padding_pair_float"),
    pytest.param(
        dict(padding=((0, 1), (0, 0.5))), TypeError, names("padding"), id="padding_pairs_float"
    ),
    pytest.param(dict(padding=None), TypeError, names("padding"), id="padding_None"),
    pytest.param(dict(padding=True), TypeError, names("padding"), id="padding_bool"),
    pytest.param(dict(padding=(True, 0)), TypeError, names("padding"), id="padding_pair_bool"),
    pytest.param(
        dict(padding=((0, False), (0, 0))), TypeError, names("padding"), id="padding_pairs_bool"
    ),
    pytest.param(
        dict(padding=((1, 2), 3)), (ValueError, TypeError), names("padding"), id="padding_mixed"
    ),
]


@pytest.mark.parametrize("overrides, exc, match", GEOMETRY_ERRORS)
def test_conv2d_geometry_errors(overrides, exc, match):
    with pytest.raises(exc, match=match):
        conv(**overrides)


@pytest.mark.parametrize("overrides, exc, match", GEOMETRY_ERRORS)
def test_conv_output_shape_errors(overrides, exc, match):
    with pytest.raises(exc, match=match):
        shape_only(**overrides)


@pytest.mark.parametrize("overrides, exc, match", GEOMETRY_ERRORS)
def test_backward_geometry_errors(overrides, exc, match):
    """conv2d_backward validates the same geometry (grad_out is given a plausible shape)."""
    args = dict(BASE, **overrides)
    args.pop("bias")
    x, w = args.pop("x"), args.pop("weight")
    g = np.zeros((x.shape[0], w.shape[0], 6, 6))
    with pytest.raises(exc, match=match):
        fastconv.conv2d_backward(g, x, w, **args)


@pytest.mark.parametrize(
    "input_shape, weight_shape, match",
    [
        ((2, 4, 8), (6, 2, 3, 3), names("input_shape", "x")),
        ((1, 2, 4, 8, 8), (6, 2, 3, 3), names("input_shape", "x")),
        ((2, 4, 8, 8), (6, 2, 3), names("weight_shape", "weight")),
        ((2, 4, 8, 8), (1, 6, 2, 3, 3), names("weight_shape", "weight")),
    ],
)
def test_conv_output_shape_wrong_length(input_shape, weight_shape, match):
    with pytest.raises(ValueError, match=match):
        fastconv.conv_output_shape(input_shape, weight_shape, groups=2)


# --------------------------------------------------------------------------------------------
# Array errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, exc, match",
    [
        # (4, 8, 8) is one sample (C, H, W), as torch takes it: a 3-D x with other channels
        pytest.param(dict(x=np.zeros((5, 8, 8))), ValueError, names("x"), id="x_3d"),
        pytest.param(dict(x=np.zeros((2, 4, 8, 8, 1))), ValueError, names("x"), id="x_5d"),
        pytest.param(dict(x=np.zeros((8, 8))), ValueError, names("x"), id="x_2d"),
        pytest.param(dict(x=np.float64(1.0)), ValueError, names("x"), id="x_scalar"),
        pytest.param(dict(x=None), (ValueError, TypeError), names("x"), id="x_None"),
        pytest.param(dict(weight=np.zeros((6, 2, 3))), ValueError, names("weight"), id="weight_3d"),
        pytest.param(
            dict(weight=np.zeros((6, 2, 3, 3, 1))), ValueError, names("weight"), id="weight_5d"
        ),
        pytest.param(dict(bias=np.zeros(7)), ValueError, names("bias"), id="bias_too_long"),
        pytest.param(dict(bias=np.zeros(3)), ValueError, names("bias"), id="bias_F_over_groups"),
        pytest.param(dict(bias=np.zeros((6, 1))), ValueError, names("bias"), id="bias_column"),
        pytest.param(dict(bias=np.zeros((1, 6))), ValueError, names("bias"), id="bias_row"),
        pytest.param(dict(bias=np.float64(0.0)), ValueError, names("bias"), id="bias_scalar"),
        pytest.param(dict(x=X.astype(np.complex128)), TypeError, names("x"), id="x_complex"),
        pytest.param(dict(x=X.astype(object)), TypeError, names("x"), id="x_object"),
        pytest.param(dict(x=np.full(X.shape, "a")), TypeError, names("x"), id="x_str"),
        pytest.param(
            dict(weight=W.astype(np.complex64)), TypeError, names("weight"), id="weight_complex"
        ),
        pytest.param(dict(weight=W.astype(object)), TypeError, names("weight"), id="weight_object"),
        pytest.param(
            dict(weight=np.full(W.shape, b"a")), TypeError, names("weight"), id="weight_bytes"
        ),
        pytest.param(
            dict(bias=B.astype(np.complex128)), TypeError, names("bias"), id="bias_complex"
        ),
        pytest.param(dict(bias=B.astype(object)), TypeError, names("bias"), id="bias_object"),
        pytest.param(
            dict(activation="sigmoid"), ValueError, names("activation"), id="activation_unknown"
        ),
    ],
)
def test_conv2d_array_errors(overrides, exc, match):
    with pytest.raises(exc, match=match):
        conv(**overrides)


# --------------------------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------------------------


def _overlapping_x():
    """x and out carved from one buffer so that they share memory."""
    buf = np.zeros(X.size + int(np.prod(Y_SHAPE)))
    x = buf[: X.size].reshape(X.shape)
    out = buf[100 : 100 + int(np.prod(Y_SHAPE))].reshape(Y_SHAPE)
    return dict(x=x, out=out)


def _overlapping_weight():
    buf = np.zeros(int(np.prod(Y_SHAPE)))
    return dict(weight=buf[: W.size].reshape(W.shape), out=buf.reshape(Y_SHAPE))


def _overlapping_bias():
    out = np.zeros(Y_SHAPE)
    return dict(bias=out[0, 0, 0], out=out)  # bias is out's first row of 6 cells


def _read_only():
    out = np.zeros(Y_SHAPE)
    out.flags.writeable = False
    return dict(out=out)


OUT_ERRORS = [
    pytest.param(lambda: dict(out=np.zeros((2, 6, 6, 5))), ValueError, id="wrong_shape"),
    pytest.param(lambda: dict(out=np.zeros((2, 6, 36))), ValueError, id="wrong_ndim"),
    pytest.param(
        lambda: dict(out=np.zeros(Y_SHAPE, dtype=np.float32)), TypeError, id="float32_for_float64"
    ),
    pytest.param(lambda: dict(out=np.zeros(Y_SHAPE, dtype=np.int64)), TypeError, id="int64"),
    pytest.param(
        lambda: dict(
            x=X.astype(np.float32), weight=W.astype(np.float32), bias=None, out=np.zeros(Y_SHAPE)
        ),
        TypeError,
        id="float64_for_float32",
    ),
    pytest.param(lambda: dict(out=np.zeros(Y_SHAPE, order="F")), ValueError, id="fortran"),
    pytest.param(lambda: dict(out=np.zeros((2, 6, 6, 12))[..., ::2]), ValueError, id="strided"),
    pytest.param(
        lambda: dict(out=np.zeros((2, 6, 6, 6))[:, ::-1]), ValueError, id="negative_strides"
    ),
    pytest.param(_read_only, ValueError, id="read_only"),
    pytest.param(_overlapping_x, ValueError, id="overlaps_x"),
    pytest.param(_overlapping_weight, ValueError, id="overlaps_weight"),
    pytest.param(_overlapping_bias, ValueError, id="overlaps_bias"),
    pytest.param(lambda: dict(out=np.zeros(Y_SHAPE).tolist()), TypeError, id="list"),
]


@pytest.mark.parametrize("make, exc", OUT_ERRORS)
def test_out_errors(make, exc):
    with pytest.raises(exc, match=names("out")):
        conv(**make())


def test_out_is_x_itself():
    """A 1x1 convolution whose output has x's exact shape and dtype still may not write into x."""
    x = np.ones((1, 3, 4, 4))
    w = np.ones((3, 3, 1, 1))
    with pytest.raises(ValueError, match=names("out")):
        fastconv.conv2d(x, w, out=x)
    np.testing.assert_array_equal(x, 1.0)


# --------------------------------------------------------------------------------------------
# Backward
# --------------------------------------------------------------------------------------------

G = np.zeros(Y_SHAPE)


def backward(grad_out=G, x=X, weight=W, **kwargs):
    return fastconv.conv2d_backward(grad_out, x, weight, groups=2, **kwargs)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        pytest.param(
            dict(grad_out=np.zeros((2, 6, 6, 5))), ValueError, names("grad_out"), id="grad_out_W"
        ),
        pytest.param(
            dict(grad_out=np.zeros((2, 6, 7, 6))), ValueError, names("grad_out"), id="grad_out_H"
        ),
        pytest.param(
            dict(grad_out=np.zeros((2, 5, 6, 6))), ValueError, names("grad_out"), id="grad_out_F"
        ),
        pytest.param(
            dict(grad_out=np.zeros((1, 6, 6, 6))), ValueError, names("grad_out"), id="grad_out_N"
        ),
        pytest.param(
            dict(grad_out=np.zeros((6, 6, 6))), ValueError, names("grad_out"), id="grad_out_3d"
        ),
        pytest.param(
            dict(grad_out=G.astype(np.complex128)),
            TypeError,
            names("grad_out"),
            id="grad_out_complex",
        ),
        pytest.param(
            dict(grad_out=G.astype(object)), TypeError, names("grad_out"), id="grad_out_object"
        ),
        pytest.param(dict(x=np.zeros((4, 8, 8))), ValueError, names("x"), id="x_3d"),
        pytest.param(dict(x=X.astype(np.complex64)), TypeError, names("x"), id="x_complex"),
        pytest.param(dict(weight=np.zeros((6, 2, 3))), ValueError, names("weight"), id="weight_3d"),
        pytest.param(dict(weight=W.astype(object)), TypeError, names("weight"), id="weight_object"),
        pytest.param(dict(needs=("input", "foo")), ValueError, names("needs"), id="needs_unknown"),
        pytest.param(
            dict(needs=("grad_input",)), ValueError, names("needs"), id="needs_grad_prefix"
        ),
        pytest.param(dict(needs=("Input",)), ValueError, names("needs"), id="needs_capitalised"),
        pytest.param(dict(needs=5), TypeError, names("needs"), id="needs_int"),
        pytest.param(
            dict(needs=(None,)), (ValueError, TypeError), names("needs"), id="needs_None_item"
        ),
    ],
)
def test_backward_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        backward(**kwargs)


@pytest.mark.parametrize(
    "args, exc, match",
    [
        pytest.param((G, W, (2, 4, 8)), ValueError, names("input_shape"), id="input_shape_len3"),
        pytest.param(
            (G, W, (2, 4, 8, 8, 1)), ValueError, names("input_shape"), id="input_shape_len5"
        ),
        pytest.param(
            (G, W, (2, 4, -8, 8)), ValueError, names("input_shape", "x"), id="input_shape_negative"
        ),
        pytest.param(
            (G, W, (2, 4, 8.0, 8)), TypeError, names("input_shape"), id="input_shape_float"
        ),
        pytest.param(
            (G, W, (2, 4, 10, 10)), ValueError, names("grad_out", "input_shape"), id="grad_out_vs_H"
        ),
        pytest.param(
            (G, W, (3, 4, 8, 8)), ValueError, names("grad_out", "input_shape"), id="grad_out_vs_N"
        ),
        pytest.param(
            (G, W, (2, 6, 8, 8)), ValueError, names("input_shape", "x", "weight", "groups"), id="C"
        ),
        pytest.param((G[0], W, (2, 4, 8, 8)), ValueError, names("grad_out"), id="grad_out_3d"),
        pytest.param((G, W[0], (2, 4, 8, 8)), ValueError, names("weight"), id="weight_3d"),
        pytest.param(
            (G.astype(complex), W, (2, 4, 8, 8)),
            TypeError,
            names("grad_out"),
            id="grad_out_complex",
        ),
    ],
)
def test_grad_input_errors(args, exc, match):
    with pytest.raises(exc, match=match):
        fastconv.conv2d_grad_input(*args, groups=2)


@pytest.mark.parametrize(
    "args, exc, match",
    [
        pytest.param((G, X, (6, 2, 3)), ValueError, names("weight_shape"), id="weight_shape_len3"),
        pytest.param(
            (G, X, (6, 2, 3, 3, 1)), ValueError, names("weight_shape"), id="weight_shape_len5"
        ),
        pytest.param(
            (G, X, (6, 2, 3.0, 3)), TypeError, names("weight_shape"), id="weight_shape_float"
        ),
        pytest.param(
            (G, X, (6, 2, 5, 5)), ValueError, names("grad_out", "weight_shape"), id="grad_out_vs_K"
        ),
        pytest.param(
            (G, X, (4, 2, 3, 3)), ValueError, names("grad_out", "weight_shape"), id="grad_out_vs_F"
        ),
        pytest.param(
            (G, X, (6, 3, 3, 3)), ValueError, names("weight_shape", "x", "weight", "groups"), id="C"
        ),
        pytest.param((G, X[0], (6, 2, 3, 3)), ValueError, names("x"), id="x_3d"),
        pytest.param((G, X.astype(object), (6, 2, 3, 3)), TypeError, names("x"), id="x_object"),
    ],
)
def test_grad_weight_errors(args, exc, match):
    with pytest.raises(exc, match=match):
        fastconv.conv2d_grad_weight(*args, groups=2)


_X9 = np.arange(9.0).reshape(1, 1, 3, 3)


@pytest.mark.parametrize(
    "kwargs, kernel, expected",
    [
        pytest.param(dict(stride=2**70), (3, 3), [[36.0]], id="stride_2**70"),
        pytest.param(dict(stride=(1, 2**64)), (1, 1), [[0.0], [3.0], [6.0]], id="stride_w_2**64"),
        pytest.param(dict(dilation=2**70), (1, 1), _X9[0, 0], id="dilation_2**70_1x1"),
    ],
)
def test_huge_but_valid_parameters(kwargs, kernel, expected):
    """A stride past the input, or any dilation of a 1x1 kernel, is valid: computed, or at worst
    refused with ValueError (a documented size limit), never another exception."""
    try:
        y = fastconv.conv2d(_X9, np.ones((1, 1) + kernel), **kwargs)
    except ValueError:
        return
    np.testing.assert_array_equal(y[0, 0], expected)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(padding=2**40),
        dict(padding=((0, 2**62), (0, 0))),
        dict(groups=2**70),
        dict(dilation=2**70),
    ],
    ids=str,
)
def test_huge_invalid_parameters_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        conv(**kwargs)


# What the kernels' 32-bit BLAS limit says: the argument that leads past it and the size it makes,
# not a GEMM a shape function never runs.
_BLAS_LIMIT = r"more than 2\*\*31 - 1, the most the kernels' 32-bit BLAS indices take"


@pytest.mark.parametrize(
    "input_shape, weight_shape, kwargs, cause",
    [
        pytest.param(
            (1, 1, 4, 4),
            (1, 1, 3, 3),
            dict(padding=2**31 - 1),
            r"^padding 2147483647 makes an output of 4294967296 x 4294967296: "
            r"18446744073709551616 elements per plane, ",
            id="padding",
        ),
        pytest.param(
            (1, 1, 4, 4),
            (1, 1, 3, 3),
            dict(padding=((0, 2**31), (0, 0))),
            r"^padding \(top, bottom, left, right\) \(0, 2147483648, 0, 0\) makes an output "
            r"of 2147483650 x 2: 4294967300 elements per plane, ",
            id="padding_bottom",
        ),
        pytest.param(
            (1, 1, 50000, 50000),
            (1, 1, 3, 3),
            {},
            r"^input_shape of 50000 x 50000 has 2500000000 elements per plane, ",
            id="input_size",
        ),
        pytest.param(
            (1, 2**30, 4, 4),
            (1, 2**30, 3, 3),
            {},
            r"^input_shape's 1073741824 channels times weight_shape's 3 x 3 kernel make a GEMM "
            r"dimension \(C \* KH \* KW\) of 9663676416, ",
            id="channels_kernel",
        ),
        pytest.param(
            (1, 1, 4, 4),
            (2**31, 1, 3, 3),
            {},
            r"^weight_shape has 2147483648 filters \(F, axis 0\), ",
            id="filters",
        ),
    ],
)
def test_conv_output_shape_names_what_passes_the_blas_limit(
    input_shape, weight_shape, kwargs, cause
):
    with pytest.raises(ValueError, match=cause + _BLAS_LIMIT):
        fastconv.conv_output_shape(input_shape, weight_shape, **kwargs)


def test_conv2d_names_the_padding_that_passes_the_blas_limit():
    with pytest.raises(ValueError, match=r"^padding 1099511627776 makes an output of "):
        fastconv.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), padding=2**40)


def test_conv_transpose_names_the_stride_that_passes_the_blas_limit():
    """Its output is the equivalent convolution's input: named as the transposed output, not
    as an `input_shape` the caller never gave."""
    cause = (
        r"^x of 4 x 4 at stride \(1048576, 1048576\) and dilation \(1, 1\) makes an output of "
        r"3145731 x 3145731: 9895623524361 elements per plane, " + _BLAS_LIMIT
    )
    with pytest.raises(ValueError, match=cause):
        fastconv.conv_transpose_output_shape((1, 1, 4, 4), (1, 1, 3, 3), stride=2**20)
    with pytest.raises(ValueError, match=cause):
        fastconv.conv_transpose2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), stride=2**20)


def test_errors_leave_out_untouched():
    out = np.full((2, 6, 6, 5), 7.0)
    with pytest.raises(ValueError):
        conv(out=out)
    np.testing.assert_array_equal(out, 7.0)


def test_an_array_where_a_shape_belongs_is_named_by_its_shape():
    """conv2d_plan takes shapes; handed the arrays themselves, the message names each array
    by its shape and dtype (its repr would fill a screen) and says what to pass."""
    x = np.zeros((64, 6, 14, 14), np.float32)
    with pytest.raises(ValueError) as info:
        fastconv.conv2d_plan(x, (16, 6, 5, 5))
    message = str(info.value)
    assert message == (
        "input_shape must be a tuple of 4 ints, got an array of shape (64, 6, 14, 14) and dtype "
        "float32 (pass the array's .shape)"
    )


def test_a_long_bad_argument_is_cut_in_the_message():
    with pytest.raises(ValueError) as info:
        fastconv.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), stride=list(range(500)))
    assert len(str(info.value)) < 200 and str(info.value).endswith("...")
