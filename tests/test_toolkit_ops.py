"""sigmoid/tanh, ceil-mode pooling, global and adaptive average pooling, and the arithmetic
functions of fastconv.arith, against tests/reference.py, PyTorch when importable, and central
differences."""

from fractions import Fraction

import numpy as np
import pytest
from reference import (
    adaptive_avg_pool2d_ref,
    avg_pool2d_ref,
    max_pool2d_ref,
    pool_out_size,
    sigmoid_ref,
)

import fastconv as fc
from fastconv import arith
from fastconv.gradcheck import gradcheck

DTYPES = [np.float32, np.float64]


# --------------------------------------------------------------------------- sigmoid, tanh
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_tanh_values_without_overflow(dtype, backend):
    x = np.array([-1e4, -745.0, -100.0, -30.0, -3.0, -1e-8, 0.0, 2.0, 40.0, 1e4, np.nan])
    xs = backend.to_device(x.astype(dtype))
    with np.errstate(all="raise"):  # no overflow (nor underflow) warnings
        y = backend.to_numpy(fc.sigmoid(xs))
        t = backend.to_numpy(fc.tanh(xs))
    assert y.dtype == dtype and t.dtype == dtype
    # relative precision in the negative tail too (where 1 + tanh(x / 2) loses it)
    tiny = np.finfo(dtype).tiny
    expected = sigmoid_ref(x.astype(dtype))
    ok = expected >= tiny
    np.testing.assert_allclose(y[ok], expected[ok], rtol=4 * np.finfo(dtype).eps)
    assert np.all(y[~ok & ~np.isnan(x)] <= tiny)
    assert np.isnan(y[-1]) and np.isnan(t[-1])
    np.testing.assert_allclose(t, np.tanh(x.astype(dtype)), rtol=2 * np.finfo(dtype).eps)


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_activation_gradients_match_central_differences(name, rng):
    x = rng.standard_normal((3, 4, 5)) * 3
    forward = getattr(fc, name)
    backward = getattr(fc, f"{name}_backward")
    gradcheck(lambda x: forward(x), [x], lambda g: [backward(g, forward(x))], rtol=1e-6)


def test_activation_rules_and_errors():
    assert fc.sigmoid(np.array([0, 1])).dtype == np.float64  # integers -> float64
    assert fc.sigmoid(np.zeros(2, np.float16)).dtype == np.float32
    x = np.linspace(-3, 3, 7)
    before = x.copy()
    fc.sigmoid(x), fc.tanh(x)
    np.testing.assert_array_equal(x, before)
    with pytest.raises(ValueError, match="grad_out"):
        fc.sigmoid_backward(np.zeros(3), np.zeros(4))
    with pytest.raises(TypeError, match="x"):
        fc.tanh(np.zeros(2, complex))
    with pytest.raises(TypeError, match="y"):
        fc.tanh_backward(np.zeros(2), np.array(["a", "b"]))


# Every elementwise public op and its NumPy formula: forwards take x, backwards (grad_out, y).
ELEMENTWISE = {
    "sigmoid": sigmoid_ref,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid_backward": lambda grad_out, y: grad_out * y * (1 - y),
    "tanh_backward": lambda grad_out, y: grad_out * (1 - y * y),
    "relu_backward": lambda grad_out, y: np.where(y > 0, grad_out, 0),
}


@pytest.mark.parametrize("shape", [(), (1,)], ids=["0-d", "1-element"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_ops_on_0d_and_1_element_inputs(name, dtype, shape):
    """NumPy's ufuncs return scalars for 0-d arrays: sigmoid crashed on them, and the others
    returned NumPy scalars instead of the promised arrays of the input's shape."""
    op, formula = getattr(fc, name), ELEMENTWISE[name]
    arity = 2 if name.endswith("_backward") else 1
    for value in (-0.5, 0.75):  # both sides of relu's kink
        args = [np.full(shape, value + 0.125 * i, dtype) for i in range(arity)]
        result = op(*args)
        assert type(result) is np.ndarray, type(result)
        assert result.dtype == dtype and result.shape == shape
        expected = formula(*(a.astype(np.float64) for a in args))
        np.testing.assert_allclose(result, expected, rtol=4 * np.finfo(dtype).eps)


# --------------------------------------------------------------------------- pooling
# N, C, H, W, kernel, stride, padding
POOLS = [
    (2, 3, 7, 8, (3, 3), (2, 2), (1, 1)),
    (1, 2, 5, 7, (2, 2), (2, 2), (0, 0)),  # odd sizes: ceil adds a half window
    (2, 1, 6, 5, (2, 3), (1, 2), (1, 0)),
    (1, 2, 8, 7, (3, 3), (3, 3), (1, 1)),  # ceil: last window would start in the padding
    (1, 1, 4, 4, (4, 4), (3, 3), (2, 2)),
    (1, 1, 1, 1, (1, 1), (2, 2), (0, 0)),
]


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOLS)
def test_pooling_matches_reference(case, dtype, ceil_mode, rng, backend, assert_close):
    N, C, H, W, k, s, p = case
    x = rng.standard_normal((N, C, H, W))
    xs = backend.to_device(x.astype(dtype))
    expected_shape = (N, C) + tuple(
        pool_out_size(n, kk, ss, pp, ceil_mode) for n, kk, ss, pp in zip((H, W), k, s, p)
    )
    assert fc.pool_output_shape(x.shape, k, s, p, ceil_mode) == expected_shape
    y, idx = fc.max_pool2d(xs, k, s, p, return_indices=True, ceil_mode=ceil_mode)
    assert_close(y, max_pool2d_ref(x, k, s, p, ceil_mode)[0], dtype)
    gy = rng.standard_normal(expected_shape)
    gx = backend.to_numpy(fc.max_pool2d_backward(backend.to_device(gy.astype(dtype)), idx, x.shape))
    expected_gx = np.zeros(x.shape)
    planes = backend.to_numpy(idx).reshape(N * C, -1)
    np.add.at(
        expected_gx.reshape(N * C, -1), (np.arange(N * C)[:, None], planes), gy.reshape(N * C, -1)
    )
    assert_close(gx, expected_gx, dtype, reduction=9)
    for cip in (True, False):
        y = fc.avg_pool2d(xs, k, s, p, ceil_mode=ceil_mode, count_include_pad=cip)
        assert_close(y, avg_pool2d_ref(x, k, s, p, cip, ceil_mode), dtype, reduction=16)
        gx = fc.avg_pool2d_backward(
            backend.to_device(gy.astype(dtype)),
            x.shape,
            k,
            s,
            p,
            ceil_mode=ceil_mode,
            count_include_pad=cip,
        )
        # the gradient of the (linear) reference, one basis vector at a time
        basis = np.eye(x.size).reshape((x.size,) + x.shape)
        expected_gx = np.array(
            [np.sum(avg_pool2d_ref(e, k, s, p, cip, ceil_mode) * gy) for e in basis]
        ).reshape(x.shape)
        assert_close(gx, expected_gx, dtype, reduction=16)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pooling_matches_torch(ceil_mode, rng):
    torch = pytest.importorskip("torch")
    for N, C, H, W, k, s, p in POOLS:
        x = rng.standard_normal((N, C, H, W))
        xt = torch.from_numpy(x)
        np.testing.assert_array_equal(
            fc.max_pool2d(x, k, s, p, ceil_mode=ceil_mode),
            torch.nn.functional.max_pool2d(xt, k, s, p, ceil_mode=ceil_mode).numpy(),
        )
        for cip in (True, False):
            np.testing.assert_allclose(
                fc.avg_pool2d(x, k, s, p, ceil_mode=ceil_mode, count_include_pad=cip),
                torch.nn.functional.avg_pool2d(xt, k, s, p, ceil_mode, cip).numpy(),
                rtol=1e-12,
            )


def test_ceil_mode_errors():
    with pytest.raises(TypeError, match="ceil_mode"):
        fc.max_pool2d(np.zeros((1, 1, 4, 4)), 2, ceil_mode="yes")
    with pytest.raises(TypeError, match="ceil_mode"):
        fc.avg_pool2d(np.zeros((1, 1, 4, 4)), 2, ceil_mode=1)


# --------------------------------------------------------------------------- global, adaptive
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,out",
    [
        ((2, 3, 6, 8), (3, 4)),  # tiles: avg_pool2d's path
        ((2, 3, 5, 7), 3),  # uneven, overlapping windows
        ((1, 2, 7, 7), (2, 5)),
        ((1, 1, 3, 3), 5),  # more outputs than inputs
        ((2, 2, 6, 5), (4, None)),  # None keeps W
        ((1, 1, 1, 1), 1),
    ],
)
def test_adaptive_avg_pool2d(shape, out, dtype, rng, backend, assert_close):
    x = rng.standard_normal(shape)
    out_hw = (
        (out, out) if isinstance(out, int) else (out[0], shape[3] if out[1] is None else out[1])
    )
    expected = adaptive_avg_pool2d_ref(x, out_hw)
    y = fc.adaptive_avg_pool2d(backend.to_device(x.astype(dtype)), out)
    assert_close(y, expected, dtype, reduction=16)
    gy = rng.standard_normal(expected.shape)
    gx = fc.adaptive_avg_pool2d_backward(backend.to_device(gy.astype(dtype)), shape)
    basis = np.eye(x.size).reshape((x.size,) + shape)
    expected_gx = np.array(
        [np.sum(adaptive_avg_pool2d_ref(e, out_hw) * gy) for e in basis]
    ).reshape(shape)
    assert_close(gx, expected_gx, dtype, reduction=16)


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_avg_pool2d(dtype, rng, backend, assert_close):
    x = rng.standard_normal((2, 3, 5, 4))
    y = fc.global_avg_pool2d(backend.to_device(x.astype(dtype)))
    assert_close(y, x.mean(axis=(2, 3), keepdims=True), dtype, reduction=20)
    gy = rng.standard_normal((2, 3, 1, 1))
    gx = fc.global_avg_pool2d_backward(backend.to_device(gy.astype(dtype)), x.shape)
    assert_close(gx, np.broadcast_to(gy / 20, x.shape), dtype)


def test_adaptive_matches_torch_and_central_differences(rng):
    x = rng.standard_normal((2, 2, 7, 9))
    gradcheck(
        lambda x: fc.adaptive_avg_pool2d(x, (3, 4)),
        [x],
        lambda g: [fc.adaptive_avg_pool2d_backward(g, x.shape)],
        rtol=1e-6,
    )
    torch = pytest.importorskip("torch")
    for out in [(3, 4), 2, (7, 9), (10, 3)]:
        np.testing.assert_allclose(
            fc.adaptive_avg_pool2d(x, out),
            torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), out).numpy(),
            rtol=1e-12,
            atol=1e-15,
        )


def test_adaptive_errors():
    x = np.zeros((1, 2, 5, 5))
    with pytest.raises(ValueError, match="output_size"):
        fc.adaptive_avg_pool2d(x, 0)
    with pytest.raises(ValueError, match="output_size"):
        fc.adaptive_avg_pool2d(x, (1, 2, 3))
    with pytest.raises(TypeError, match="output_size"):
        fc.adaptive_avg_pool2d(x, 2.5)
    with pytest.raises(ValueError, match=r"x must be 4-D \(N, C, H, W\) or 3-D \(C, H, W\)"):
        fc.global_avg_pool2d(x[0, 0])
    with pytest.raises(ValueError, match="grad_out"):
        fc.adaptive_avg_pool2d_backward(np.zeros((1, 3, 2, 2)), x.shape)


# --------------------------------------------------------------------------- arithmetic
def test_output_size_functions_agree_with_the_ops():
    for size, k, s, p, d in [(32, 5, 1, 0, 1), (10, 3, 2, "same", 2), (9, 4, 3, (1, 2), 1)]:
        got = arith.conv_output_size(size, k, s, p, d)
        pad = p if not isinstance(p, tuple) else ((0, 0), p)
        assert (
            got
            == fc.conv_output_shape(
                (1, 1, 1 if pad == "same" else size, size),
                (1, 1, 1, k),
                (1, s),
                pad if pad == "same" or isinstance(p, tuple) else (0, p),
                (1, d),
            )[3]
        )
    assert arith.conv_transpose_output_size(28, 4, 2, 1) == 56
    assert arith.conv_transpose_output_size(5, 3, 3, 1, 2, 1) == 15
    assert arith.pool_output_size(5, 2, 2, 0, ceil_mode=True) == 3
    assert arith.pool_output_size(5, 2, 2, 0) == 2
    with pytest.raises(ValueError, match="stride"):
        arith.conv_output_size(5, 3, stride=0)
    with pytest.raises(ValueError, match="padding"):
        arith.conv_output_size(5, 3, padding="full")


def test_receptive_field():
    # VGG-like: three 3x3 convs see 7x7 (the classic argument for stacking small kernels)
    assert arith.receptive_field([(3, 1)] * 3) == [(3, 1), (5, 1), (7, 1)]
    assert arith.receptive_field([(3, 1, 2)]) == [(5, 1)]  # dilated
    assert arith.receptive_field([(2, 2), (3, 1)]) == [(2, 2), (6, 2)]
    size, jump = arith.receptive_field_step(6, 2, 4, 2, transposed=True)
    assert (size, jump) == (8, 1)  # floor(3 / 2) = 1 more input, half the jump
    # output 2i + kh, kh in 0..2: output 2 is reached by inputs 0 and 1
    assert arith.receptive_field_step(1, 1, 3, 2, transposed=True) == (2, Fraction(1, 2))
