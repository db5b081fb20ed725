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


@pytest.fixture
def restore_threads():
    before = fastconv.get_num_threads()
    yield
    fastconv.set_num_threads(before)


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
