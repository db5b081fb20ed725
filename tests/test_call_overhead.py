"""The per-call shortcuts of small calls give what the full paths give: remembered validation
(fastconv._dispatch.signature / Memo), remembered planner answers (cpu/ops.py _choice), BLAS held
to one thread by C calls (src/openmp.pyx), and one-thread kernels run without an OpenMP region."""

import numpy as np
import pytest
from reference import conv2d_backward_ref, conv2d_ref

import fastconv
from fastconv import _dispatch
from fastconv._backend.cpu import ops as cpu_ops
from fastconv._backend.cpu import threads
from fastconv._kernels import openmp
from fastconv._validation import plain
from fastconv._validation.memo import Memo


def _small(rng, dtype=np.float32):
    x = rng.standard_normal((1, 1, 8, 8)).astype(dtype)
    w = rng.standard_normal((4, 1, 3, 3)).astype(dtype)
    return x, w, np.ones((1, 4, 6, 6), dtype)


@pytest.mark.parametrize(
    "value, expected",
    [
        (1, True),
        ("same", True),
        (None, True),
        ((1, (2, 3)), True),
        (("input", "weight"), True),
        (True, False),  # == 1, but not a valid int
        (2.0, False),  # == 2
        (np.int64(2), False),
        ([1, 2], False),
        ((1, True), False),
        ((1, [2]), False),
    ],
)
def test_plain(value, expected):
    assert plain(value) is expected


def test_signature_only_for_arrays_that_need_no_copy(rng):
    x, w, _ = _small(rng)
    args = (1, 0, 1, 1, None, "auto")
    assert _dispatch.signature((x, w, None), args) == (x.shape, w.shape, None, x.dtype, args)

    class Sub(np.ndarray):
        pass

    for arrays in [
        (x[..., ::2], w, None),  # not C-contiguous
        (x.astype(np.float16), w.astype(np.float16), None),  # cast
        (x, w.astype(np.float64), None),  # two dtypes
        (x.tolist(), w, None),  # not an ndarray
        (x.view(Sub), w, None),  # a subclass
    ]:
        assert _dispatch.signature(arrays, args) is None
    assert _dispatch.signature((x, w, None), (True, 0, 1, 1, None, "auto")) is None


def test_memo_is_bounded_and_keeps_nothing_for_none():
    memo = Memo(3)
    memo.remember(None, "x")
    assert len(memo) == 0 and memo.get(None) is None
    for k in range(5):
        memo.remember(k, k)
    assert list(memo) == [2, 3, 4]


def test_a_known_signature_still_rejects_what_validation_rejects(rng):
    x, w, g = _small(rng)
    fastconv.conv2d(x, w)
    fastconv.conv2d(x, w)  # remembered now
    with pytest.raises(TypeError, match="stride"):
        fastconv.conv2d(x, w, stride=True)
    with pytest.raises(TypeError, match="stride"):
        fastconv.conv2d(x, w, stride=1.0)
    with pytest.raises(ValueError, match="algorithm"):
        fastconv.conv2d(x, w, algorithm="nope")
    with pytest.raises(ValueError, match="bias"):
        fastconv.conv2d(x, w, np.zeros(3, np.float32))
    fastconv.conv2d_backward(g, x, w)
    with pytest.raises(ValueError, match="needs"):
        fastconv.conv2d_backward(g, x, w, needs=("input", "nope"))
    with pytest.raises(ValueError, match="grad_out"):
        fastconv.conv2d_backward(g[:, :, :5], x, w)


def test_known_and_new_signatures_give_the_same_results(rng):
    x, w, g = _small(rng, np.float64)
    b = rng.standard_normal(4)
    first = fastconv.conv2d(x, w, b, padding=1, activation="relu")
    again = fastconv.conv2d(x, w, b, padding=1, activation="relu")
    np.testing.assert_array_equal(first, again)
    ref = np.maximum(conv2d_ref(x, w, b, pad=(1, 1, 1, 1)), 0)
    np.testing.assert_allclose(again, ref, rtol=1e-12, atol=1e-12)
    # a view (not C-contiguous) and float16 go the long way, to the same numbers
    wide = np.zeros(x.shape[:3] + (2 * x.shape[3],))
    wide[..., ::2] = x
    xs = wide[..., ::2]
    np.testing.assert_array_equal(fastconv.conv2d(xs, w, b, padding=1, activation="relu"), again)
    gs = [fastconv.conv2d_backward(g, x, w, needs=("weight", "input")) for _ in range(2)]
    for got in gs:
        assert got[2] is None
        want = conv2d_backward_ref(g, x, w)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(gs[0][1], gs[1][1])


def test_out_is_checked_on_every_call(rng):
    x, w, _ = _small(rng)
    fastconv.conv2d(x, w)
    out = np.empty((1, 4, 6, 6), np.float32)
    assert fastconv.conv2d(x, w, out=out) is out
    with pytest.raises(ValueError, match="out"):
        fastconv.conv2d(x, w, out=np.empty((1, 4, 6, 5), np.float32))


@pytest.mark.parametrize("algorithm", ["fft", "winograd"])
def test_remembered_choices_do_not_hide_non_finite_operands(rng, algorithm):
    """A transform's choice depends on the operands' values: it is never remembered, so a call
    with inf after finite calls of the same shapes still takes the exact path."""
    x = rng.standard_normal((1, 2, 9, 9)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    for _ in range(2):
        fastconv.conv2d(x, w, padding=1, algorithm=algorithm)
    x[0, 0, 4, 4] = np.inf
    got = fastconv.conv2d(x, w, padding=1, algorithm=algorithm)
    want = fastconv.conv2d(x, w, padding=1, algorithm="gemm")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got, want)


def test_choices_remembered_only_where_no_operand_was_asked(rng):
    x, w, _ = _small(rng)
    cpu_ops._CHOICES.clear()
    fastconv.conv2d(x, w)  # direct: no finiteness asked
    fastconv.conv2d(x, w, algorithm="fft")  # asks
    passes = [key[0:2] for key in cpu_ops._CHOICES]
    assert ("forward", "auto") in passes
    assert ("forward", "fft") not in passes


def _blas_threads():
    return [c.get_num_threads() for c in threads._blas_controllers()]


@pytest.mark.parametrize("python", [False, True], ids=["C calls", "Python fallback"])
def test_blas_single_thread_limits_nests_and_restores(python):
    pytest.importorskip("threadpoolctl")
    limit = (
        openmp.BlasSingleThread(lambda: None, threads._BlasSingleThread())
        if python
        else openmp.BlasSingleThread(threads._c_calls, None)
    )
    if not python and threads._c_calls() is None:
        pytest.skip("a BLAS library without OpenBLAS's C functions")
    controllers = threads._blas_controllers()
    before = _blas_threads()
    try:
        for c in controllers:
            c.set_num_threads(2)
        with limit:
            assert _blas_threads() == [1] * len(controllers)
            with limit:
                assert _blas_threads() == [1] * len(controllers)
            assert _blas_threads() == [1] * len(controllers)
        assert _blas_threads() == [2] * len(controllers)
    finally:
        for c, n in zip(controllers, before):
            c.set_num_threads(n)


@pytest.mark.parametrize(
    "x_shape, w_shape, kw",
    [
        ((1, 1, 8, 8), (4, 1, 3, 3), {}),  # direct forward, GEMM grad-input, direct grad-weight
        ((1, 3, 9, 9), (5, 3, 3, 3), dict(padding=1)),  # windows
        ((1, 2, 16, 40), (6, 2, 3, 3), dict(padding=1)),  # rows layout
        ((1, 8, 6, 6), (40, 8, 3, 3), dict(padding=1)),  # GEMM throughout
    ],
)
def test_one_thread_loops_match_the_regions(restore_threads, rng, x_shape, w_shape, kw):
    """One work item or one thread: the kernels' plain loops; more: OpenMP regions. The same
    bits either way (and right)."""
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    g = rng.standard_normal(fastconv.conv_output_shape(x_shape, w_shape, **kw))
    results = {}
    for n in (1, 2, 3):
        fastconv.set_num_threads(n)
        results[n] = (fastconv.conv2d(x, w, b, **kw), *fastconv.conv2d_backward(g, x, w, **kw))
    for n in (2, 3):
        for a, c in zip(results[1], results[n]):
            np.testing.assert_array_equal(a, c)
    pad = kw.get("padding", 0)
    want = conv2d_ref(x, w, b, pad=(pad,) * 4)
    np.testing.assert_allclose(results[1][0], want, rtol=1e-10, atol=1e-10)
    for got, ref in zip(results[1][1:], conv2d_backward_ref(g, x, w, pad=(pad,) * 4)):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)


# ------------------------------------------------- conv2d_backward's prepared steps (cpu/ops.py)
_BACKWARD_CASES = [
    ((1, 1, 8, 8), (4, 1, 3, 3), {}),  # GEMM grad-input, direct grad-weight + bias in one
    ((2, 3, 9, 9), (5, 3, 3, 3), dict(padding=1)),  # direct (flipped) grad-input
    ((2, 4, 10, 10), (4, 1, 3, 3), dict(padding=1, groups=4)),  # depthwise
    ((3, 16, 5, 5), (12, 16, 5, 5), {}),  # matmul
    ((1, 8, 6, 6), (40, 8, 3, 3), dict(padding=1)),  # GEMM, grad-weight and grad-bias apart
    ((2, 4, 8, 8), (6, 2, 3, 3), dict(groups=2, stride=2)),  # grouped GEMM
]
_ALL_NEEDS = [
    ("input", "weight", "bias"),
    ("input",),
    ("weight",),
    ("bias",),
    ("weight", "bias"),
    ("input", "bias"),
]


def _one_by_one(monkeypatch, *args, **kw):
    """conv2d_backward by the ops one by one (Eager without the prepared call)."""
    be = _dispatch.backend(x=args[1])
    with monkeypatch.context() as m:
        m.setattr(be, "_backward_prepared", None)
        return fastconv.conv2d_backward(*args, **kw)


def _same(got, want):
    for a, b in zip(got, want):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kw", _BACKWARD_CASES)
def test_prepared_backward_is_bitwise_the_ops_one_by_one(
    monkeypatch, rng, dtype, x_shape, w_shape, kw
):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    g = rng.standard_normal(fastconv.conv_output_shape(x_shape, w_shape, **kw)).astype(dtype)
    algorithms = fastconv.conv2d_algorithms(x_shape, w_shape, dtype=dtype, **kw)
    common = set(algorithms["grad_input"]) & set(algorithms["grad_weight"]) - {"fft", "winograd"}
    for algorithm in ["auto", *sorted(common)]:
        for needs in _ALL_NEEDS if algorithm == "auto" else _ALL_NEEDS[:1]:
            want = _one_by_one(monkeypatch, g, x, w, **kw, needs=needs, algorithm=algorithm)
            for _ in range(2):  # preparing, then prepared
                got = fastconv.conv2d_backward(g, x, w, **kw, needs=needs, algorithm=algorithm)
                _same(got, want)
    ref = conv2d_backward_ref(g, x, w, **_ref_geometry(kw))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for a, b in zip(fastconv.conv2d_backward(g, x, w, **kw), ref):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())


def _ref_geometry(kw):
    pad = kw.get("padding", 0)
    return dict(pad=(pad,) * 4, stride=kw.get("stride", 1), groups=kw.get("groups", 1))


def test_prepared_backward_is_used_and_reads_the_thread_count_per_call(
    monkeypatch, restore_threads, rng
):
    x, w, g = _small(rng)
    counts = []
    real = cpu_ops.get_num_threads

    def counting():
        counts.append(real())
        return counts[-1]

    monkeypatch.setattr(cpu_ops, "get_num_threads", counting)
    cpu_ops._BACKWARDS.clear()
    results = []
    for n in (2, 1, 3):
        fastconv.set_num_threads(n)
        results.append(fastconv.conv2d_backward(g, x, w))
    assert counts == [2, 1, 3]  # one read per call, none remembered
    assert len(cpu_ops._BACKWARDS) == 1  # one signature, prepared once
    for got in results[1:]:
        _same(got, results[0])


def test_prepared_steps_follow_the_simd_level(monkeypatch, rng):
    """The level is in the key: at the baseline the planner takes GEMM for grad-weight (direct
    needs SIMD), so grad-weight and grad-bias go apart, and the results match the ops'."""
    from fastconv._kernels import direct

    if direct.detected_level() == 0:
        pytest.skip("no SIMD level to leave")
    x, w, g = _small(rng)
    cpu_ops._BACKWARDS.clear()
    top = fastconv.conv2d_backward(g, x, w)
    previous = direct.set_level(0)
    try:
        low = fastconv.conv2d_backward(g, x, w)
        _same(low, _one_by_one(monkeypatch, g, x, w))
    finally:
        direct.set_level(previous)
    steps = {key[-1]: value for key, value in cpu_ops._BACKWARDS.items()}
    assert set(steps) == {0, previous}
    geometry = ((1, 1), (0, 0), (1, 1), 1)
    assert steps[previous][1] is cpu_ops._grad_weight_bias_step("direct", x.dtype, *geometry)
    assert steps[0][1] is cpu_ops._grad_weight_step("gemm", x.dtype, *geometry)
    _same(fastconv.conv2d_backward(g, x, w), top)


def test_prepared_backward_keys_on_dtype_algorithm_and_needs(rng):
    x, w, g = _small(rng)
    cpu_ops._BACKWARDS.clear()
    fastconv.conv2d_backward(g, x, w)
    fastconv.conv2d_backward(g, x, w, algorithm="gemm")
    fastconv.conv2d_backward(g, x, w, needs=("weight",))
    fastconv.conv2d_backward(g.astype(np.float64), x.astype(np.float64), w.astype(np.float64))
    keys = list(cpu_ops._BACKWARDS)
    assert len(keys) == 4
    assert {k[8] for k in keys} == {"auto", "gemm"}
    assert {k[7] for k in keys} == {np.dtype(np.float32), np.dtype(np.float64)}
    assert {k[9:12] for k in keys} == {(True, True, True), (False, True, False)}
    assert isinstance(cpu_ops._BACKWARDS, Memo) and cpu_ops._BACKWARDS.size <= 4096


def test_prepared_backward_of_views_and_casts(rng):
    """Non-contiguous and float16 inputs are copied by the dispatcher: the same steps, the same
    bits."""
    x, w, g = _small(rng)
    want = fastconv.conv2d_backward(g, x, w)
    wide = np.zeros(x.shape[:3] + (2 * x.shape[3],), np.float32)
    wide[..., ::2] = x
    _same(fastconv.conv2d_backward(g, wide[..., ::2], w), want)
    _same(fastconv.conv2d_backward(g, np.asfortranarray(x), w), want)


def test_prepared_backward_steps_aside_under_autotuning(rng, tmp_path):
    from fastconv._backend.cpu import autotune as at

    x, w, g = _small(rng)
    want = fastconv.conv2d_backward(g, x, w)
    grads = [np.empty_like(x), np.empty_like(w), np.empty(4, np.float32)]
    geometry = ((1, 1), (0, 0), (1, 1), 1)
    with at.autotune(True):
        assert cpu_ops.conv2d_backward_prepared(g, x, w, *grads, *geometry, "auto") is False
        got = fastconv.conv2d_backward(g, x, w)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # tuned: another algorithm may win
    assert cpu_ops.conv2d_backward_prepared(g, x, w, *grads, *geometry, "auto") is True
    _same(grads, want)


@pytest.mark.parametrize(
    "x_shape, w_shape, kw, algorithm",
    [
        ((1, 2, 9, 9), (3, 2, 3, 3), dict(padding=1), "fft"),
        ((1, 2, 9, 9), (3, 2, 3, 3), dict(padding=1), "winograd"),
        ((1, 3, 9, 9), (3, 1, 3, 3), dict(padding=1, groups=3, stride=2), "depthwise"),
    ],
)
def test_operand_dependent_choices_are_never_prepared(rng, x_shape, w_shape, kw, algorithm):
    """Where the planner asks for the operands' finiteness the prepared call declines (and
    remembers that it does), so inf and NaN still take the exact paths after finite calls."""
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    g = rng.standard_normal(fastconv.conv_output_shape(x_shape, w_shape, **kw)).astype(np.float32)
    cpu_ops._BACKWARDS.clear()
    for _ in range(2):
        fastconv.conv2d_backward(g, x, w, **kw, algorithm=algorithm)
    assert list(cpu_ops._BACKWARDS.values()) == [()]
    x[0, 0, 4, 4] = np.inf
    g[0, 0, 1, 1] = np.nan
    got = fastconv.conv2d_backward(g, x, w, **kw, algorithm=algorithm)
    want = fastconv.conv2d_backward(g, x, w, **kw, algorithm="gemm")
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_prepared_grad_input_measures_the_weights_where_the_planner_asks(monkeypatch, rng, bad):
    """The direct kernels' grad-input (a forward over the flipped weights) multiplies padding
    by the weights, so a weight that is not finite sends it to GEMM (0 * inf is NaN there as in
    NumPy): the prepared step measures the weights on every call, as the op does, and gives the
    ops' bits both ways (LeNet-5's conv2 grad-input, padded)."""
    x = rng.standard_normal((2, 6, 14, 14)).astype(np.float32)
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    g = rng.standard_normal((2, 16, 10, 10)).astype(np.float32)
    if fastconv.conv2d_plan(x.shape, w.shape)["grad_input"] != "direct":
        pytest.skip("grad-input is not on the direct kernels here")
    cpu_ops._BACKWARDS.clear()
    for weights in (w, np.where(np.arange(w.size).reshape(w.shape) == 7, bad, w), w):
        want = _one_by_one(monkeypatch, g, x, weights)
        for _ in range(2):
            _same(fastconv.conv2d_backward(g, x, weights), want)
    assert len(cpu_ops._BACKWARDS) == 1 and list(cpu_ops._BACKWARDS.values())[0] != ()
    assert np.isnan(want[0]).sum() == 0  # (finite weights again: no NaN)


def test_prepared_backward_keeps_the_errors(rng):
    x = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 1, 5, 5)).astype(np.float32)
    g = np.ones((1, 4, 4, 4), np.float32)
    messages = []
    for _ in range(2):
        with pytest.raises(ValueError, match="algorithm 'winograd' cannot compute the grad_input"):
            fastconv.conv2d_backward(g, x, w, algorithm="winograd")
        with pytest.raises(ValueError, match="cannot compute the grad_weight") as info:
            fastconv.conv2d_backward(g, x, w, needs=("weight",), algorithm="depthwise")
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_empty_arrays_take_the_ops(rng):
    x = np.zeros((0, 1, 8, 8), np.float32)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    g = np.zeros((0, 4, 6, 6), np.float32)
    for _ in range(2):
        gx, gw, gb = fastconv.conv2d_backward(g, x, w)
        assert gx.shape == x.shape
        np.testing.assert_array_equal(gw, 0)
        np.testing.assert_array_equal(gb, 0)
