"""Forward values of pooling, linear and softmax cross-entropy against naive float64 loops."""

import numpy as np
import pytest
from reference import avg_pool2d_ref, linear_ref, max_pool2d_ref, softmax_cross_entropy_ref

import fastconv
from fastconv._kernels import pool as pool_kernels

DTYPES = [np.float32, np.float64]
POOL_CASES = [  # (shape, kernel, stride, padding)
    ((2, 3, 7, 6), 2, 2, 0),
    ((1, 1, 5, 5), 3, 1, 1),
    ((2, 2, 9, 8), (3, 2), (2, 3), (1, 1)),
    ((1, 4, 6, 7), (2, 3), 1, (1, 0)),
    ((3, 1, 4, 4), 4, 4, 2),
    ((1, 2, 1, 9), (1, 3), (1, 2), 0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kernel, stride, padding", POOL_CASES)
def test_max_pool_forward(dtype, shape, kernel, stride, padding):
    rng = np.random.default_rng(1)
    # Few distinct values: ties, which the first maximum (row-major) must win.
    x = rng.integers(-3, 4, shape).astype(dtype)
    y, idx = fastconv.max_pool2d(x, kernel, stride, padding, return_indices=True)
    y_ref, idx_ref = max_pool2d_ref(x, kernel, stride, padding)
    np.testing.assert_array_equal(y, y_ref.astype(dtype))
    np.testing.assert_array_equal(idx, idx_ref)


def test_max_pool_nan_wins():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = np.nan
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    y_ref, idx_ref = max_pool2d_ref(x, 2, 2, 0)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)


@pytest.fixture(params=range(pool_kernels.detected_level() + 1), ids=lambda v: f"level{v}")
def pool_level(request):
    """The 2x2 kernel's SIMD steps (float32, level >= 1: pool_2x2.h) or the scalar loop alone."""
    previous = pool_kernels.set_level(request.param)
    yield request.param
    pool_kernels.set_level(previous)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape",
    [
        (2, 3, 14, 17),
        (1, 2, 4, 32),
        (1, 1, 3, 37),
        (2, 1, 2, 2),
        (3, 2, 28, 28),
        (2, 3, 11, 10),  # LeNet-5's second pooling (5 wide), an odd row left out
        (1, 2, 4, 71),  # AVX-512: two whole steps of 16 windows and 3 by masks
    ],
)
def test_max_pool_2x2_specials(dtype, shape, pool_level):
    # The 2x2 kernel over several widths (16-, 8- and 4-wide steps, masked and scalar columns); ties, signed
    # zeros, +-inf and NaN (the first NaN wins and stays) in every position of the window.
    rng = np.random.default_rng(4)
    x = rng.integers(-2, 3, shape).astype(dtype)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0], dtype)
    hits = rng.random(shape) < 0.15
    x[hits] = rng.choice(specials, hits.sum())
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    y_ref, idx_ref = max_pool2d_ref(x, 2, 2, 0)
    np.testing.assert_array_equal(y, y_ref.astype(dtype))
    np.testing.assert_array_equal(idx, idx_ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("shape, kernel, stride, padding", POOL_CASES)
def test_avg_pool_forward(assert_close, dtype, count_include_pad, shape, kernel, stride, padding):
    x = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    y = fastconv.avg_pool2d(x, kernel, stride, padding, count_include_pad=count_include_pad)
    assert y.dtype == dtype
    assert_close(y, avg_pool2d_ref(x, kernel, stride, padding, count_include_pad), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N, IN, OUT", [(1, 1, 1), (3, 5, 4), (70, 33, 10), (2, 0, 3)])
@pytest.mark.parametrize("bias, activation", [(False, None), (True, None), (True, "relu")])
def test_linear_forward(assert_close, dtype, N, IN, OUT, bias, activation):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, IN)).astype(dtype)
    w = rng.standard_normal((OUT, IN)).astype(dtype)
    b = rng.standard_normal(OUT).astype(dtype) if bias else None
    expected = linear_ref(x, w, b)
    if activation == "relu":
        expected = np.maximum(expected, 0)
    y = fastconv.linear(x, w, b, activation=activation)
    assert y.dtype == dtype and y.shape == (N, OUT)
    assert_close(y, expected, dtype, reduction=max(IN, 1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N, K", [(1, 1), (1, 10), (7, 3), (300, 10)])
def test_softmax_cross_entropy_forward(assert_close, dtype, N, K):
    rng = np.random.default_rng(4)
    logits = (rng.standard_normal((N, K)) * 5).astype(dtype)
    labels = rng.integers(0, K, N)
    loss, log_probs = fastconv.softmax_cross_entropy(logits, labels)
    loss_ref, log_probs_ref = softmax_cross_entropy_ref(logits, labels)
    assert log_probs.dtype == dtype
    assert_close(log_probs, log_probs_ref, dtype, reduction=K)
    assert_close(np.asarray(loss), np.asarray(loss_ref), dtype, reduction=K * N)


def _scatter_ref(grad_y, indices, input_shape):
    """grad_x[n, c].flat[indices[n, c]] += grad_y[n, c], in float64."""
    N, C, H, W = input_shape
    gx = np.zeros((N * C, H * W))
    for plane, (g, i) in enumerate(zip(grad_y.reshape(N * C, -1), indices.reshape(N * C, -1))):
        np.add.at(gx[plane], i, g)
    return gx.reshape(input_shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, kernel, stride",
    [
        ((2, 3, 9, 11), 2, 2),
        ((1, 2, 8, 8), 2, 2),
        ((1, 2, 5, 71), 2, 2),  # 35 windows a row
        ((2, 2, 9, 9), 3, 2),
        ((2, 1, 9, 9), 3, 3),  # windows of 3 whose winners leave the 2x2 blocks
        ((1, 1, 7, 6), (1, 2), 1),
    ],
)
def test_max_pool_backward_against_a_scatter(dtype, shape, kernel, stride, pool_level):
    # 2x2 stride 2 (odd sizes leave cells outside every block) and windows whose winners leave
    # their 2x2 block, ties included, at every level the forward's indices come from; gradients
    # with -0, infs and NaN (the scatter's 0 + g turns -0 into 0).
    rng = np.random.default_rng(5)
    x = rng.integers(-2, 3, shape).astype(dtype)
    y, idx = fastconv.max_pool2d(x, kernel, stride, return_indices=True)
    gy = rng.standard_normal(y.shape).astype(dtype)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0], dtype)
    hits = rng.random(y.shape) < 0.2
    gy[hits] = rng.choice(specials, hits.sum())
    gx = fastconv.max_pool2d_backward(gy, idx, shape)
    expected = _scatter_ref(gy, idx, shape).astype(dtype)
    np.testing.assert_array_equal(gx, expected)
    np.testing.assert_array_equal(np.signbit(gx), np.signbit(expected))


def test_max_pool_backward_any_indices_in_the_plane(pool_level):
    # Indices need not come from a 2x2 forward: one plane in blocks, one scattering to a cell
    # that another output also picks (the gradients add).
    gy = np.arange(1.0, 9.0).reshape(2, 1, 2, 2)
    idx = np.array([[[[0, 3], [9, 15]]], [[[0, 0], [5, 15]]]], dtype=np.int64)
    gx = fastconv.max_pool2d_backward(gy, idx, (2, 1, 4, 4))
    np.testing.assert_array_equal(gx, _scatter_ref(gy, idx, (2, 1, 4, 4)))
    assert gx[1, 0].flat[0] == 5.0 + 6.0
