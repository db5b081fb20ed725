"""out= of the training ops and the layers' buffer reuse (Layer.reuse_buffers; issue 23).

Each op's out= result is checked against the float64 references of tests/reference.py (written
apart from the code) and against the allocating call (the same numbers, bitwise), in float32 and
float64, batched and unbatched; each bad out= (shape, dtype, layout, overlap, tuple form) raises
naming it, with no input modified. The reuse tests train LeNet-5 with and without reuse and
compare bitwise, and check with tracemalloc that a step at a fixed batch size allocates no array
after the first."""

import sys
import tracemalloc

import numpy as np
import pytest
from reference import (
    conv2d_backward_ref,
    linear_ref,
    max_pool2d_ref,
    scatter_ref,
    softmax_cross_entropy_ref,
)

import fastconv as fc
from fastconv import nn, optim
from fastconv.lenet import LeNet5

DTYPES = [np.float32, np.float64]


def _tol(dtype):
    return dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


def _copies(*arrays):
    return [a.copy() for a in arrays]


def _unchanged(before, after):
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------- out= on each op


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("needs", [("input", "weight", "bias"), ("weight", "bias"), ("input",)])
def test_conv2d_backward_out(dtype, needs, rng):
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    g = rng.standard_normal((2, 4, 4, 6)).astype(dtype)
    kw = dict(stride=(2, 1), padding=1, dilation=(1, 2), needs=needs)
    want = fc.conv2d_backward(g, x, w, **kw)
    shapes = {"input": x.shape, "weight": w.shape, "bias": (4,)}
    out = tuple(
        np.full(shapes[n], np.nan, dtype) if n in needs else None
        for n in ("input", "weight", "bias")
    )
    before = _copies(g, x, w)
    for _ in range(2):  # the second call takes the memo's path
        got = fc.conv2d_backward(g, x, w, **kw, out=out)
        for o, r, want_r in zip(out, got, want):
            assert r is o
            if o is not None:
                np.testing.assert_array_equal(o, want_r)  # bitwise the allocating call
    _unchanged(before, (g, x, w))
    ref = conv2d_backward_ref(g, x, w, (2, 1), (1, 1, 1, 1), (1, 2))
    for o, r in zip(out, ref):
        if o is not None:
            np.testing.assert_allclose(o, r, **_tol(dtype))
    # None entries are allocated
    if "input" in needs and "weight" in needs:
        gx = np.empty(x.shape, dtype)
        got = fc.conv2d_backward(g, x, w, **kw, out=(gx, None, None))
        assert got[0] is gx and got[1] is not None
        np.testing.assert_array_equal(got[1], want[1])


def test_conv2d_backward_out_unbatched(rng):
    x = rng.standard_normal((3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    g = rng.standard_normal((4, 4, 4)).astype(np.float32)
    want = fc.conv2d_backward(g, x, w)
    out = (np.empty((3, 6, 6), np.float32), np.empty(w.shape, np.float32), np.empty(4, np.float32))
    got = fc.conv2d_backward(g, x, w, out=out)
    for o, r, want_r in zip(out, got, want):
        assert r is o
        np.testing.assert_array_equal(o, want_r)


def test_conv2d_out_in_the_memo_path(rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    want = fc.conv2d(x, w, b, activation="relu")
    out = np.empty_like(want)
    for _ in range(2):  # validated, then remembered: out= is checked on both paths
        assert fc.conv2d(x, w, b, activation="relu", out=out) is out
        np.testing.assert_array_equal(out, want)
        with pytest.raises(ValueError, match="out must have shape"):
            fc.conv2d(x, w, b, activation="relu", out=np.empty((2, 5, 6, 5), np.float32))
        with pytest.raises(TypeError, match="out must have dtype float32"):
            fc.conv2d(x, w, b, activation="relu", out=np.empty(want.shape))
        with pytest.raises(ValueError, match="out must not share memory with x"):
            fc.conv2d(x, w, b, out=x.reshape(-1)[: out.size].reshape(out.shape))


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_out(dtype, rng):
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    want_y, want_i = fc.max_pool2d(x, 2, return_indices=True)
    ref_y, ref_i = max_pool2d_ref(x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(want_y, ref_y)
    np.testing.assert_array_equal(want_i, ref_i)
    y, idx = np.empty_like(want_y), np.empty(want_y.shape, np.int64)
    before = _copies(x)
    got = fc.max_pool2d(x, 2, return_indices=True, out=(y, idx))
    assert got[0] is y and got[1] is idx
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(idx, want_i)
    y2 = np.empty_like(want_y)
    assert fc.max_pool2d(x, 2, out=y2) is y2
    np.testing.assert_array_equal(y2, want_y)
    _unchanged(before, (x,))
    # unbatched: one sample in, its results without the batch axis, written into out
    y1, i1 = np.empty((3, 4, 4), dtype), np.empty((3, 4, 4), np.int64)
    got = fc.max_pool2d(x[1], 2, return_indices=True, out=(y1, i1))
    assert got[0] is y1 and got[1] is i1
    np.testing.assert_array_equal(y1, want_y[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_backward_out(dtype, rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(dtype)
    y, idx = fc.max_pool2d(x, 3, 2, 1, return_indices=True)  # overlapping windows: sums
    g = rng.standard_normal(y.shape).astype(dtype)
    want = fc.max_pool2d_backward(g, idx, x.shape)
    np.testing.assert_allclose(want, scatter_ref(g, idx, x.shape), **_tol(dtype))
    out = np.full(x.shape, np.nan, dtype)
    before = _copies(g, idx)
    assert fc.max_pool2d_backward(g, idx, x.shape, out=out) is out
    np.testing.assert_array_equal(out, want)
    _unchanged(before, (g, idx))


def test_max_pool2d_backward_checks_indices_in_the_kernel(rng):
    g = rng.standard_normal((1, 2, 2, 2)).astype(np.float32)
    for bad in (-1, 16):
        idx = np.zeros((1, 2, 2, 2), np.int64)
        idx[0, 1, 1, 0] = bad
        with pytest.raises(ValueError, match=r"indices must lie in \[0, H\*W\) = \[0, 16\)"):
            fc.max_pool2d_backward(g, idx, (1, 2, 4, 4))


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_backward_out_and_in_place(dtype, rng):
    g = rng.standard_normal((3, 4, 5)).astype(dtype)
    y = np.maximum(rng.standard_normal((3, 4, 5)), 0).astype(dtype)
    want = np.where(y > 0, g, 0).astype(dtype)
    out = np.empty_like(g)
    before = _copies(g, y)
    assert fc.relu_backward(g, y, out=out) is out
    np.testing.assert_array_equal(out, want)
    _unchanged(before, (g, y))
    inplace = g.copy()
    assert fc.relu_backward(inplace, y, out=inplace) is inplace  # out may be grad_out itself
    np.testing.assert_array_equal(inplace, want)
    with pytest.raises(ValueError, match="out must not share memory with y"):
        fc.relu_backward(g, y, out=y)
    with pytest.raises(ValueError, match="out must not share memory with grad_out"):
        fc.relu_backward(g, y, out=g.reshape(-1).reshape(g.shape))  # not grad_out itself
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        # (a non-contiguous grad_out is copied: in place on the copy would not be seen)
        gt = g.transpose(0, 2, 1).copy().transpose(0, 2, 1)
        fc.relu_backward(gt, y, out=gt)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_out(dtype, rng):
    x = rng.standard_normal((2, 3, 6)).astype(dtype)  # leading axes (2, 3)
    w = rng.standard_normal((4, 6)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    want = fc.linear(x, w, b)
    np.testing.assert_allclose(
        want, linear_ref(x.reshape(6, 6), w, b).reshape(2, 3, 4), **_tol(dtype)
    )
    out = np.empty((2, 3, 4), dtype)
    assert fc.linear(x, w, b, out=out) is out
    np.testing.assert_array_equal(out, want)
    g = rng.standard_normal((2, 3, 4)).astype(dtype)
    want_g = fc.linear_backward(g, x, w)
    outs = (np.empty_like(x), np.empty_like(w), np.empty_like(b))
    before = _copies(g, x, w)
    got = fc.linear_backward(g, x, w, out=outs)
    for o, r, wr in zip(outs, got, want_g):
        assert r is o
        np.testing.assert_array_equal(o, wr)
    _unchanged(before, (g, x, w))
    got = fc.linear_backward(g, x, w, needs=("weight",), out=(None, outs[1], None))
    assert got[0] is None and got[1] is outs[1] and got[2] is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_out(dtype, rng):
    logits = rng.standard_normal((5, 7)).astype(dtype)
    labels = rng.integers(0, 7, 5)
    loss, log_probs = fc.softmax_cross_entropy(logits, labels)
    ref_loss, _ = softmax_cross_entropy_ref(logits, labels)
    np.testing.assert_allclose(loss, ref_loss, **_tol(dtype))
    out = np.empty((5, 7), dtype)
    loss2, lp = fc.softmax_cross_entropy(logits, labels, out=out)
    assert lp is out and loss2 == loss
    np.testing.assert_array_equal(out, log_probs)
    want = fc.softmax_cross_entropy_backward(log_probs, labels, 0.5)
    grad = np.empty((5, 7), dtype)
    assert fc.softmax_cross_entropy_backward(log_probs, labels, 0.5, out=grad) is grad
    np.testing.assert_array_equal(grad, want)


def _bad_out_cases(rng):
    """(call taking out, a fitting out, inputs) per op with a single result."""
    f32 = np.float32
    x4 = rng.standard_normal((2, 3, 8, 8)).astype(f32)
    y, idx = fc.max_pool2d(x4, 2, return_indices=True)
    g4 = rng.standard_normal(y.shape).astype(f32)
    x2 = rng.standard_normal((4, 6)).astype(f32)
    w2 = rng.standard_normal((3, 6)).astype(f32)
    labels = rng.integers(0, 6, 4)
    return {
        "max_pool2d": (lambda out: fc.max_pool2d(x4, 2, out=out), y.shape, (x4,)),
        "max_pool2d_backward": (
            lambda out: fc.max_pool2d_backward(g4, idx, x4.shape, out=out),
            x4.shape,
            (g4, idx),
        ),
        "relu_backward": (lambda out: fc.relu_backward(g4, y, out=out), y.shape, (g4, y)),
        "linear": (lambda out: fc.linear(x2, w2, out=out), (4, 3), (x2, w2)),
        "softmax_cross_entropy": (
            lambda out: fc.softmax_cross_entropy(x2, labels, out=out),
            x2.shape,
            (x2, labels),
        ),
        "softmax_cross_entropy_backward": (
            lambda out: fc.softmax_cross_entropy_backward(x2, labels, out=out),
            x2.shape,
            (x2, labels),
        ),
    }


@pytest.mark.parametrize(
    "op",
    [
        "max_pool2d",
        "max_pool2d_backward",
        "relu_backward",
        "linear",
        "softmax_cross_entropy",
        "softmax_cross_entropy_backward",
    ],
)
def test_bad_out_raises_naming_it(op, rng):
    call, shape, inputs = _bad_out_cases(rng)[op]
    before = _copies(*inputs)
    wrong = tuple(s + 1 for s in shape)
    with pytest.raises(ValueError, match=r"out must have shape"):
        call(np.empty(wrong, np.float32))
    with pytest.raises(TypeError, match=r"out must have dtype float32, got float64"):
        call(np.empty(shape, np.float64))
    with pytest.raises(ValueError, match=r"out must be C-contiguous"):
        call(np.empty(shape[::-1], np.float32).T)
    with pytest.raises(TypeError, match=r"out must be an array"):
        call([[0.0]])
    readonly = np.empty(shape, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match=r"out must be writeable"):
        call(readonly)
    floats = [a for a in inputs if a.dtype == np.float32 and a.shape == shape]
    if floats:  # out= an input of the same shape: refused (relu_backward's grad_out aside)
        if op != "relu_backward":
            with pytest.raises(ValueError, match=r"out must not share memory with"):
                call(floats[0])
    _unchanged(before, inputs)


def test_bad_tuple_out_raises_naming_it(rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    g = rng.standard_normal((2, 4, 4, 4)).astype(np.float32)
    gw, gb = np.empty(w.shape, np.float32), np.empty(4, np.float32)
    with pytest.raises(TypeError, match=r"out must be a tuple of 3 arrays or None"):
        fc.conv2d_backward(g, x, w, out=(None, gw))
    with pytest.raises(TypeError, match=r"out must be a tuple of 3"):
        fc.conv2d_backward(g, x, w, out=gw)
    with pytest.raises(ValueError, match=r"out\[0\] must be None: that result is not computed"):
        fc.conv2d_backward(g, x, w, needs=("weight",), out=(np.empty_like(x), gw, None))
    with pytest.raises(ValueError, match=r"out\[1\] \(grad_weight\) must have shape"):
        fc.conv2d_backward(g, x, w, out=(None, gb, None))
    with pytest.raises(TypeError, match=r"out\[2\] \(grad_bias\) must have dtype float32"):
        fc.conv2d_backward(g, x, w, out=(None, None, np.empty(4)))
    with pytest.raises(ValueError, match=r"out\[1\] \(grad_weight\) must not share memory with w"):
        fc.conv2d_backward(g, x, w, out=(None, w, None))
    shared = np.empty(4 + w.size, np.float32)
    with pytest.raises(
        ValueError, match=r"out\[2\] \(grad_bias\) must not share memory with out\[1\]"
    ):
        fc.conv2d_backward(g, x, w, out=(None, shared[: w.size].reshape(w.shape), shared[-5:-1]))
    y = fc.max_pool2d(x, 2)
    with pytest.raises(TypeError, match=r"out\[1\] \(indices\) must have dtype int64"):
        fc.max_pool2d(x, 2, return_indices=True, out=(None, np.empty(y.shape, np.float32)))
    x2, w2 = x.reshape(2, -1), rng.standard_normal((5, 108)).astype(np.float32)
    g2 = rng.standard_normal((2, 5)).astype(np.float32)
    with pytest.raises(ValueError, match=r"out\[0\] \(grad_input\) must have shape \(2, 108\)"):
        fc.linear_backward(g2, x2, w2, out=(np.empty((108, 2), np.float32), None, None))


def test_out_refused_for_dask():
    da = pytest.importorskip("dask.array")
    x = da.ones((2, 3, 4, 4), chunks=1, dtype=np.float32)
    with pytest.raises(TypeError, match="out= cannot be used with Dask arrays"):
        fc.max_pool2d(x, 2, out=np.empty((2, 3, 2, 2), np.float32))


# --------------------------------------------------------------------- buffer reuse


def _batches(rng, sizes):
    return [
        (rng.standard_normal((n, 1, 32, 32)).astype(np.float32), rng.integers(0, 10, n))
        for n in sizes
    ]


def _train(reuse, batches, opt_name="adam", set_to_none=True, seed=0):
    """Train a LeNet-5 on `batches`, an eval forward in the middle; the parameters and the
    logits of each step (copied)."""
    model = LeNet5(seed=seed).reuse_buffers(reuse)
    loss_fn = nn.SoftmaxCrossEntropy().reuse_buffers(reuse)
    params = model.parameters()
    opt = optim.Adam(params, lr=1e-3) if opt_name == "adam" else optim.SGD(params, 0.01, 0.9)
    logits_seen = []
    for i, (x, y) in enumerate(batches):
        opt.zero_grad(set_to_none=set_to_none)
        logits = model.forward(x)
        loss_fn.forward(logits, y)
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()
        logits_seen.append(logits.copy())
        if i == 1:
            model.eval()
            logits_seen.append(model.forward(batches[0][0]).copy())
            model.train()
    return [p.data.copy() for p in params], logits_seen


@pytest.mark.parametrize("opt_name, set_to_none", [("adam", True), ("sgd", False)])
def test_reuse_is_bitwise_the_allocating_path(opt_name, set_to_none):
    batches = _batches(np.random.default_rng(3), [8, 8, 5, 8, 8])  # a shorter batch between
    want_params, want_logits = _train(False, batches, opt_name, set_to_none)
    got_params, got_logits = _train(True, batches, opt_name, set_to_none)
    for w, g in zip(want_params + want_logits, got_params + got_logits):
        np.testing.assert_array_equal(g, w)


def test_reuse_hands_back_the_same_arrays_and_is_off_by_default(rng):
    model = LeNet5(seed=0)
    assert not any(layer.reusing_buffers for layer in model.modules())
    x = rng.standard_normal((4, 1, 32, 32)).astype(np.float32)
    first = model.forward(x)
    assert model.forward(x) is not first  # without reuse, a fresh array per call
    model.reuse_buffers(True)
    assert model.c1.reusing_buffers and model.s2.reusing_buffers and model.f6.reusing_buffers
    assert not model.flatten.reusing_buffers and not model.reusing_buffers  # nothing to reuse
    for p in model.parameters():
        p.grad = None  # (a new Parameter's grad is zeros: its first backward adds to those)
    y1 = model.forward(x)
    g1 = model.backward(np.ones_like(y1))
    grads1 = [p.grad for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    y2 = model.forward(x)
    g2 = model.backward(np.ones_like(y2))
    assert y2 is y1 and g2 is g1  # overwritten in place: the documented contract
    assert all(p.grad is g for p, g in zip(model.parameters(), grads1))
    y3 = model.forward(x[:2])  # another shape: buffers of its own
    assert y3 is not y1 and y3.shape == (2, 10)
    model.reuse_buffers(False)
    assert not any(layer.reusing_buffers for layer in model.modules())
    assert model.forward(x) is not y1


def test_reuse_keeps_a_buffer_per_input_shape(rng):
    """Inputs of 9x9 and 8x8 both pool to 4x4: their gradients' buffers are apart."""
    pool = nn.MaxPool2D(2).reuse_buffers(True)
    for size in (9, 8, 9, 8):
        x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
        y = pool(x)
        g = rng.standard_normal(y.shape).astype(np.float32)
        got = pool.backward(g)
        _, idx = fc.max_pool2d(x, 2, return_indices=True)
        np.testing.assert_array_equal(got, fc.max_pool2d_backward(g, idx, x.shape))


def test_reuse_accumulates_into_existing_grads_correctly(rng):
    """Two backwards without zero_grad add up: the kept gradient buffer that p.grad already is
    is not written over."""
    x = rng.standard_normal((3, 1, 32, 32)).astype(np.float32)
    sums = []
    for reuse in (False, True):
        model = LeNet5(seed=0).reuse_buffers(reuse)
        for _ in range(3):
            y = model.forward(x)
            model.backward(np.ones_like(y))
        sums.append([p.grad.copy() for p in model.parameters()])
    for want, got in zip(*sums):
        np.testing.assert_array_equal(got, want)


def _largest_allocations(run):
    """The largest growth of traced memory within one C function call of `run()` (a NumPy array
    being allocated shows as its size there; Python's own objects are small), by a profile hook
    that reads tracemalloc's peak at every event and resets it."""
    largest = [0, None]
    last = [0]

    def hook(frame, event, arg):
        current, peak = tracemalloc.get_traced_memory()
        if event == "c_return" and peak - last[0] > largest[0]:
            largest[:] = [peak - last[0], getattr(arg, "__qualname__", repr(arg))]
        tracemalloc.reset_peak()
        last[0] = tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        last[0] = tracemalloc.get_traced_memory()[0]
        sys.setprofile(hook)
        try:
            run()
        finally:
            sys.setprofile(None)
    finally:
        tracemalloc.stop()
    return largest


@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
def test_a_lenet_step_allocates_nothing_after_the_first(opt_name):
    batches = _batches(np.random.default_rng(0), [64] * 4)
    model = LeNet5(seed=0)
    loss_fn = nn.SoftmaxCrossEntropy()
    params = model.parameters()
    opt = optim.Adam(params, lr=1e-3) if opt_name == "adam" else optim.SGD(params, 0.01, 0.9)

    def steps(which):
        for x, y in (batches[i] for i in which):
            opt.zero_grad(set_to_none=True)
            logits = model.forward(x)
            loss_fn.forward(logits, y)
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()

    steps([0])  # warm-up without reuse: the allocating path is what the hook sees first
    without = _largest_allocations(lambda: steps([1]))
    assert without[0] > 64 * 6 * 28 * 28 * 4  # sees c1's output being allocated
    model.reuse_buffers(True)
    loss_fn.reuse_buffers(True)
    steps([0])  # the first step with reuse allocates the buffers
    largest = _largest_allocations(lambda: steps([2, 3]))
    # 2 KB: below every per-batch array of the step (the logits, 64 x 10 float32, are the
    # smallest: 2.5 KB) and above NumPy's own bookkeeping in a reduction (~1 KB whatever the
    # size: the labels' range check, the loss's mean), which is no array
    assert largest[0] <= 2048, f"a step allocated {largest[0]} bytes in {largest[1]}"


def test_fit_trains_with_reuse_and_gives_the_same_results(monkeypatch):
    from fastconv.datasets import MNIST
    from fastconv.lenet import fit

    rng = np.random.default_rng(0)
    data = MNIST(
        rng.random((40, 1, 32, 32), dtype=np.float32),
        rng.integers(0, 10, 40),
        rng.random((10, 1, 32, 32), dtype=np.float32),
        rng.integers(0, 10, 10),
    )
    kw = dict(epochs=2, batch_size=16, progress=False, log=lambda line: None, augment="shift")
    model = LeNet5(seed=0)
    seen = []
    original = nn.Layer.reuse_buffers

    def spy(self, mode=True):
        seen.append(mode)
        return original(self, mode)

    monkeypatch.setattr(nn.Layer, "reuse_buffers", spy)
    history = fit(model, data, **kw)
    assert seen[:1] == [True] and seen[-1] is False  # on while training, off again after
    assert not any(layer.reusing_buffers for layer in model.modules())
    monkeypatch.setattr(nn.Layer, "reuse_buffers", lambda self, mode=True: self)  # never on
    plain = LeNet5(seed=0)
    plain_history = fit(plain, data, **kw)
    for a, b in zip(model.parameters(), plain.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    for h, p in zip(history, plain_history):
        for key in ("train_loss", "train_accuracy", "test_accuracy"):
            assert h[key] == p[key]
