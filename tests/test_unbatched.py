"""One sample without its batch axis (issue 22): (C, H, W) / (C, L) in, results and gradients
without the batch axis out, as torch's functional ops and modules take them; linear's (*, IN).

Each op's unbatched result is checked against the float64 references of tests/reference.py on the
batch of one (written apart from the code), against the batched op (the same numbers), against
torch when importable, and its gradients against central differences."""

import inspect

import numpy as np
import pytest
from reference import (
    adaptive_avg_pool2d_ref,
    avg_pool2d_ref,
    conv1d_ref,
    conv2d_ref,
    conv_transpose2d_ref,
    linear_ref,
    max_pool2d_ref,
    numeric_grad,
)

import fastconv as fc
from fastconv import nn
from fastconv.functional._batch import unbatched

DTYPES = [np.float32, np.float64]


def _rand(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


# op(x) on one sample, and the float64 reference of the batch of one -> (1, ...) result
FORWARD = {
    "conv2d": (
        (3, 7, 6),
        lambda x, w: fc.conv2d(x, w["conv"], w["bias"], 2, 1, (1, 2)),
        lambda x, w: conv2d_ref(x, w["conv"], w["bias"], 2, (1, 1, 1, 1), (1, 2)),
    ),
    "conv2d_groups_same": (
        (4, 6, 5),
        lambda x, w: fc.conv2d(x, w["grouped"], None, 1, "same", 1, 2),
        lambda x, w: conv2d_ref(x, w["grouped"], None, 1, (1, 1, 0, 1), 1, 2),
    ),
    "conv1d": (
        (3, 11),
        lambda x, w: fc.conv1d(x, w["conv1d"], w["bias"], 2, (1, 2), 2),
        lambda x, w: conv1d_ref(x, w["conv1d"], w["bias"], 2, (1, 2), 2),
    ),
    "conv_transpose2d": (
        (3, 5, 4),
        lambda x, w: fc.conv_transpose2d(x, w["transpose"], None, 2, 1, 1),
        lambda x, w: conv_transpose2d_ref(x, w["transpose"], None, 2, 1, 1),
    ),
    "max_pool2d": (
        (2, 7, 6),
        lambda x, w: fc.max_pool2d(x, (3, 2), 2, 1, ceil_mode=True),
        lambda x, w: max_pool2d_ref(x, (3, 2), 2, 1, ceil_mode=True)[0],
    ),
    "avg_pool2d": (
        (2, 7, 6),
        lambda x, w: fc.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
        lambda x, w: avg_pool2d_ref(x, 3, 2, 1, count_include_pad=False),
    ),
    "adaptive_avg_pool2d": (
        (2, 7, 6),
        lambda x, w: fc.adaptive_avg_pool2d(x, (3, 4)),
        lambda x, w: adaptive_avg_pool2d_ref(x, (3, 4)),
    ),
    "global_avg_pool2d": (
        (2, 7, 6),
        lambda x, w: fc.global_avg_pool2d(x),
        lambda x, w: adaptive_avg_pool2d_ref(x, (1, 1)),
    ),
}


@pytest.fixture
def weights():
    rng = np.random.default_rng(5)
    return {
        "conv": _rand(rng, (4, 3, 3, 2)),
        "bias": _rand(rng, (4,)),
        "grouped": _rand(rng, (4, 2, 3, 2)),
        "conv1d": _rand(rng, (4, 3, 3)),
        "transpose": _rand(rng, (3, 2, 3, 3)),
    }


@pytest.mark.parametrize("name", FORWARD)
@pytest.mark.parametrize("dtype", DTYPES)
def test_one_sample_against_the_reference_and_the_batch(name, dtype, weights, assert_close):
    shape, op, ref = FORWARD[name]
    x = _rand(np.random.default_rng(1), shape, dtype)
    w = {k: v.astype(dtype) for k, v in weights.items()}
    before = x.copy()
    y = op(x, w)
    expected = ref(x[None], weights)
    assert expected.shape[0] == 1
    assert_close(y, expected[0], dtype, reduction=50)
    np.testing.assert_array_equal(y, op(x[None], w)[0])  # the batch of one, exactly
    np.testing.assert_array_equal(x, before)


def test_max_pool2d_gives_unbatched_indices_and_takes_them_back():
    x = _rand(np.random.default_rng(2), (3, 6, 5))
    y, idx = fc.max_pool2d(x, 2, return_indices=True)
    y_ref, idx_ref = max_pool2d_ref(x[None], 2, 2, 0)
    np.testing.assert_array_equal(idx, idx_ref[0])
    np.testing.assert_allclose(y, y_ref[0])
    g = _rand(np.random.default_rng(3), y.shape)
    gx = fc.max_pool2d_backward(g, idx, x.shape)
    assert gx.shape == x.shape
    np.testing.assert_array_equal(gx, fc.max_pool2d_backward(g[None], idx[None], (1,) + x.shape)[0])
    f = lambda v: float((fc.max_pool2d(v, 2) * g).sum())  # noqa: E731
    np.testing.assert_allclose(gx, numeric_grad(f, x), atol=1e-6)


# Gradient functions: (x shape, loss(x, w) -> scalar with a fixed grad_out, grad(x, w, g))
def _conv2d_grads(x, w, g):
    gx, gw, gb = fc.conv2d_backward(g, x, w["conv"], 2, 1, (1, 2))
    assert gw.shape == w["conv"].shape and gb.shape == (4,)
    np.testing.assert_array_equal(gx, fc.conv2d_grad_input(g, w["conv"], x.shape, 2, 1, (1, 2)))
    np.testing.assert_array_equal(gw, fc.conv2d_grad_weight(g, x, w["conv"].shape, 2, 1, (1, 2)))
    return gx, gw


def _conv1d_grads(x, w, g):
    gx, gw, gb = fc.conv1d_backward(g, x, w["conv1d"], 2, (1, 2), 2)
    np.testing.assert_array_equal(gx, fc.conv1d_grad_input(g, w["conv1d"], x.shape, 2, (1, 2), 2))
    np.testing.assert_array_equal(gw, fc.conv1d_grad_weight(g, x, w["conv1d"].shape, 2, (1, 2), 2))
    return gx, gw


GRADIENTS = {
    "conv2d": (
        (3, 7, 6),
        "conv",
        lambda x, w: fc.conv2d(x, w["conv"], None, 2, 1, (1, 2)),
        _conv2d_grads,
    ),
    "conv1d": (
        (3, 11),
        "conv1d",
        lambda x, w: fc.conv1d(x, w["conv1d"], None, 2, (1, 2), 2),
        _conv1d_grads,
    ),
    "conv_transpose2d": (
        (3, 5, 4),
        "transpose",
        lambda x, w: fc.conv_transpose2d(x, w["transpose"], None, 2, 1, 1),
        lambda x, w, g: fc.conv_transpose2d_backward(g, x, w["transpose"], 2, 1, 1)[:2],
    ),
    "avg_pool2d": (
        (2, 7, 6),
        None,
        lambda x, w: fc.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
        lambda x, w, g: (fc.avg_pool2d_backward(g, x.shape, 3, 2, 1, ceil_mode=True), None),
    ),
    "adaptive_avg_pool2d": (
        (2, 7, 6),
        None,
        lambda x, w: fc.adaptive_avg_pool2d(x, (3, 4)),
        lambda x, w, g: (fc.adaptive_avg_pool2d_backward(g, x.shape), None),
    ),
    "global_avg_pool2d": (
        (2, 7, 6),
        None,
        lambda x, w: fc.global_avg_pool2d(x),
        lambda x, w, g: (fc.global_avg_pool2d_backward(g, x.shape), None),
    ),
}


@pytest.mark.parametrize("name", GRADIENTS)
def test_gradients_of_one_sample_against_central_differences(name, weights):
    shape, wname, op, grads = GRADIENTS[name]
    rng = np.random.default_rng(4)
    x = _rand(rng, shape)
    g = _rand(rng, op(x, weights).shape)
    gx, gw = grads(x, weights, g)
    assert gx.shape == x.shape
    np.testing.assert_allclose(
        gx, numeric_grad(lambda v: float((op(v, weights) * g).sum()), x), atol=1e-6
    )
    if wname is not None:

        def loss_of_weight(v):
            return float((op(x, {**weights, wname: v}) * g).sum())

        np.testing.assert_allclose(gw, numeric_grad(loss_of_weight, weights[wname]), atol=1e-6)
        # grad_weight of one sample is that of the batch of one
        batched = grads(x[None], weights, g[None])[1]
        np.testing.assert_allclose(gw, batched, rtol=1e-12, atol=1e-12)


def test_out_is_written_and_returned_for_one_sample(weights):
    x = _rand(np.random.default_rng(6), (3, 7, 6))
    out = np.full((4, 4, 4), np.nan)
    y = fc.conv2d(x, weights["conv"], None, 2, 1, out=out)
    assert y is out
    np.testing.assert_array_equal(out, fc.conv2d(x[None], weights["conv"], None, 2, 1)[0])
    s = x[:, 0]
    out1 = np.full((4, 4), np.nan)
    assert fc.conv1d(s, weights["conv1d"], out=out1) is out1
    np.testing.assert_array_equal(out1, fc.conv1d(s[None], weights["conv1d"])[0])
    with pytest.raises(TypeError, match="out must be an array"):
        fc.conv2d(x, weights["conv"], out=[0.0])
    with pytest.raises(ValueError, match=r"out must be 3-D \(F, OH, OW\) like x"):
        fc.conv2d(x, weights["conv"], out=np.empty((1, 4, 5, 5)))


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda w: fc.conv2d(np.zeros((7, 6)), w["conv"]),
            r"x must be 4-D \(N, C, H, W\) or 3-D \(C, H, W\), got 2-D",
        ),
        (
            lambda w: fc.conv2d(np.zeros((1, 1, 3, 7, 6)), w["conv"]),
            r"x must be 4-D \(N, C, H, W\) or 3-D \(C, H, W\), got 5-D",
        ),
        (
            lambda w: fc.conv1d(np.zeros(11), w["conv1d"]),
            r"x must be 3-D \(N, C, L\) or 2-D \(C, L\)",
        ),
        (
            lambda w: fc.conv_transpose2d(np.zeros(4), w["transpose"]),
            r"x must be 4-D \(N, C_in, H, W\) or 3-D \(C_in, H, W\)",
        ),
        (
            lambda w: fc.max_pool2d(np.zeros((6, 5)), 2),
            r"x must be 4-D \(N, C, H, W\) or 3-D \(C, H, W\)",
        ),
        (
            lambda w: fc.avg_pool2d(np.zeros((6, 5)), 2),
            r"x must be 4-D \(N, C, H, W\) or 3-D \(C, H, W\)",
        ),
        (
            lambda w: fc.adaptive_avg_pool2d(np.zeros(5), 2),
            r"x must be 4-D \(N, C, H, W\) or 3-D \(C, H, W\)",
        ),
        # the forms must agree: grad_out names x's form
        (
            lambda w: fc.conv2d_backward(np.zeros((4, 5, 5)), np.zeros((1, 3, 7, 6)), w["conv"]),
            r"x must be 3-D \(C, H, W\) like grad_out \(one sample",
        ),
        (
            lambda w: fc.conv2d_backward(np.zeros((1, 4, 5, 5)), np.zeros((3, 7, 6)), w["conv"]),
            r"x must be 4-D \(N, C, H, W\) like grad_out \(batched\)",
        ),
        (
            lambda w: fc.conv2d_grad_input(np.zeros((4, 5, 5)), w["conv"], (1, 3, 7, 6)),
            r"input_shape must be a tuple of 3 ints \(C, H, W\) like grad_out",
        ),
        (
            lambda w: fc.conv2d_grad_input(np.zeros((4, 5, 5)), w["conv"], (7, 6)),
            r"input_shape must be a tuple of 4 ints \(N, C, H, W\) or 3 \(C, H, W\)",
        ),
        (
            lambda w: fc.max_pool2d_backward(
                np.zeros((2, 3, 3)), np.zeros((1, 2, 3, 3), int), (2, 6, 6)
            ),
            r"indices must be 3-D \(C, OH, OW\) like grad_out",
        ),
        (
            lambda w: fc.avg_pool2d_backward(np.zeros((2, 3, 3)), (1, 2, 6, 6), 2),
            r"input_shape must be a tuple of 3 ints",
        ),
        # the batched op's own checks still apply to one sample
        (
            lambda w: fc.conv2d(np.zeros((2, 7, 6)), w["conv"]),
            r"x has C=2 channels but weight expects",
        ),
        (
            lambda w: fc.avg_pool2d_backward(np.zeros((2, 4, 4)), (2, 6, 6), 2),
            r"grad_out must have shape \(1, 2, 3, 3\)",
        ),
    ],
)
def test_errors_name_the_argument_and_both_forms(call, message, weights):
    with pytest.raises(ValueError, match=message):
        call(weights)


def test_dask_stays_lazy_for_one_sample(weights):
    da = pytest.importorskip("dask.array")
    x = _rand(np.random.default_rng(7), (3, 8, 6))
    dx = da.from_array(x, chunks=(3, 4, 3))
    w = weights["conv"]
    y = fc.conv2d(dx, w, None, 1, "same")
    assert isinstance(y, da.Array) and y.shape == (4, 8, 6)
    np.testing.assert_allclose(
        y.compute(), fc.conv2d(x, w, None, 1, "same"), rtol=1e-12, atol=1e-12
    )
    gx, gw, gb = fc.conv2d_backward(da.from_array(np.ones((4, 8, 6))), dx, w, 1, "same")
    assert all(isinstance(g, da.Array) for g in (gx, gw, gb)) and gx.shape == x.shape
    expected = fc.conv2d_backward(np.ones((4, 8, 6)), x, w, 1, "same")
    for got, want in zip((gx, gw, gb), expected):
        np.testing.assert_allclose(got.compute(), want, rtol=1e-12, atol=1e-12)
    p, idx = fc.max_pool2d(dx, 2, return_indices=True)
    assert isinstance(p, da.Array) and isinstance(idx, da.Array) and p.shape == (3, 4, 3)
    np.testing.assert_array_equal(p.compute(), fc.max_pool2d(x, 2))
    a = fc.adaptive_avg_pool2d(dx, (3, 4))
    assert isinstance(a, da.Array)
    np.testing.assert_allclose(a.compute(), fc.adaptive_avg_pool2d(x, (3, 4)))


def test_torch_takes_the_same_unbatched_forms(weights):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    t = torch.from_numpy
    rng = np.random.default_rng(8)
    x, s = _rand(rng, (3, 7, 6)), _rand(rng, (3, 11))
    w = weights
    pairs = [
        (
            fc.conv2d(x, w["conv"], w["bias"], 2, 1, (1, 2)),
            tf.conv2d(t(x), t(w["conv"]), t(w["bias"]), 2, 1, (1, 2)),
        ),
        (fc.conv1d(s, w["conv1d"], None, 2, 1, 2), tf.conv1d(t(s), t(w["conv1d"]), None, 2, 1, 2)),
        (
            fc.conv_transpose2d(x, w["transpose"], None, 2, 1, 1),
            tf.conv_transpose2d(t(x), t(w["transpose"]), None, 2, 1, 1),
        ),
        (fc.max_pool2d(x, 3, 2, 1, ceil_mode=True), tf.max_pool2d(t(x), 3, 2, 1, ceil_mode=True)),
        (fc.avg_pool2d(x, 3, 2, 1), tf.avg_pool2d(t(x), 3, 2, 1)),
        (fc.adaptive_avg_pool2d(x, (3, 4)), tf.adaptive_avg_pool2d(t(x), (3, 4))),
    ]
    for ours, theirs in pairs:
        assert ours.shape == tuple(theirs.shape)
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-10, atol=1e-12)
    # the gradient of one sample, as autograd gives it
    xt = t(x).requires_grad_()
    tf.conv2d(xt, t(w["conv"]), None, 2, 1, (1, 2)).sum().backward()
    g = np.ones(fc.conv2d(x, w["conv"], None, 2, 1, (1, 2)).shape)
    np.testing.assert_allclose(
        fc.conv2d_backward(g, x, w["conv"], 2, 1, (1, 2))[0], xt.grad.numpy()
    )


def test_the_decorator_keeps_the_signature_and_checks_its_names():
    assert inspect.signature(fc.conv2d) == inspect.signature(fc.conv2d.__wrapped__)
    assert fc.conv2d.__doc__ == fc.conv2d.__wrapped__.__doc__

    def op(x, weight, *, out=None):
        return x

    with pytest.raises(TypeError, match=r"has no argument \['input'\]"):
        unbatched(input="N, C, H, W")(op)
    with pytest.raises(TypeError, match="leading argument must be positional"):
        unbatched(out="N, C, H, W")(op)
    wrapped = unbatched(x="N, C, H, W")(op)
    y = wrapped(x=np.zeros((3, 4, 5)), weight=None)  # by keyword too
    assert y.shape == (3, 4, 5)  # op gave back x[None]; the batch axis taken off again
    assert wrapped([[[1.0]]], None).shape == (1, 1, 1)  # array-likes are converted


# ---------------------------------------------------------------- linear: (*, IN)
@pytest.mark.parametrize("lead", [(), (1,), (5,), (2, 3), (2, 1, 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_takes_any_leading_axes(lead, dtype, assert_close):
    rng = np.random.default_rng(9)
    x = _rand(rng, lead + (4,), dtype)
    w, b = _rand(rng, (3, 4), dtype), _rand(rng, (3,), dtype)
    y = fc.linear(x, w, b)
    rows = x.reshape(-1, 4)
    assert_close(y, linear_ref(rows, w, b).reshape(lead + (3,)), dtype, reduction=4)
    g = _rand(rng, y.shape, dtype)
    gx, gw, gb = fc.linear_backward(g, x, w)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == b.shape
    g_rows = g.reshape(-1, 3).astype(np.float64)
    # the sums over every leading axis, written out
    assert_close(gx, (g_rows @ w.astype(np.float64)).reshape(x.shape), dtype, reduction=3)
    assert_close(gw, np.einsum("mo,mi->oi", g_rows, rows.astype(np.float64)), dtype, reduction=30)
    assert_close(gb, g_rows.sum(axis=0), dtype, reduction=30)


def test_linear_gradients_against_central_differences():
    rng = np.random.default_rng(10)
    x, w, b = _rand(rng, (2, 3, 4)), _rand(rng, (3, 4)), _rand(rng, (3,))
    g = _rand(rng, (2, 3, 3))
    gx, gw, gb = fc.linear_backward(g, x, w)
    np.testing.assert_allclose(
        gx, numeric_grad(lambda v: float((fc.linear(v, w, b) * g).sum()), x), atol=1e-7
    )
    np.testing.assert_allclose(
        gw, numeric_grad(lambda v: float((fc.linear(x, v, b) * g).sum()), w), atol=1e-7
    )
    np.testing.assert_allclose(
        gb, numeric_grad(lambda v: float((fc.linear(x, w, v) * g).sum()), b), atol=1e-7
    )


def test_linear_rows_are_a_view_and_inputs_are_not_modified():
    rng = np.random.default_rng(11)
    x, w = _rand(rng, (2, 3, 4)), _rand(rng, (3, 4))
    before = x.copy()
    y = fc.linear(x, w)
    assert y.flags.c_contiguous and y.shape == (2, 3, 3)
    np.testing.assert_array_equal(x, before)
    # a non-contiguous x works too (copied once)
    xt = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)
    np.testing.assert_array_equal(fc.linear(xt, w), y)


def test_linear_errors_name_the_argument():
    w = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"x must have at least 1 dimension \(\*, IN\)"):
        fc.linear(np.float64(1.0), w)
    with pytest.raises(ValueError, match=r"x has 5 features \(its last axis\)"):
        fc.linear(np.zeros((2, 3, 5)), w)
    with pytest.raises(ValueError, match=r"grad_out must have shape \(2, 3, 3\)"):
        fc.linear_backward(np.zeros((6, 3)), np.zeros((2, 3, 4)), w)


def test_linear_with_dask_and_torch():
    rng = np.random.default_rng(12)
    x, w, b = _rand(rng, (2, 5, 4)), _rand(rng, (3, 4)), _rand(rng, (3,))
    g = _rand(rng, (2, 5, 3))
    da = pytest.importorskip("dask.array")
    dy = fc.linear(da.from_array(x, chunks=(1, 2, 4)), w, b)
    assert isinstance(dy, da.Array) and dy.shape == (2, 5, 3)
    np.testing.assert_allclose(dy.compute(), fc.linear(x, w, b), rtol=1e-12)
    grads = fc.linear_backward(
        da.from_array(g, chunks=(1, 3, 3)), da.from_array(x, chunks=(1, 2, 4)), w
    )
    for got, want in zip(grads, fc.linear_backward(g, x, w)):
        assert isinstance(got, da.Array)
        np.testing.assert_allclose(got.compute(), want, rtol=1e-12, atol=1e-12)
    torch = pytest.importorskip("torch")
    xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    yt = torch.nn.functional.linear(xt, wt, bt)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(fc.linear(x, w, b), yt.detach().numpy(), rtol=1e-12)
    for got, want in zip(fc.linear_backward(g, x, w), (xt.grad, wt.grad, bt.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)


def test_linear_layer_on_sequences_sums_the_parameter_gradients():
    layer = nn.Linear(4, 3, rng=0, dtype=np.float64)
    x = _rand(np.random.default_rng(13), (2, 5, 4))
    y = layer(x)
    assert y.shape == (2, 5, 3)
    g = np.ones_like(y)
    gx = layer.backward(g)
    assert gx.shape == x.shape
    np.testing.assert_allclose(layer.weight.grad, g.reshape(-1, 3).T @ x.reshape(-1, 4))
    np.testing.assert_allclose(layer.bias.grad, np.full(3, 10.0))
    one = layer(x[0, 0])
    assert one.shape == (3,)
    np.testing.assert_allclose(one, y[0, 0])


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.MaxPool2D(2, ceil_mode=True),
        lambda: nn.AvgPool2D(3, 2, 1),
        lambda: nn.AdaptiveAvgPool2D((3, 4)),
        lambda: nn.GlobalAvgPool2D(),
    ],
    ids=["MaxPool2D", "AvgPool2D", "AdaptiveAvgPool2D", "GlobalAvgPool2D"],
)
def test_pooling_layers_take_one_sample(make):
    x = _rand(np.random.default_rng(14), (3, 7, 6))
    one, batched = make(), make()
    y = one(x)
    yb = batched(x[None])
    assert y.shape == yb.shape[1:]
    np.testing.assert_array_equal(y, yb[0])
    g = _rand(np.random.default_rng(15), y.shape)
    gx = one.backward(g)
    assert gx.shape == x.shape
    np.testing.assert_array_equal(gx, batched.backward(g[None])[0])
