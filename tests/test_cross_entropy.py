"""cross_entropy / cross_entropy_backward / nn.CrossEntropyLoss with torch's options (issue 22):
class weights, ignore_index, the three reductions, label smoothing, probability targets, (C,) and
(N, C, d1, ...) logits. Checked against a float64 reference written from torch's documented
formulas (not from fastconv's code), central differences, torch when importable, and Dask."""

import math

import numpy as np
import pytest
from reference import numeric_grad, softmax_cross_entropy_ref

import fastconv as fc
from fastconv import nn
from fastconv.gradcheck import gradcheck_layer


def cross_entropy_ref(x, t, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """float64, one sample at a time. With log p the log-softmax over the classes (axis 1, or 0
    for one sample (C,)) and eps the label smoothing, torch documents:
    class index t: l = -(1 - eps) w_t log p_t - (eps / C) sum_c w_c log p_c, 0 when t is
        ignore_index; 'mean' = sum(l) / sum of w_t over the samples not ignored;
    probabilities y: l = -sum_c w_c ((1 - eps) y_c + eps / C) log p_c; 'mean' = sum(l) / samples.
    """
    x = np.asarray(x, np.float64)
    t = np.asarray(t)
    probs = t.shape == x.shape
    C = x.shape[0] if x.ndim == 1 else x.shape[1]
    loss_shape = () if x.ndim == 1 else x.shape[:1] + x.shape[2:]
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    eps = label_smoothing
    if x.ndim == 1:
        x, t = x[None], t[None]
    rows = np.moveaxis(x, 1, -1).reshape(-1, C)
    targets = np.moveaxis(t, 1, -1).reshape(-1, C) if probs else t.reshape(-1)
    losses, counted = [], 0.0
    for row, target in zip(rows, targets):
        m = max(row)
        lse = math.log(math.fsum(math.exp(v - m) for v in row))
        logp = [v - m - lse for v in row]
        if probs:
            q = [w[c] * ((1 - eps) * target[c] + eps / C) for c in range(C)]
            losses.append(-math.fsum(q[c] * logp[c] for c in range(C)))
            counted += 1
        elif target == ignore_index:
            losses.append(0.0)
        else:
            smooth = math.fsum(w[c] * logp[c] for c in range(C))
            losses.append(-(1 - eps) * w[target] * logp[target] - eps / C * smooth)
            counted += w[target]
    if reduction == "none":
        return np.array(losses).reshape(loss_shape)
    total = math.fsum(losses)
    if reduction == "sum":
        return total
    return total / counted if counted else math.nan


# (logits shape, class-index target shape)
SHAPES = {
    "N,C": ((5, 4), (5,)),
    "one sample (C,)": ((4,), ()),
    "N,C,d1,d2": ((2, 3, 4, 2), (2, 4, 2)),
    "N,C,d1 batch 1": ((1, 3, 5), (1, 5)),
    "one class": ((3, 1), (3,)),
}


def _case(shape, probs, rng, ignore=True):
    """logits, and a target: class indices (some ignored, -100) or probabilities."""
    x_shape, t_shape = SHAPES[shape]
    x = rng.standard_normal(x_shape) * 2
    C = x_shape[0] if len(x_shape) == 1 else x_shape[1]
    if probs:
        y = rng.random(x_shape)
        return x, y / y.sum(axis=0 if len(x_shape) == 1 else 1, keepdims=True), C
    t = rng.integers(0, C, t_shape)
    if ignore and t.size > 2:
        t.reshape(-1)[1] = -100
    return x, t, C


def _grad_out(reduction, loss_shape, rng):
    return rng.standard_normal(loss_shape) if reduction == "none" else 0.7


OPTIONS = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(label_smoothing=0.3),
    dict(label_smoothing=1.0, reduction="sum"),
    dict(label_smoothing=0.2, reduction="none"),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("probs", [False, True], ids=["indices", "probabilities"])
@pytest.mark.parametrize("weighted", [False, True], ids=["", "weighted"])
@pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "mean"
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_against_the_reference(shape, probs, weighted, options, dtype, assert_close):
    rng = np.random.default_rng(0)
    x, t, C = _case(shape, probs, rng)
    w = rng.random(C) + 0.5 if weighted else None
    xd = x.astype(dtype)
    td = t.astype(dtype) if probs else t
    wd = None if w is None else w.astype(dtype)
    before = (xd.copy(), np.copy(td))
    loss = fc.cross_entropy(xd, td, wd, **options)
    assert_close(loss, cross_entropy_ref(xd, td, wd, **options), dtype, reduction=20)
    np.testing.assert_array_equal(xd, before[0])
    np.testing.assert_array_equal(td, before[1])


@pytest.mark.parametrize("shape", ["N,C", "one sample (C,)", "N,C,d1,d2"])
@pytest.mark.parametrize("probs", [False, True], ids=["indices", "probabilities"])
@pytest.mark.parametrize("options", OPTIONS[:4], ids=["mean", "sum", "none", "smoothing"])
def test_gradient_against_central_differences(shape, probs, options):
    rng = np.random.default_rng(1)
    x, t, C = _case(shape, probs, rng)
    w = rng.random(C) + 0.5
    reduction = options.get("reduction", "mean")
    loss_shape = np.shape(cross_entropy_ref(x, t, w, reduction="none"))
    g = _grad_out(reduction, loss_shape, rng)

    def f(v):
        return float(np.sum(cross_entropy_ref(v, t, w, **options) * g))

    expected = numeric_grad(f, x)
    grad = fc.cross_entropy_backward(g, x, t, w, **options)
    assert grad.shape == x.shape and grad.dtype == np.float64
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-8)
    grad32 = fc.cross_entropy_backward(
        np.float32(g) if np.ndim(g) == 0 else g.astype(np.float32),
        x.astype(np.float32),
        t.astype(np.float32) if probs else t,
        w.astype(np.float32),
        **options,
    )
    assert grad32.dtype == np.float32
    np.testing.assert_allclose(grad32, expected, rtol=1e-4, atol=1e-5)


def test_ignored_targets_get_zero_gradient_and_the_mean_counts_what_is_left():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3))
    t = np.array([0, 2, 1, 2])
    w = np.array([0.5, 2.0, 1.0])
    for ignore_index in (2, -100):
        tt = t if ignore_index == 2 else np.where(t == 2, -100, t)
        loss = fc.cross_entropy(x, tt, w, ignore_index=ignore_index)
        kept = [0, 2]
        expected = fc.cross_entropy(x[kept], t[kept], w, reduction="sum") / w[t[kept]].sum()
        np.testing.assert_allclose(loss, expected, rtol=1e-14)
        grad = fc.cross_entropy_backward(
            1.0, x, tt, w, ignore_index=ignore_index, label_smoothing=0.1
        )
        np.testing.assert_array_equal(grad[[1, 3]], 0.0)
    # every target ignored: a mean over nothing is NaN (torch's answer), the gradient zero
    none = np.full(4, -100)
    with np.errstate(all="raise"):  # and no warning on the way
        assert np.isnan(fc.cross_entropy(x, none))
        assert fc.cross_entropy(x, none, reduction="sum") == 0.0
        np.testing.assert_array_equal(fc.cross_entropy_backward(1.0, x, none), 0.0)


def test_a_minus_inf_logit_outside_the_target_stays_out_of_the_loss():
    x = np.array([[0.0, -np.inf, 1.0], [2.0, 0.0, -np.inf]])
    t = np.array([0, 1])
    loss = fc.cross_entropy(x, t, reduction="none")
    assert np.isfinite(loss).all()
    np.testing.assert_allclose(
        loss, cross_entropy_ref(np.where(np.isinf(x), -1e300, x), t, reduction="none")
    )
    assert np.isfinite(fc.cross_entropy_backward(np.ones(2), x, t, reduction="none")).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_default_is_softmax_cross_entropy(dtype):
    """The mean over integer labels: softmax_cross_entropy's loss bit for bit (the same
    log-softmax kernel, the same sum), its gradient to rounding."""
    rng = np.random.default_rng(3)
    for N, C in [(1, 1), (7, 10), (300, 37)]:
        x = (rng.standard_normal((N, C)) * 4).astype(dtype)
        t = rng.integers(0, C, N)
        loss, log_probs = fc.softmax_cross_entropy(x, t)
        np.testing.assert_array_equal(fc.cross_entropy(x, t), loss)
        mean, _ = softmax_cross_entropy_ref(x, t)
        np.testing.assert_allclose(
            fc.cross_entropy(x, t), mean, rtol=1e-5 if dtype == np.float32 else 1e-12
        )
        np.testing.assert_allclose(
            fc.cross_entropy_backward(1.0, x, t),
            fc.softmax_cross_entropy_backward(log_probs, t),
            rtol=1e-5,
            atol=1e-7 if dtype == np.float32 else 1e-15,
        )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("probs", [False, True], ids=["indices", "probabilities"])
@pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "mean"
)
def test_against_torch(shape, probs, options):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x, t, C = _case(shape, probs, rng)
    w = rng.random(C) + 0.5
    for weight in (None, w):
        xt = torch.from_numpy(x).requires_grad_()
        ref = torch.nn.functional.cross_entropy(
            xt, torch.from_numpy(t), None if weight is None else torch.from_numpy(weight), **options
        )
        g = _grad_out(options.get("reduction", "mean"), tuple(ref.shape), rng)
        ref.backward(torch.as_tensor(g, dtype=torch.float64))
        loss = fc.cross_entropy(x, t, weight, **options)
        assert np.shape(loss) == tuple(ref.shape)
        np.testing.assert_allclose(loss, ref.detach().numpy(), rtol=1e-12, atol=1e-14)
        grad = fc.cross_entropy_backward(g, x, t, weight, **options)
        np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_against_torch_in_float32_with_ignore_index_a_class():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 5, 3)).astype(np.float32)
    t = rng.integers(0, 5, (6, 3))
    w = (rng.random(5) + 0.5).astype(np.float32)
    options = dict(ignore_index=2, label_smoothing=0.15)
    xt = torch.from_numpy(x).requires_grad_()
    ref = torch.nn.functional.cross_entropy(xt, torch.from_numpy(t), torch.from_numpy(w), **options)
    ref.backward()
    loss = fc.cross_entropy(x, t, w, **options)
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-5)
    np.testing.assert_allclose(
        fc.cross_entropy_backward(1.0, x, t, w, **options), xt.grad.numpy(), rtol=1e-4, atol=1e-6
    )


def test_empty_batches_as_torch():
    x, t = np.zeros((0, 3)), np.zeros(0, int)
    with np.errstate(all="raise"):
        assert np.isnan(fc.cross_entropy(x, t))
        assert fc.cross_entropy(x, t, reduction="sum") == 0.0
        assert fc.cross_entropy(x, t, reduction="none").shape == (0,)
        assert fc.cross_entropy_backward(1.0, x, t).shape == (0, 3)
        assert np.isnan(fc.cross_entropy(x, np.zeros((0, 3))))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda x, t: fc.cross_entropy(x, t, reduction="avg"),
            ValueError,
            r"reduction must be one of \('none', 'mean', 'sum'\), got 'avg'",
        ),
        (
            lambda x, t: fc.cross_entropy(x, t, reduction=None),
            ValueError,
            "reduction must be one of",
        ),
        (
            lambda x, t: fc.cross_entropy(x, t, np.ones(3)),
            ValueError,
            r"weight must have shape \(4,\) \(one per class of input\), got \(3,\)",
        ),
        (
            lambda x, t: fc.cross_entropy(x, t, np.ones((4, 1))),
            ValueError,
            r"weight must have shape \(4,\)",
        ),
        (
            lambda x, t: fc.cross_entropy(x, t.astype(np.float64)),
            TypeError,
            "target must hold integer class indices, got float64",
        ),
        (
            lambda x, t: fc.cross_entropy(x, t.astype(bool)),
            TypeError,
            "target must hold integer class indices, got bool",
        ),
        (
            lambda x, t: fc.cross_entropy(x, np.zeros(x.shape, int)),
            TypeError,
            r"target of input's shape \(5, 4\) holds class probabilities and must be floating, got int64",
        ),
        (
            lambda x, t: fc.cross_entropy(x, t[:3]),
            ValueError,
            r"target must have shape \(5,\) \(class indices\) or \(5, 4\) \(class probabilities\), got \(3,\)",
        ),
        (
            lambda x, t: fc.cross_entropy(x, t, label_smoothing=1.5),
            ValueError,
            r"label_smoothing must be in \[0, 1\], got 1.5",
        ),
        (
            lambda x, t: fc.cross_entropy(x, t, label_smoothing=-0.1),
            ValueError,
            r"label_smoothing must be in \[0, 1\], got -0.1",
        ),
        (
            lambda x, t: fc.cross_entropy(x, t, label_smoothing="0.1"),
            TypeError,
            "label_smoothing must be a real number",
        ),
        (
            lambda x, t: fc.cross_entropy(x, t, ignore_index=1.0),
            TypeError,
            "ignore_index must be an int",
        ),
        (
            lambda x, t: fc.cross_entropy(x, np.full(x.shape, 0.25), ignore_index=0),
            ValueError,
            "ignore_index must be negative .* with class-probability targets",
        ),
        (
            lambda x, t: fc.cross_entropy(x, np.array([0, 1, 4, 2, 3])),
            ValueError,
            r"target must hold class indices in \[0, 4\) or ignore_index \(-100\), got 4",
        ),
        (
            lambda x, t: fc.cross_entropy(x, np.array([0, 1, -1, 2, 3])),
            ValueError,
            r"in \[0, 4\) or ignore_index \(-100\), got -1",
        ),
        (lambda x, t: fc.cross_entropy(np.float64(1.0), t), ValueError, "input must be logits"),
        (
            lambda x, t: fc.cross_entropy(np.zeros((5, 0)), t),
            ValueError,
            r"input must have at least one class",
        ),
        (
            lambda x, t: fc.cross_entropy(x.astype(complex), t),
            TypeError,
            "input must have a real dtype",
        ),
        (
            lambda x, t: fc.cross_entropy_backward(np.ones(5), x, t),
            TypeError,
            "grad_out must be a real number",
        ),
        (
            lambda x, t: fc.cross_entropy_backward(np.ones(4), x, t, reduction="none"),
            ValueError,
            r"grad_out must have the shape of the loss with reduction='none', \(5,\), got \(4,\)",
        ),
        (
            lambda x, t: fc.cross_entropy_backward(1.0, x, t, reduction="bad"),
            ValueError,
            "reduction must be one of",
        ),
    ],
)
def test_errors_name_the_argument(call, error, message):
    rng = np.random.default_rng(6)
    x, t = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    with pytest.raises(error, match=message):
        call(x, t)


def test_dask_stays_lazy():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 5, 3)).astype(np.float32)
    t = rng.integers(0, 5, (6, 3))
    t[0, 0] = -100
    p = rng.random((6, 5, 3)).astype(np.float32)
    w = (rng.random(5) + 0.5).astype(np.float32)
    dx = da.from_array(x, chunks=(2, 5, 3))
    for target, dtarget in (
        (t, da.from_array(t, chunks=(3, 3))),
        (p, da.from_array(p, chunks=(3, 5, 3))),
    ):
        for options in OPTIONS:
            loss = fc.cross_entropy(dx, dtarget, w, **options)
            expected = fc.cross_entropy(x, target, w, **options)
            assert (
                isinstance(loss, da.Array)
                and loss.shape == np.shape(expected)
                and loss.dtype == np.float32
            )
            np.testing.assert_allclose(loss.compute(), expected, rtol=2e-6)
            reduction = options.get("reduction", "mean")
            g = np.full(np.shape(expected), 0.5, np.float32) if reduction == "none" else 0.5
            dg = da.from_array(g, chunks=3) if reduction == "none" else g
            grad = fc.cross_entropy_backward(dg, dx, dtarget, w, **options)
            assert isinstance(grad, da.Array) and grad.shape == x.shape
            np.testing.assert_allclose(
                grad.compute(),
                fc.cross_entropy_backward(g, x, target, w, **options),
                rtol=2e-6,
                atol=1e-8,
            )
    # a lazy 0-d grad_out stays lazy
    grad = fc.cross_entropy_backward(da.from_array(np.float32(2.0)), dx, t)
    assert isinstance(grad, da.Array)
    np.testing.assert_allclose(grad.compute(), fc.cross_entropy_backward(2.0, x, t), rtol=1e-6)
    # every target ignored: NaN without a warning when computed
    with np.errstate(all="raise"):
        assert np.isnan(fc.cross_entropy(dx, np.full((6, 3), -100)).compute())


# ------------------------------------------------------------------ nn.CrossEntropyLoss
def test_layer_matches_the_functional_and_torchs_module():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 5, 3))
    t = rng.integers(0, 5, (4, 3))
    w = rng.random(5) + 0.5
    options = dict(ignore_index=1, reduction="sum", label_smoothing=0.1)
    layer = nn.CrossEntropyLoss(w, **options)
    assert (
        repr(layer)
        == "CrossEntropyLoss(weight=<5 classes>, ignore_index=1, reduction='sum', label_smoothing=0.1)"
    )
    loss = layer(x, t)
    np.testing.assert_array_equal(loss, fc.cross_entropy(x, t, w, **options))
    grad = layer.backward(2.0)
    np.testing.assert_array_equal(grad, fc.cross_entropy_backward(2.0, x, t, w, **options))
    assert layer.backward(input_grad=False) is None
    torch = pytest.importorskip("torch")
    xt = torch.from_numpy(x).requires_grad_()
    module = torch.nn.CrossEntropyLoss(torch.from_numpy(w), **options)
    ref = module(xt, torch.from_numpy(t))
    (2 * ref).backward()
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_layer_gradcheck_and_its_arguments():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 4))
    layer = nn.CrossEntropyLoss(label_smoothing=0.2)
    report = gradcheck_layer(layer, x, rng.integers(0, 4, 3))
    assert report.passed and "input" in report.checks, report
    one = nn.CrossEntropyLoss(reduction="none")
    assert one(x[0], np.int64(2)).shape == ()  # one sample (C,), a class index ()
    assert one.backward(np.float64(1.0)).shape == (4,)
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"
    with pytest.raises(TypeError):  # torch's deprecated size_average, second: fails loudly
        nn.CrossEntropyLoss(None, None)
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.CrossEntropyLoss(reduction="elementwise_mean")
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=2)
