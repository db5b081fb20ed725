"""conv2d_backward, conv2d_grad_input, conv2d_grad_weight against the reference and finite differences."""

import itertools

import numpy as np
import pytest
from reference import (
    CASES,
    MEDIUM_CASES,
    case_kwargs,
    case_tblr,
    conv2d_backward_ref,
    conv2d_ref,
    make_inputs,
    numeric_grad,
    output_hw,
)

import fastconv

DTYPES = [np.float32, np.float64]
CASE_BY_ID = {c.id: c for c in CASES + MEDIUM_CASES}


def cases(*ids):
    return [pytest.param(CASE_BY_ID[i], id=i) for i in ids]


ALL_CASES = cases(*(c.id for c in CASES + MEDIUM_CASES))
SMALL_CASES = cases(
    "basic",
    "pad_pairs_asym2",
    "pad_same_stride2",
    "groups3_stride_dil",
    "depthwise_x2",
    "kernel_2x5",
    "stride_drops_rows",
    "dil_stride_pad",
)


def out_hw(case):
    return output_hw(
        (case.H, case.W), (case.KH, case.KW), case.stride, case_tblr(case), case.dilation
    )


def problem(case, rng, dtype):
    """x, weight, bias and a random grad_out of `dtype` for a Case."""
    x, w, b = (a.astype(dtype) for a in make_inputs(case, rng))
    g = rng.standard_normal((case.N, case.F) + out_hw(case)).astype(dtype)
    return x, w, b, g


def reference_grads(case, g, x, w):
    return conv2d_backward_ref(g, x, w, case.stride, case_tblr(case), case.dilation, case.groups)


def reductions(case):
    """Products summed per element of grad_input, grad_weight, grad_bias."""
    OH, OW = out_hw(case)
    return case.F // case.groups * case.KH * case.KW, case.N * OH * OW, case.N * OH * OW


def check_grads(grads, expected, dtype, case, assert_close):
    assert isinstance(grads, tuple) and len(grads) == 3
    for name, got, want, red in zip(
        ("grad_input", "grad_weight", "grad_bias"), grads, expected, reductions(case)
    ):
        assert_close(got, want, dtype, red, err_msg=name)


# --------------------------------------------------------------------------------------------
# The reference's own gradients against finite differences of the reference forward
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", cases("basic", "pad_pairs_asym2", "groups3_stride_dil", "pad_same_stride_2x3_dil2")
)
def test_reference_backward_matches_finite_differences(case, rng):
    x, w, b, g = problem(case, rng, np.float64)
    x, g = x[:1], g[:1]
    kw = (case.stride, case_tblr(case), case.dilation, case.groups)
    gx, gw, gb = conv2d_backward_ref(g, x, w, *kw)
    np.testing.assert_allclose(
        gx, numeric_grad(lambda v: (conv2d_ref(v, w, b, *kw) * g).sum(), x), atol=1e-6
    )
    np.testing.assert_allclose(
        gw, numeric_grad(lambda v: (conv2d_ref(x, v, b, *kw) * g).sum(), w), atol=1e-6
    )
    np.testing.assert_allclose(
        gb, numeric_grad(lambda v: (conv2d_ref(x, w, v, *kw) * g).sum(), b), atol=1e-6
    )


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ALL_CASES)
def test_backward_matches_reference(backend, case, dtype, rng, assert_close):
    x, w, _, g = problem(case, rng, dtype)
    d = backend.to_device
    grads = fastconv.conv2d_backward(d(g), d(x), d(w), **case_kwargs(case))
    for a in grads:
        assert isinstance(a, backend.xp.ndarray)
    check_grads(grads, reference_grads(case, g, x, w), dtype, case, assert_close)


@pytest.mark.parametrize("case", SMALL_CASES)
def test_backward_matches_finite_differences(case, rng):
    """Gradients of L = sum(conv2d(x, w, b) * g), by central differences of fastconv's own forward."""
    case = case._replace(N=1)  # one image keeps the number of forward calls small
    x, w, b, g = problem(case, rng, np.float64)
    kw = case_kwargs(case)
    gx, gw, gb = fastconv.conv2d_backward(g, x, w, **kw)
    tol = dict(rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        gx, numeric_grad(lambda v: (fastconv.conv2d(v, w, b, **kw) * g).sum(), x), **tol
    )
    np.testing.assert_allclose(
        gw, numeric_grad(lambda v: (fastconv.conv2d(x, v, b, **kw) * g).sum(), w), **tol
    )
    np.testing.assert_allclose(
        gb, numeric_grad(lambda v: (fastconv.conv2d(x, w, v, **kw) * g).sum(), b), **tol
    )


@pytest.mark.parametrize("case", cases("basic", "pad_same_stride2", "depthwise_x2"))
def test_backward_empty_batch(backend, case):
    xp = backend.xp
    x = xp.zeros((0, case.C, case.H, case.W))
    w = xp.ones((case.F, case.C // case.groups, case.KH, case.KW))
    g = xp.zeros((0, case.F) + out_hw(case))
    gx, gw, gb = fastconv.conv2d_backward(g, x, w, **case_kwargs(case))
    assert gx.shape == x.shape
    np.testing.assert_array_equal(backend.to_numpy(gw), np.zeros(w.shape))
    np.testing.assert_array_equal(backend.to_numpy(gb), np.zeros(case.F))


# --------------------------------------------------------------------------------------------
# needs=
# --------------------------------------------------------------------------------------------

NAMES = ("input", "weight", "bias")
NEEDS = [
    tuple(p)
    for r in (1, 2, 3)
    for c in itertools.combinations(NAMES, r)
    for p in itertools.permutations(c)
]


@pytest.mark.parametrize("needs", NEEDS + [["weight", "bias"]], ids=str)
def test_needs_subsets(backend, needs, rng, assert_close):
    case = CASE_BY_ID["groups3_stride_dil"]
    x, w, _, g = problem(case, rng, np.float64)
    d = backend.to_device
    grads = fastconv.conv2d_backward(d(g), d(x), d(w), needs=needs, **case_kwargs(case))
    assert isinstance(grads, tuple) and len(grads) == 3
    for name, got, want, red in zip(NAMES, grads, reference_grads(case, g, x, w), reductions(case)):
        if name in needs:
            assert got is not None, name
            assert_close(got, want, np.float64, red, err_msg=name)
        else:
            assert got is None, name


def test_needs_default_is_all(rng):
    case = CASE_BY_ID["basic"]
    x, w, _, g = problem(case, rng, np.float64)
    full = fastconv.conv2d_backward(g, x, w, **case_kwargs(case))
    explicit = fastconv.conv2d_backward(
        g, x, w, needs=("bias", "input", "weight"), **case_kwargs(case)
    )
    for a, b in zip(full, explicit):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


# --------------------------------------------------------------------------------------------
# conv2d_grad_input / conv2d_grad_weight
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "case", SMALL_CASES + cases("large_C", "k1x1_groups", "kernel_gt_input_pad")
)
def test_grad_functions_agree_with_backward(backend, case, dtype, rng, assert_close, tolerance):
    x, w, _, g = problem(case, rng, dtype)
    d = backend.to_device
    kw = case_kwargs(case)
    gx, gw, _ = fastconv.conv2d_backward(d(g), d(x), d(w), **kw)
    gi = fastconv.conv2d_grad_input(d(g), d(w), x.shape, **kw)
    gwt = fastconv.conv2d_grad_weight(d(g), d(x), w.shape, **kw)
    red_x, red_w, _ = reductions(case)
    rx, rw, _ = reference_grads(case, g, x, w)
    assert_close(gi, rx, dtype, red_x)
    assert_close(gwt, rw, dtype, red_w)
    np.testing.assert_allclose(
        backend.to_numpy(gi), backend.to_numpy(gx), **tolerance(dtype, red_x)
    )
    np.testing.assert_allclose(
        backend.to_numpy(gwt), backend.to_numpy(gw), **tolerance(dtype, red_w)
    )


def test_grad_input_uses_input_shape(rng):
    """H = 7 and H = 8 give the same 3-row output at stride 2; grad_input needs input_shape to tell."""
    w = rng.standard_normal((4, 3, 3, 3))
    g = rng.standard_normal((2, 4, 3, 3))
    g7 = fastconv.conv2d_grad_input(g, w, (2, 3, 7, 7), stride=2)
    g8 = fastconv.conv2d_grad_input(g, w, (2, 3, 8, 8), stride=2)
    assert g7.shape == (2, 3, 7, 7) and g8.shape == (2, 3, 8, 8)
    np.testing.assert_allclose(g8[:, :, :7, :7], g7, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(g8[:, :, 7, :], 0)
    np.testing.assert_array_equal(g8[:, :, :, 7], 0)
    rx, _, _ = conv2d_backward_ref(g, np.zeros((2, 3, 8, 8)), w, 2, (0, 0, 0, 0), 1, 1)
    np.testing.assert_allclose(g8, rx, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------------------------
# dtypes, layouts, inputs untouched
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "g_dtype, x_dtype, w_dtype, expected",
    [
        ("float32", "float32", "float32", "float32"),
        ("float64", "float32", "float32", "float64"),
        ("float32", "float64", "float32", "float64"),
        ("float16", "float16", "float16", "float32"),
        ("float16", "float32", "float16", "float32"),
        ("float32", "int16", "float32", "float32"),
        ("int64", "int64", "int64", "float64"),
    ],
)
def test_backward_dtype_promotion(backend, g_dtype, x_dtype, w_dtype, expected, rng, assert_close):
    case = CASE_BY_ID["pad_int"]
    x = (rng.integers(-3, 4, (case.N, case.C, case.H, case.W))).astype(x_dtype)
    w = (rng.integers(-3, 4, (case.F, case.C, case.KH, case.KW))).astype(w_dtype)
    g = (rng.integers(-3, 4, (case.N, case.F) + out_hw(case))).astype(g_dtype)
    d = backend.to_device
    grads = fastconv.conv2d_backward(d(g), d(x), d(w), **case_kwargs(case))
    for a in grads:
        assert a.dtype == np.dtype(expected)
    check_grads(grads, reference_grads(case, g, x, w), expected, case, assert_close)


@pytest.mark.parametrize(
    "case", cases("basic", "pad_pairs_asym2", "groups3_stride_dil", "depthwise_x2")
)
def test_backward_strided_views(backend, case, rng, assert_close):
    x, w, _, g = problem(case, rng, np.float64)
    xp = backend.xp
    xv = xp.asarray(np.ascontiguousarray(x[:, :, ::-1]))[:, :, ::-1]  # negative H stride
    wv = xp.asarray(np.ascontiguousarray(w.transpose(0, 1, 3, 2))).transpose(0, 1, 3, 2)
    gbase = xp.zeros(g.shape[:-1] + (2 * g.shape[-1],))
    gbase[..., ::-2] = xp.asarray(g)
    gv = gbase[..., ::-2]  # negative step-2 W stride
    np.testing.assert_array_equal(backend.to_numpy(gv), g)
    kw = case_kwargs(case)
    expected = reference_grads(case, g, x, w)
    check_grads(
        fastconv.conv2d_backward(gv, xv, wv, **kw), expected, np.float64, case, assert_close
    )
    red_x, red_w, _ = reductions(case)
    assert_close(fastconv.conv2d_grad_input(gv, wv, x.shape, **kw), expected[0], np.float64, red_x)
    assert_close(fastconv.conv2d_grad_weight(gv, xv, w.shape, **kw), expected[1], np.float64, red_w)


@pytest.mark.parametrize("dtype", DTYPES + [np.float16])
def test_backward_inputs_not_modified(backend, dtype, rng):
    case = CASE_BY_ID["groups3_stride_dil"]
    x, w, _, g = (backend.to_device(a) for a in problem(case, rng, dtype))
    saved = [backend.to_numpy(a).copy() for a in (g, x, w)]
    kw = case_kwargs(case)
    fastconv.conv2d_backward(g, x, w, **kw)
    fastconv.conv2d_backward(g[:, :, ::-1], x, w, **kw)
    fastconv.conv2d_grad_input(g, w, x.shape, **kw)
    fastconv.conv2d_grad_weight(g, x, w.shape, **kw)
    for a, s in zip((g, x, w), saved):
        np.testing.assert_array_equal(backend.to_numpy(a), s)


# --------------------------------------------------------------------------------------------
# Fused ReLU: forward consistent with conv-then-ReLU, gradient through the mask
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "case", cases("basic", "pad_same_stride2", "groups2", "depthwise_x2", "large_C")
)
def test_relu_forward_consistent(backend, case, dtype, rng, tolerance):
    x, w, b, _ = (backend.to_device(a) for a in problem(case, rng, dtype))
    kw = case_kwargs(case)
    fused = backend.to_numpy(fastconv.conv2d(x, w, b, activation="relu", **kw))
    plain = backend.to_numpy(fastconv.conv2d(x, w, b, **kw))
    assert fused.dtype == plain.dtype == dtype
    np.testing.assert_array_equal(fused >= 0, True)
    reduction = case.C // case.groups * case.KH * case.KW
    np.testing.assert_allclose(fused, np.maximum(plain, 0), **tolerance(dtype, reduction))


@pytest.mark.parametrize("case", cases("basic", "groups3_stride_dil", "depthwise_x2"))
def test_relu_gradient_through_mask(case, rng):
    """d/d(x, w, b) of sum(relu(conv2d(x, w, b)) * g) equals conv2d_backward(g * (y > 0), x, w)."""
    case = case._replace(N=1)
    x, w, b, g = problem(case, rng, np.float64)
    kw = case_kwargs(case)
    y = fastconv.conv2d(x, w, b, activation="relu", **kw)
    gx, gw, gb = fastconv.conv2d_backward(g * (y > 0), x, w, **kw)

    def loss(xv, wv, bv):
        return (fastconv.conv2d(xv, wv, bv, activation="relu", **kw) * g).sum()

    tol = dict(rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gx, numeric_grad(lambda v: loss(v, w, b), x), **tol)
    np.testing.assert_allclose(gw, numeric_grad(lambda v: loss(x, v, b), w), **tol)
    np.testing.assert_allclose(gb, numeric_grad(lambda v: loss(x, w, v), b), **tol)
