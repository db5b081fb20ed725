"""fastconv.conv2d forward against the independent float64 reference in reference.py."""

import numpy as np
import pytest
from reference import (
    CASES,
    MEDIUM_CASES,
    case_kwargs,
    case_tblr,
    conv2d_loops,
    conv2d_ref,
    make_inputs,
    output_hw,
    same_padding,
)

import fastconv

DTYPES = [np.float32, np.float64]
CASE_BY_ID = {c.id: c for c in CASES + MEDIUM_CASES}


def cases(*ids):
    return [pytest.param(CASE_BY_ID[i], id=i) for i in ids]


ALL_CASES = cases(*(c.id for c in CASES + MEDIUM_CASES))
FEW_CASES = cases(
    "basic",
    "pad_pairs_asym2",
    "pad_same_stride2",
    "groups2",
    "depthwise_x2",
    "k1x1_stride2",
    "kernel_2x5",
)


def reduction(case):
    """How many products each output sums (drives the float32 tolerance)."""
    return case.C // case.groups * case.KH * case.KW


def expected_for(case, x, w, b, relu=False):
    y = conv2d_ref(x, w, b, case.stride, case_tblr(case), case.dilation, case.groups)
    return np.maximum(y, 0) if relu else y


def cast_inputs(case, rng, dtype):
    """Random inputs of `dtype`; the float64 copies the reference sees hold exactly the same values."""
    return [a.astype(dtype) for a in make_inputs(case, rng)]


# --------------------------------------------------------------------------------------------
# The reference itself (so that a wrong reference cannot make wrong code pass)
# --------------------------------------------------------------------------------------------


def test_reference_hand_computed():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])  # x[i, j] - x[i+1, j+1] = -5 everywhere
    np.testing.assert_array_equal(conv2d_ref(x, w, np.array([0.5])), np.full((1, 1, 3, 3), -4.5))
    # stride 2, one cell of zero padding on top/left only, non-square kernel, dilation 2 along W
    w2 = np.array([[[[1.0, 2.0]]]])  # (1, 1, 1, 2)
    y = conv2d_ref(x, w2, None, stride=2, pad=(1, 0, 1, 0), dilation=(1, 2))
    # x[r, c] = 4r + c; output rows read rows -1 (padding), 1, 3; output col j reads cols 2j-1 and 2j+1
    expected = np.array([[0.0, 0.0], [0 + 2 * 5, 5 + 2 * 7], [0 + 2 * 13, 13 + 2 * 15]])
    np.testing.assert_array_equal(y[0, 0], expected)


@pytest.mark.parametrize("case", cases(*(c.id for c in CASES if c.C < 100)))
def test_reference_matches_naive_loops(case, rng):
    x, w, b = make_inputs(case, rng)
    x = x[:1]  # one image keeps the pure-Python loops quick
    tblr = case_tblr(case)
    np.testing.assert_allclose(
        conv2d_ref(x, w, b, case.stride, tblr, case.dilation, case.groups),
        conv2d_loops(x, w, b, case.stride, tblr, case.dilation, case.groups),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize(
    "size, k, s, d, expected",
    [
        (7, 3, 1, 1, (1, 1)),
        (8, 3, 2, 1, (0, 1)),  # out 4: total = 3*2 + 3 - 8 = 1, extra cell goes after
        (8, 4, 1, 1, (1, 2)),
        (5, 1, 2, 1, (0, 0)),
        (10, 3, 3, 2, (2, 2)),  # out 4: total = 9 + 5 - 10 = 4
        (4, 5, 3, 1, (2, 2)),  # out 2: total = 3 + 5 - 4 = 4
    ],
)
def test_same_padding_helper(size, k, s, d, expected):
    before, after = same_padding(size, k, s, d)
    out = -(-size // s)
    assert output_hw((size, size), (k, k), s, (before, after, before, after), d)[0] == out
    assert (before, after) == expected


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ALL_CASES)
def test_forward_matches_reference(backend, case, dtype, rng, assert_close):
    x, w, b = cast_inputs(case, rng, dtype)
    y = fastconv.conv2d(
        backend.to_device(x), backend.to_device(w), backend.to_device(b), **case_kwargs(case)
    )
    assert isinstance(y, backend.xp.ndarray)
    assert_close(y, expected_for(case, x, w, b), dtype, reduction(case))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FEW_CASES)
def test_forward_without_bias(backend, case, dtype, rng, assert_close):
    x, w, _ = cast_inputs(case, rng, dtype)
    xd, wd = backend.to_device(x), backend.to_device(w)
    expected = expected_for(case, x, w, None)
    assert_close(fastconv.conv2d(xd, wd, **case_kwargs(case)), expected, dtype, reduction(case))
    assert_close(
        fastconv.conv2d(xd, wd, None, **case_kwargs(case)), expected, dtype, reduction(case)
    )


@pytest.mark.parametrize("case", ALL_CASES)
def test_conv_output_shape(case):
    OH, OW = output_hw(
        (case.H, case.W), (case.KH, case.KW), case.stride, case_tblr(case), case.dilation
    )
    shape = fastconv.conv_output_shape(
        (case.N, case.C, case.H, case.W),
        (case.F, case.C // case.groups, case.KH, case.KW),
        **case_kwargs(case),
    )
    assert isinstance(shape, tuple)
    assert all(type(d) is int for d in shape), [type(d) for d in shape]
    assert shape == (case.N, case.F, OH, OW)


def test_conv_output_shape_defaults():
    assert fastconv.conv_output_shape((2, 3, 10, 8), (5, 3, 3, 2)) == (2, 5, 8, 7)
    assert fastconv.conv_output_shape((0, 3, 10, 8), (5, 3, 3, 2), stride=2) == (0, 5, 4, 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "case", cases("basic", "pad_same_stride2", "groups2", "depthwise_x2", "large_C")
)
def test_relu_activation(backend, case, dtype, rng, assert_close):
    x, w, b = cast_inputs(case, rng, dtype)
    args = backend.to_device(x), backend.to_device(w), backend.to_device(b)
    y = backend.to_numpy(fastconv.conv2d(*args, activation="relu", **case_kwargs(case)))
    assert (y >= 0).all() and (y == 0).any() and (y > 0).any()
    assert_close(y, expected_for(case, x, w, b, relu=True), dtype, reduction(case))
    plain = fastconv.conv2d(*args, activation=None, **case_kwargs(case))
    assert_close(plain, expected_for(case, x, w, b), dtype, reduction(case))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", cases("basic", "pad_same_stride2", "depthwise_x2", "k1x1"))
def test_empty_batch(backend, case, dtype):
    x = backend.xp.zeros((0, case.C, case.H, case.W), dtype=dtype)
    w = backend.xp.ones((case.F, case.C // case.groups, case.KH, case.KW), dtype=dtype)
    b = backend.xp.ones(case.F, dtype=dtype)
    OH, OW = output_hw(
        (case.H, case.W), (case.KH, case.KW), case.stride, case_tblr(case), case.dilation
    )
    for activation in (None, "relu"):
        y = fastconv.conv2d(x, w, b, activation=activation, **case_kwargs(case))
        assert isinstance(y, backend.xp.ndarray)
        assert y.shape == (0, case.F, OH, OW)
        assert y.dtype == dtype


# --------------------------------------------------------------------------------------------
# Padding forms that mean the same thing give the same result
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kernel, dilation, forms",
    [
        ((3, 3), 1, [1, (1, 1), ((1, 1), (1, 1)), "same"]),
        ((3, 5), 1, [(1, 2), ((1, 1), (2, 2)), "same"]),
        ((3, 3), 2, [2, (2, 2), ((2, 2), (2, 2)), "same"]),
        ((3, 3), 1, [0, (0, 0), ((0, 0), (0, 0)), "valid"]),
    ],
)
def test_padding_forms_agree(kernel, dilation, forms, rng):
    x = rng.standard_normal((2, 3, 8, 9))
    w = rng.standard_normal((4, 3) + kernel)
    ys = [fastconv.conv2d(x, w, dilation=dilation, padding=p) for p in forms]
    for p, y in zip(forms[1:], ys[1:]):
        np.testing.assert_array_equal(y, ys[0], err_msg=f"padding={p!r} vs {forms[0]!r}")


def test_numpy_integer_parameters_accepted(rng):
    x = rng.standard_normal((1, 4, 7, 7))
    w = rng.standard_normal((2, 2, 3, 3))
    y = fastconv.conv2d(
        x,
        w,
        stride=np.int64(2),
        padding=(np.int32(1), np.int64(0)),
        dilation=np.int64(1),
        groups=np.int64(2),
    )
    np.testing.assert_allclose(
        y, conv2d_ref(x, w, None, 2, (1, 1, 0, 0), 1, 2), rtol=1e-10, atol=1e-10
    )


# --------------------------------------------------------------------------------------------
# Layouts: any strides, negative strides, transposed / broadcast views, read-only inputs
# --------------------------------------------------------------------------------------------


def _embedded(xp, a, index, base_shape):
    """A view `base[index]` of a bigger zero array that holds the values of `a`."""
    base = xp.zeros(base_shape, dtype=a.dtype)
    base[index] = xp.asarray(a)
    return base[index]


def _flip_step(xp, a):  # x[:, :, ::-1, ::2]: negative stride along H, step 2 along W
    N, C, H, W = a.shape
    return _embedded(
        xp,
        a,
        (slice(None), slice(None), slice(None, None, -1), slice(None, None, 2)),
        (N, C, H, 2 * W),
    )


def _all_negative(xp, a):
    return _embedded(xp, a, (slice(None, None, -1),) * 4, a.shape)


def _channels_last(xp, a):
    return xp.ascontiguousarray(xp.asarray(a).transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _spatial_transpose(xp, a):  # e.g. a weight stored (F, C, KW, KH) and used through .transpose
    return xp.ascontiguousarray(xp.asarray(a).transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)


def _padded_slice(
    xp, a
):  # an interior window of a bigger array: every axis offset, rows not adjacent
    index = (slice(1, None), slice(2, -1), slice(1, -2), slice(3, None))
    return _embedded(xp, a, index, tuple(d + e for d, e in zip(a.shape, (1, 3, 3, 3))))


LAYOUTS = {
    # each builds a non-C-contiguous view whose values equal `a`
    "flip_step": _flip_step,
    "all_negative": _all_negative,
    "channels_last": _channels_last,
    "fortran": lambda xp, a: xp.asfortranarray(xp.asarray(a)),
    "spatial_transpose": _spatial_transpose,
    "padded_slice": _padded_slice,
}


@pytest.mark.parametrize("x_layout", sorted(LAYOUTS))
@pytest.mark.parametrize("w_layout", ["spatial_transpose", "all_negative", "fortran"])
@pytest.mark.parametrize(
    "case", cases("basic", "pad_pairs_asym2", "groups3_stride_dil", "depthwise_x2", "kernel_2x5")
)
def test_strided_views(backend, case, x_layout, w_layout, rng, assert_close):
    x, w, b = make_inputs(case, rng)
    xv, wv = LAYOUTS[x_layout](backend.xp, x), LAYOUTS[w_layout](backend.xp, w)
    bv = backend.xp.asarray(np.stack([b, -b], axis=1))[::-1, 0][::-1]  # strided bias
    for a, v in ((x, xv), (w, wv), (b, bv)):
        np.testing.assert_array_equal(backend.to_numpy(v), a)  # the view holds the intended values
    assert not (xv.flags.c_contiguous or wv.flags.c_contiguous or bv.flags.c_contiguous)
    y = fastconv.conv2d(xv, wv, bv, **case_kwargs(case))
    assert_close(y, expected_for(case, x, w, b), np.float64, reduction(case))


def test_negative_stride_slices(backend, rng, assert_close):
    """The x[:, :, ::-1, ::2] style from the spec, checked against the reference of the copy."""
    xp = backend.xp
    base = backend.to_device(rng.standard_normal((3, 4, 9, 14)))
    x = base[::-1, 1:, ::-1, ::2]  # (3, 3, 9, 7)
    wbase = backend.to_device(rng.standard_normal((5, 3, 4, 3)))
    w = wbase.transpose(0, 1, 3, 2)[:, ::-1]  # (5, 3, 3, 4)
    y = fastconv.conv2d(x, w, padding=((1, 0), (0, 2)), stride=(2, 1))
    xc, wc = backend.to_numpy(xp.ascontiguousarray(x)), backend.to_numpy(xp.ascontiguousarray(w))
    assert_close(y, conv2d_ref(xc, wc, None, (2, 1), (1, 0, 0, 2), 1, 1), np.float64, 36)


def test_broadcast_zero_stride_inputs(backend, rng, assert_close):
    xp = backend.xp
    row = backend.to_device(rng.standard_normal((1, 3, 1, 6)))
    x = xp.broadcast_to(row, (2, 3, 5, 6))  # strides 0 along N and H
    w = xp.broadcast_to(backend.to_device(rng.standard_normal((4, 3, 1, 1))), (4, 3, 2, 2))
    b = xp.broadcast_to(backend.to_device(np.array([0.25])), (4,))
    y = fastconv.conv2d(x, w, b, padding=1)
    xc, wc, bc = (backend.to_numpy(xp.ascontiguousarray(a)) for a in (x, w, b))
    assert_close(y, conv2d_ref(xc, wc, bc, 1, (1, 1, 1, 1), 1, 1), np.float64, 12)


def test_read_only_inputs(rng, assert_close):
    case = CASE_BY_ID["groups2"]
    x, w, b = make_inputs(case, rng)
    for a in (x, w, b):
        a.flags.writeable = False
    y = fastconv.conv2d(x, w, b, activation="relu", **case_kwargs(case))
    assert y.flags.writeable
    assert_close(y, expected_for(case, x, w, b, relu=True), np.float64, reduction(case))


@pytest.mark.parametrize("dtype", DTYPES + [np.float16, np.int32])
@pytest.mark.parametrize("case", cases("basic", "pad_same_stride2", "depthwise_x2", "k1x1"))
def test_inputs_not_modified(backend, case, dtype, rng):
    x, w, b = (backend.to_device((a * 3).astype(dtype)) for a in make_inputs(case, rng))
    saved = [backend.to_numpy(a).copy() for a in (x, w, b)]
    xv = x[:, :, ::-1]  # a view too: nothing may be written through it
    for activation in (None, "relu"):
        fastconv.conv2d(x, w, b, activation=activation, **case_kwargs(case))
        fastconv.conv2d(xv, w, b, activation=activation, **case_kwargs(case))
    for a, s in zip((x, w, b), saved):
        np.testing.assert_array_equal(backend.to_numpy(a), s)


# --------------------------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", cases("basic", "pad_same_stride2", "depthwise_x2", "large_C"))
def test_out_is_written_and_returned(backend, case, dtype, activation, rng, assert_close):
    x, w, b = cast_inputs(case, rng, dtype)
    OH, OW = output_hw(
        (case.H, case.W), (case.KH, case.KW), case.stride, case_tblr(case), case.dilation
    )
    out = backend.xp.full(
        (case.N, case.F, OH, OW), np.nan, dtype=dtype
    )  # garbage must be overwritten
    y = fastconv.conv2d(
        backend.to_device(x),
        backend.to_device(w),
        backend.to_device(b),
        activation=activation,
        out=out,
        **case_kwargs(case),
    )
    assert y is out
    assert_close(
        out, expected_for(case, x, w, b, relu=activation == "relu"), dtype, reduction(case)
    )


def test_out_with_promoted_dtype(rng, assert_close):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float16)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float16)
    out = np.empty((1, 3, 3, 3), dtype=np.float32)
    assert fastconv.conv2d(x, w, out=out) is out
    assert_close(out, conv2d_ref(x, w), np.float32, 18)


# --------------------------------------------------------------------------------------------
# dtype rule
# --------------------------------------------------------------------------------------------


def _values(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind == "u":
        return rng.integers(0, 4, shape).astype(dtype)
    if dtype.kind == "i":
        return rng.integers(-3, 4, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize(
    "x_dtype, w_dtype, b_dtype, expected",
    [
        ("float32", "float32", "float32", "float32"),
        ("float64", "float64", "float64", "float64"),
        ("float32", "float64", None, "float64"),
        ("float64", "float32", "float32", "float64"),
        ("float32", "float32", "float64", "float64"),  # the bias takes part in the promotion
        ("float16", "float16", "float16", "float32"),  # float16 is computed in float32
        ("float16", "float16", None, "float32"),
        ("float16", "float32", None, "float32"),
        ("float16", "float64", "float16", "float64"),
        ("int8", "float32", "float32", "float32"),
        ("uint8", "float32", None, "float32"),
        ("int16", "float32", "float32", "float32"),
        ("int32", "float32", "float32", "float64"),  # numpy: int32 + float32 -> float64
        ("int64", "float64", None, "float64"),
        ("int8", "float16", None, "float32"),  # result_type float16 -> computed in float32
        ("int32", "float16", None, "float64"),
        ("int64", "int64", None, "float64"),  # all-integer -> float64
        ("int32", "int8", "int16", "float64"),
        ("bool", "float32", None, "float32"),
        ("float32", "bool", "float32", "float32"),
    ],
)
def test_dtype_promotion(backend, x_dtype, w_dtype, b_dtype, expected, rng, assert_close):
    x = _values(rng, (2, 3, 6, 5), x_dtype)
    w = _values(rng, (4, 3, 3, 2), w_dtype)
    b = None if b_dtype is None else _values(rng, (4,), b_dtype)
    bd = None if b is None else backend.to_device(b)
    y = fastconv.conv2d(backend.to_device(x), backend.to_device(w), bd, padding=1)
    assert y.dtype == np.dtype(expected)
    assert_close(y, conv2d_ref(x, w, b, 1, (1, 1, 1, 1), 1, 1), expected, 18)


# --------------------------------------------------------------------------------------------
# NaN and inf propagate like in the reference
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["x", "weight", "bias", "x_inf", "x_neg_inf"])
@pytest.mark.parametrize(
    "case",
    cases("basic", "pad_int", "depthwise")
    + [pytest.param(CASE_BY_ID["depthwise"]._replace(padding=0), id="depthwise_unpadded")],
)
def test_nan_inf_propagate(backend, case, where, dtype, activation, rng):
    """Like the reference (and torch): NaN stays NaN, also through ReLU (np.maximum, torch.relu).

    Zero padding means the input is extended with zeros, so a NaN/inf weight times a padded zero
    gives NaN at the border too (IEEE 0 * NaN = NaN), as in torch.nn.functional.conv2d."""
    x, w, b = cast_inputs(case, rng, dtype)
    if where == "x":
        x[1, 2, 3, 4] = np.nan
    elif where == "x_inf":
        x[0, 1, 0, 2] = np.inf
    elif where == "x_neg_inf":
        x[1, 0, 6, 5] = -np.inf
    elif where == "weight":
        w[2, 0, 0, 2] = np.nan
    else:
        b[3] = np.nan
    with np.errstate(invalid="ignore"):
        expected = expected_for(case, x, w, b, relu=activation == "relu")
    y = backend.to_numpy(
        fastconv.conv2d(
            backend.to_device(x),
            backend.to_device(w),
            backend.to_device(b),
            activation=activation,
            **case_kwargs(case),
        )
    )
    special = ~np.isfinite(expected)
    assert special.any()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(expected))
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(expected))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y[~special], expected[~special], **tol)
