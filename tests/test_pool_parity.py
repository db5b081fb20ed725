"""torch.nn.functional pooling parity (issue 22): max_pool2d's dilation (torch's positional order),
avg_pool2d's divisor_override, adaptive_max_pool2d and their gradients; the layers MaxPool2D
(dilation), AvgPool2D (divisor_override) and AdaptiveMaxPool2D; Dask. Against the float64
references of tests/reference.py, central differences, and torch when importable."""

import numpy as np
import pytest
from reference import (
    adaptive_max_pool2d_ref,
    avg_pool2d_ref,
    max_pool2d_ref,
    pool_out_size,
    scatter_ref,
)

import fastconv as fc
from fastconv import arith, nn
from fastconv.gradcheck import gradcheck, gradcheck_layer

DTYPES = [np.float32, np.float64]

# N, C, H, W, kernel, stride, padding, dilation
DILATED = [
    (2, 3, 11, 9, (3, 3), (2, 2), (1, 1), (2, 2)),
    (1, 2, 10, 13, (2, 3), (1, 2), (1, 1), (3, 2)),  # batch 1, non-square everything
    (2, 1, 9, 8, (3, 2), (3, 1), (0, 1), (1, 3)),  # channel 1, dilated along W only
    (1, 1, 7, 7, (2, 2), (2, 2), (1, 0), (4, 1)),  # taps skipping over the top padding
    (1, 2, 5, 6, (1, 3), (2, 1), (0, 1), (5, 2)),  # a size-1 kernel axis: its dilation is moot
    (2, 2, 6, 8, (2, 2), (2, 2), (0, 0), (1, 1)),  # undilated 2x2: the SIMD path
    (1, 2, 12, 11, (4, 4), (3, 2), (2, 1), (2, 3)),  # 16 taps: the branching scan
]


def _ties_and_nan(rng, shape, dtype, nans=2):
    """Small integers (many ties: the first max must win) and NaNs in one row of the last plane
    (a NaN wins its windows; of two, the first stays: the second is in the last column)."""
    x = rng.integers(-3, 4, size=shape).astype(np.float64)
    x[-1, -1, shape[2] // 2, [shape[3] // 2, shape[3] - 1][:nans]] = np.nan
    return x, x.astype(dtype)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", DILATED)
def test_dilated_max_pool_matches_reference(case, dtype, ceil_mode, rng, backend, assert_close):
    N, C, H, W, k, s, p, d = case
    x64, x = _ties_and_nan(rng, (N, C, H, W), dtype)
    before = x.copy()
    y_ref, idx_ref = max_pool2d_ref(x64, k, s, p, ceil_mode, d)
    expected_shape = (N, C) + tuple(
        pool_out_size(*a, ceil_mode, dd) for a, dd in zip(zip((H, W), k, s, p), d)
    )
    assert y_ref.shape == expected_shape
    assert fc.pool_output_shape(x.shape, k, s, p, ceil_mode, d) == expected_shape
    y, idx = fc.max_pool2d(backend.to_device(x), k, s, p, d, ceil_mode, True)
    assert_close(y, y_ref, dtype)
    np.testing.assert_array_equal(backend.to_numpy(idx), idx_ref)
    np.testing.assert_array_equal(x, before)  # the input is not modified
    gy = rng.standard_normal(expected_shape)
    gx = fc.max_pool2d_backward(backend.to_device(gy.astype(dtype)), idx, x.shape)
    assert_close(gx, scatter_ref(gy, idx_ref, x.shape), dtype, reduction=9)


def test_dilated_max_pool_gradient_by_central_differences(rng):
    x = rng.permutation(360).reshape(2, 2, 9, 10) / 360  # distinct: a stable argmax
    for args in [((3, 2), (1, 2), (1, 1), (2, 3), False), (2, 2, 1, 3, True)]:
        _, idx = fc.max_pool2d(x, *args, True)
        gradcheck(
            lambda x: fc.max_pool2d(x, *args),
            [x],
            lambda g: [fc.max_pool2d_backward(g, idx, x.shape)],
            rtol=1e-6,
            max_checks=80,
        )


def test_torch_positional_order_and_keywords():
    x = np.random.default_rng(3).standard_normal((1, 2, 9, 9))
    positional = fc.max_pool2d(x, 3, 2, 1, 2, True, True)  # torch's order, verbatim
    keywords = fc.max_pool2d(
        x, kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True, return_indices=True
    )
    for a, b in zip(positional, keywords):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fc.max_pool2d(x, 3, 1, 0, 1), fc.max_pool2d(x, 3, 1))
    np.testing.assert_array_equal(
        fc.max_pool2d(x, (3,), (1,), (0,), (2,)), fc.max_pool2d(x, 3, 1, 0, 2)
    )


# --------------------------------------------------------------------------- divisor_override
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "case",
    [
        (2, 3, 7, 8, (3, 3), (2, 2), (1, 1), False),
        (1, 1, 6, 5, (2, 3), (1, 2), (1, 0), True),  # batch 1, channel 1, ceil mode
        (2, 2, 5, 7, (2, 2), (2, 2), (0, 0), True),
    ],
)
@pytest.mark.parametrize("divisor", [1, 3, 16, -2])  # torch divides by a negative one too
def test_avg_pool_divisor_override_matches_reference(
    case, divisor, dtype, rng, backend, assert_close
):
    N, C, H, W, k, s, p, ceil = case
    x = rng.standard_normal((N, C, H, W))
    xs = backend.to_device(x.astype(dtype))
    options = dict(ceil_mode=ceil, divisor_override=divisor)
    for cip in (True, False):  # the override wins over count_include_pad
        y = fc.avg_pool2d(xs, k, s, p, count_include_pad=cip, **options)
        expected = avg_pool2d_ref(x, k, s, p, cip, ceil, divisor)
        assert_close(y, expected, dtype, reduction=16)
        gy = rng.standard_normal(expected.shape)
        gx = fc.avg_pool2d_backward(
            backend.to_device(gy.astype(dtype)), x.shape, k, s, p, count_include_pad=cip, **options
        )
        basis = np.eye(x.size).reshape((x.size,) + x.shape)  # the reference is linear in x
        expected_gx = np.array(
            [np.sum(avg_pool2d_ref(e, k, s, p, cip, ceil, divisor) * gy) for e in basis]
        ).reshape(x.shape)
        assert_close(gx, expected_gx, dtype, reduction=16)


def test_divisor_override_gradient_by_central_differences(rng):
    x = rng.standard_normal((2, 2, 7, 6))
    options = dict(ceil_mode=True, divisor_override=5)
    gradcheck(
        lambda x: fc.avg_pool2d(x, 3, 2, 1, **options),
        [x],
        lambda g: [fc.avg_pool2d_backward(g, x.shape, 3, 2, 1, **options)],
        rtol=1e-6,
    )


# --------------------------------------------------------------------------- adaptive max
ADAPTIVE = [
    ((2, 3, 7, 9), (3, 4)),  # uneven, overlapping windows
    ((1, 2, 6, 8), (3, 4)),  # tiles: max_pool2d's path
    ((2, 1, 5, 7), (5, 2)),  # OH == H
    ((1, 2, 3, 4), (7, 9)),  # more outputs than inputs: windows repeat cells
    ((2, 2, 6, 5), (4, None)),  # None keeps W
    ((1, 1, 1, 1), 1),
    ((2, 3, 8, 8), 1),  # global max
]


def _out_hw(shape, out):
    if isinstance(out, int):
        return out, out
    return tuple(n if o is None else o for n, o in zip(shape[2:], out))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,out", ADAPTIVE)
def test_adaptive_max_pool_matches_reference(shape, out, dtype, rng, backend, assert_close):
    x64, x = _ties_and_nan(rng, shape, dtype)
    y_ref, idx_ref = adaptive_max_pool2d_ref(x64, _out_hw(shape, out))
    y, idx = fc.adaptive_max_pool2d(backend.to_device(x), out, True)
    assert_close(y, y_ref, dtype)
    np.testing.assert_array_equal(backend.to_numpy(idx), idx_ref)
    assert_close(fc.adaptive_max_pool2d(backend.to_device(x), out), y_ref, dtype)
    gy = rng.standard_normal(y_ref.shape)
    gx = fc.adaptive_max_pool2d_backward(backend.to_device(gy.astype(dtype)), idx, shape)
    assert_close(gx, scatter_ref(gy, idx_ref, shape), dtype, reduction=16)


def test_adaptive_max_pool_gradient_by_central_differences(rng):
    x = rng.permutation(252).reshape(2, 2, 7, 9) / 252  # distinct
    for out in [(3, 4), (9, 5)]:
        _, idx = fc.adaptive_max_pool2d(x, out, return_indices=True)
        gradcheck(
            lambda x: fc.adaptive_max_pool2d(x, out),
            [x],
            lambda g: [fc.adaptive_max_pool2d_backward(g, idx, x.shape)],
            rtol=1e-6,
            max_checks=80,
        )


# --------------------------------------------------------------------------- errors
def test_errors_name_the_argument():
    x = np.zeros((1, 2, 6, 6))
    before = x.copy()
    with pytest.raises(ValueError, match="dilation"):
        fc.max_pool2d(x, 2, dilation=0)
    with pytest.raises(TypeError, match="dilation"):
        fc.max_pool2d(x, 2, dilation=1.5)
    with pytest.raises(ValueError, match="dilation"):
        fc.max_pool2d(x, 2, dilation=(1, 2, 3))
    with pytest.raises(ValueError, match="output size"):  # 3 taps 3 apart span 7 > 6 rows
        fc.max_pool2d(x, 3, dilation=3)
    with pytest.raises(ValueError, match="at most half the kernel"):  # kernel_size's half
        fc.max_pool2d(x, 2, 1, 2, 3)
    with pytest.raises(ValueError, match=r"dilation \(h\) 3 with padding 1"):
        # window 0's taps -1 and 2: all padding or past a 2-row input (torch returns -inf)
        fc.max_pool2d(np.ones((1, 1, 2, 5)), 2, 1, 1, (3, 1))
    with pytest.raises(ValueError, match=r"dilation \(w\)"):
        fc.pool_output_shape((1, 1, 5, 2), 2, 1, 1, False, (1, 3))
    for bad, error in ((0, ValueError), (2.5, TypeError), (True, TypeError), ("2", TypeError)):
        with pytest.raises(error, match="divisor_override"):
            fc.avg_pool2d(x, 2, divisor_override=bad)
        with pytest.raises(error, match="divisor_override"):
            fc.avg_pool2d_backward(np.ones((1, 2, 3, 3)), x.shape, 2, divisor_override=bad)
    # torch's positional order: ceil_mode, count_include_pad, divisor_override
    np.testing.assert_array_equal(
        fc.avg_pool2d(x, 3, 2, 1, True, False, 2),
        fc.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False, divisor_override=2),
    )
    with pytest.raises(ValueError, match="output_size"):
        fc.adaptive_max_pool2d(x, 0)
    with pytest.raises(ValueError, match="output_size"):
        fc.adaptive_max_pool2d(x, (1, 2, 3))
    with pytest.raises(TypeError, match=r"output_size\[1\]"):
        fc.adaptive_max_pool2d(x, (2, 2.5))
    _, idx = fc.adaptive_max_pool2d(x, 4, return_indices=True)
    with pytest.raises(ValueError, match="indices"):
        fc.adaptive_max_pool2d_backward(np.ones((1, 2, 4, 4)), idx[:, :, :3], x.shape)
    with pytest.raises(TypeError, match="indices"):
        fc.adaptive_max_pool2d_backward(np.ones((1, 2, 4, 4)), idx.astype(float), x.shape)
    with pytest.raises(ValueError, match="indices"):
        fc.adaptive_max_pool2d_backward(np.ones((1, 2, 4, 4)), idx + 36, x.shape)
    np.testing.assert_array_equal(x, before)


def test_arith_and_output_shape_take_dilation():
    assert arith.pool_output_size(10, 3, 1, 1, dilation=2) == 8  # 10 + 2 - 5 + 1
    assert arith.pool_output_size(10, 3, 2, 1, True, 2) == 5  # ceil((12 - 5) / 2) + 1
    assert arith.pool_output_size(10, 3, 2, 1, True) == 6
    assert fc.pool_output_shape((2, 3, 10, 9), (3, 2), (1, 2), 1, False, (2, 3)) == (2, 3, 8, 4)


# --------------------------------------------------------------------------- torch
def _max_like_torch(torch, x, ours, theirs, backward):
    """ours(x) and theirs(x as a tensor) give the same (y, indices) exactly, and backward(g,
    indices, x.shape) torch's autograd gradient."""
    xt = torch.from_numpy(x).requires_grad_()
    yt, it = theirs(xt)
    y, idx = ours(x)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    g = np.random.default_rng(0).standard_normal(y.shape)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(backward(g, idx, x.shape), xt.grad.numpy(), rtol=1e-15)


def _ties_and_nan_64(shape, seed):
    """One NaN: torch gives a window holding two NaNs the last one's index (every NaN replaces
    the running max there), fastconv the first's (test_several_nans_in_one_window)."""
    return _ties_and_nan(np.random.default_rng(seed), shape, np.float64, nans=1)[0]


def test_several_nans_in_one_window():
    """fastconv's rule, as before dilation: the first NaN of a window (row-major) stays. torch's
    CPU kernels let every NaN replace the running max, so their index is the last NaN's; the
    values agree (NaN)."""
    x = np.zeros((1, 1, 3, 7))
    x[0, 0, 1, [2, 5]] = np.nan
    # 1x3 windows, taps 3 apart: output (1, 0) reads row 1, columns -1 (padding), 2 and 5
    y, idx = fc.max_pool2d(x, (1, 3), 1, (0, 1), (1, 3), return_indices=True)
    assert np.isnan(y[0, 0, 1, 0]) and idx[0, 0, 1, 0] == 1 * 7 + 2
    y, idx = fc.adaptive_max_pool2d(x, 1, return_indices=True)
    assert np.isnan(y).all() and idx.item() == 1 * 7 + 2
    torch = pytest.importorskip("torch")
    yt, it = torch.nn.functional.adaptive_max_pool2d(torch.from_numpy(x), 1, True)
    assert np.isnan(yt.item()) and it.item() in (1 * 7 + 2, 1 * 7 + 5)


@pytest.mark.parametrize("ceil", [False, True])
def test_dilated_max_pool_matches_torch_exactly(ceil):
    torch = pytest.importorskip("torch")
    for i, (N, C, H, W, k, s, p, d) in enumerate(DILATED):
        _max_like_torch(
            torch,
            _ties_and_nan_64((N, C, H, W), i),
            lambda x: fc.max_pool2d(x, k, s, p, d, ceil, True),
            lambda x: torch.nn.functional.max_pool2d(x, k, s, p, d, ceil, True),
            fc.max_pool2d_backward,
        )


def test_adaptive_max_pool_matches_torch_exactly():
    torch = pytest.importorskip("torch")
    for i, (shape, out) in enumerate(ADAPTIVE):
        _max_like_torch(
            torch,
            _ties_and_nan_64(shape, i),
            lambda x: fc.adaptive_max_pool2d(x, out, True),
            lambda x: torch.nn.functional.adaptive_max_pool2d(x, out, True),
            fc.adaptive_max_pool2d_backward,
        )


def test_divisor_override_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 8))
    for k, s, p, ceil in [(3, 2, 1, True), ((2, 3), (1, 2), (1, 0), False), (2, 2, 0, True)]:
        for cip in (True, False):
            for divisor in (None, 1, 5, -3):
                xt = torch.from_numpy(x).requires_grad_()
                yt = torch.nn.functional.avg_pool2d(xt, k, s, p, ceil, cip, divisor)
                options = dict(ceil_mode=ceil, count_include_pad=cip, divisor_override=divisor)
                y = fc.avg_pool2d(x, k, s, p, **options)
                np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-15)
                g = rng.standard_normal(y.shape)
                yt.backward(torch.from_numpy(g))
                np.testing.assert_allclose(
                    fc.avg_pool2d_backward(g, x.shape, k, s, p, **options),
                    xt.grad.numpy(),
                    rtol=1e-12,
                    atol=1e-15,
                )


def test_layers_match_torch_modules():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(8).standard_normal((2, 3, 11, 10))
    xt = torch.from_numpy(x)
    pairs = [
        (nn.MaxPool2D(3, 2, 1, 2, ceil_mode=True), torch.nn.MaxPool2d(3, 2, 1, 2, ceil_mode=True)),
        (
            nn.AvgPool2D(3, 2, 1, divisor_override=4),
            torch.nn.AvgPool2d(3, 2, 1, divisor_override=4),
        ),
        (nn.AdaptiveMaxPool2D((4, None)), torch.nn.AdaptiveMaxPool2d((4, None))),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours(x), theirs(xt).numpy(), rtol=1e-12)
    y, idx = nn.AdaptiveMaxPool2D(3, return_indices=True)(x)
    yt, it = torch.nn.AdaptiveMaxPool2d(3, return_indices=True)(xt)
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(idx, it.numpy())


# --------------------------------------------------------------------------- layers
POOL_LAYERS = {
    "max_dilated": (lambda: nn.MaxPool2D((3, 2), (1, 2), 1, (2, 3)), (2, 2, 9, 10)),
    "max_dilated_ceil": (lambda: nn.MaxPool2D(2, 2, 1, 3, ceil_mode=True), (1, 2, 8, 9)),
    "avg_divisor": (lambda: nn.AvgPool2D(3, 2, 1, divisor_override=5), (2, 2, 7, 6)),
    "adaptive_max": (lambda: nn.AdaptiveMaxPool2D((3, 4)), (2, 2, 7, 9)),
    "adaptive_max_up": (lambda: nn.AdaptiveMaxPool2D((9, None)), (1, 2, 4, 5)),
}


@pytest.mark.parametrize("name", list(POOL_LAYERS))
def test_pool_layer_gradcheck(name, rng):
    make, shape = POOL_LAYERS[name]
    n = int(np.prod(shape))
    x = rng.permutation(n).reshape(shape) / n  # distinct: stable maxima
    gradcheck_layer(make(), x, max_checks=30)


def test_pool_layers_call_the_functional_ops(rng):
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    g = rng.standard_normal((2, 3, 4, 3)).astype(np.float32)
    layer = nn.MaxPool2D(3, 2, 1, 2)
    y, idx = fc.max_pool2d(x, 3, 2, 1, 2, return_indices=True)
    np.testing.assert_array_equal(layer(x), y)
    np.testing.assert_array_equal(layer.backward(g), fc.max_pool2d_backward(g, idx, x.shape))
    assert "dilation=2" in repr(layer) and "dilation" not in repr(nn.MaxPool2D(2))
    avg = nn.AvgPool2D(3, 2, 1, divisor_override=4)
    np.testing.assert_array_equal(avg(x), fc.avg_pool2d(x, 3, 2, 1, divisor_override=4))
    g = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        avg.backward(g), fc.avg_pool2d_backward(g, x.shape, 3, 2, 1, divisor_override=4)
    )
    assert "divisor_override=4" in repr(avg)
    ada = nn.AdaptiveMaxPool2D((4, 3))
    assert repr(ada) == "AdaptiveMaxPool2D(output_size=(4, 3))"
    y, idx = fc.adaptive_max_pool2d(x, (4, 3), return_indices=True)
    np.testing.assert_array_equal(ada(x), y)
    g = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(ada.backward(g), fc.adaptive_max_pool2d_backward(g, idx, x.shape))
    assert ada.backward(g, input_grad=False) is None
    with_indices = nn.AdaptiveMaxPool2D((4, 3), return_indices=True)
    out = with_indices(x)
    np.testing.assert_array_equal(out[0], y)
    np.testing.assert_array_equal(out[1], idx)
    np.testing.assert_array_equal(with_indices.backward(g), ada.backward(g))
    ada.eval()
    np.testing.assert_array_equal(ada(x), y)
    with pytest.raises(RuntimeError, match="before forward"):
        ada.backward(g)  # eval-mode forwards keep nothing
    ada.train()
    with pytest.raises(RuntimeError, match="AdaptiveMaxPool2D"):
        ada.backward(g)  # train() clears the cache


def test_summary_describes_dilation_and_adaptive_max():
    model = nn.Sequential(
        nn.Conv2D(3, 4, 3, padding=1),
        nn.MaxPool2D(2, 2, 0, 2),  # dilated: spans 3, jump 2
        nn.AdaptiveMaxPool2D((3, None)),
        nn.AvgPool2D(2, divisor_override=3),
    )
    s = nn.summary(model, (3, 15, 16))
    model.eval()
    x, shapes = np.zeros((1, 3, 15, 16), np.float32), []
    for layer in model:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    assert (
        [r["output_shape"] for r in s.rows]
        == shapes
        == [
            (4, 15, 16),
            (4, 7, 7),
            (4, 3, 7),
            (4, 1, 3),
        ]
    )
    assert s.rows[1]["rf_size"] == (5, 5) and s.rows[1]["rf_jump"] == (2, 2)
    assert s.rows[2]["kind"] == "AdaptiveMaxPool2D"
    assert "AdaptiveMaxPool2D" in str(s)
    with pytest.raises(ValueError, match="dilation"):
        nn.summary(nn.Sequential(nn.MaxPool2D(3, dilation=4)), (1, 8, 8))


# --------------------------------------------------------------------------- dask
def test_dask_dilated_max_pool_halos_and_divisor_override():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(9)
    x = rng.integers(-3, 4, (3, 4, 17, 15)).astype(np.float32)
    xd = da.from_array(x, chunks=(2, 3, 5, 4))  # chunks smaller than the dilated windows
    for args in [((3, 2), (2, 1), 0, (3, 4), False), (3, 2, 1, 2, True), (2, 3, 0, 2, True)]:
        y, idx = fc.max_pool2d(xd, *args, True)
        ey, eidx = fc.max_pool2d(x, *args, True)
        if args[2] == 0 and not args[4]:  # no padding, floor mode: blocks with halos
            assert len(y.chunks[2]) > 1 and len(y.chunks[3]) > 1
        np.testing.assert_array_equal(y.compute(), ey)
        np.testing.assert_array_equal(idx.compute(), eidx)
        g = rng.standard_normal(ey.shape).astype(np.float32)
        np.testing.assert_array_equal(
            fc.max_pool2d_backward(da.from_array(g, chunks=(1, 2, 3, 3)), idx, x.shape).compute(),
            fc.max_pool2d_backward(g, eidx, x.shape),
        )
    options = dict(ceil_mode=True, divisor_override=7)
    a = fc.avg_pool2d(xd, 3, 2, 1, **options)
    np.testing.assert_allclose(a.compute(), fc.avg_pool2d(x, 3, 2, 1, **options), rtol=1e-6)
    ga = np.ones(a.shape, np.float32)
    np.testing.assert_allclose(
        fc.avg_pool2d_backward(da.from_array(ga, chunks=2), x.shape, 3, 2, 1, **options).compute(),
        fc.avg_pool2d_backward(ga, x.shape, 3, 2, 1, **options),
        rtol=1e-6,
    )


def test_dask_adaptive_max_pool():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(10)
    x = rng.integers(-3, 4, (3, 4, 13, 11)).astype(np.float64)
    xd = da.from_array(x, chunks=(2, 3, 5, 4))
    for out in [(4, 5), (6, 11), 1]:
        y, idx = fc.adaptive_max_pool2d(xd, out, return_indices=True)
        ey, eidx = fc.adaptive_max_pool2d(x, out, return_indices=True)
        assert isinstance(y, da.Array) and y.shape == ey.shape and idx.dtype == np.int64
        np.testing.assert_array_equal(y.compute(), ey)
        np.testing.assert_array_equal(idx.compute(), eidx)
        np.testing.assert_array_equal(fc.adaptive_max_pool2d(xd, out).compute(), ey)
        g = rng.standard_normal(ey.shape)
        np.testing.assert_array_equal(
            fc.adaptive_max_pool2d_backward(da.from_array(g, chunks=1), idx, x.shape).compute(),
            fc.adaptive_max_pool2d_backward(g, eidx, x.shape),
        )
