"""OpenMP thread control, determinism across thread counts, and concurrent calls from Python threads."""

import os
import threading

import numpy as np
import pytest

import fastconv
from reference import conv2d_backward_ref, conv2d_ref, pad_tblr


@pytest.fixture
def restore_threads():
    """Whatever a test sets, the thread count goes back to what it was."""
    before = fastconv.get_num_threads()
    try:
        yield before
    finally:
        fastconv.set_num_threads(before)
    assert fastconv.get_num_threads() == before


def test_openmp_enabled_is_bool():
    assert isinstance(fastconv.openmp_enabled(), bool)


@pytest.mark.skipif(
    os.environ.get("FASTCONV_REQUIRE_OPENMP", "") in ("", "0"), reason="FASTCONV_REQUIRE_OPENMP not set"
)
def test_openmp_required():
    assert fastconv.openmp_enabled(), "FASTCONV_REQUIRE_OPENMP is set but fastconv was built without OpenMP"


def test_get_num_threads_default():
    n = fastconv.get_num_threads()
    assert type(n) is int and n >= 1


def test_set_get_round_trip(restore_threads):
    fastconv.set_num_threads(1)
    assert fastconv.get_num_threads() == 1
    fastconv.set_num_threads(2)
    if fastconv.openmp_enabled():
        assert fastconv.get_num_threads() == 2
    else:
        assert fastconv.get_num_threads() in (1, 2)
    fastconv.set_num_threads(np.int64(1))
    assert fastconv.get_num_threads() == 1


@pytest.mark.parametrize(
    "value, exc",
    [(0, ValueError), (-1, ValueError), (-8, ValueError), (1.5, TypeError), (2.0, TypeError), ("2", TypeError),
     (True, TypeError), ((2,), TypeError)],
)
def test_set_num_threads_invalid(restore_threads, value, exc):
    fastconv.set_num_threads(1)
    with pytest.raises(exc):
        fastconv.set_num_threads(value)
    assert fastconv.get_num_threads() == 1  # a refused value changes nothing


def test_show_config(capsys):
    result = fastconv.show_config()
    out = capsys.readouterr().out
    assert result is None or isinstance(result, str)
    text = out + (result or "")
    assert "OpenMP" in text
    assert "threads" in text.lower()
    assert fastconv.__version__ in text


# --------------------------------------------------------------------------------------------
# Determinism: 1 thread and 2 threads give bitwise identical results
# --------------------------------------------------------------------------------------------

SPLITTABLE = [
    pytest.param((4, 16, 20, 20), (32, 16, 3, 3), dict(padding=1), id="batch4"),
    pytest.param((1, 16, 20, 20), (32, 16, 3, 3), dict(padding=1), id="batch1"),
    pytest.param((4, 16, 20, 20), (32, 4, 3, 3), dict(padding="same", stride=2, groups=4), id="groups4_s2"),
    pytest.param((4, 16, 20, 20), (16, 1, 3, 3), dict(padding=1, groups=16), id="depthwise"),
    pytest.param((3, 8, 17, 19), (16, 1, 5, 3), dict(padding=(2, 1), dilation=(1, 2), groups=8), id="depthwise_x2"),
    pytest.param((2, 16, 24, 24), (8, 16, 1, 1), dict(), id="pointwise"),
]


def _run_all(x, w, b, g, kw):
    return (
        fastconv.conv2d(x, w, b, **kw),
        fastconv.conv2d(x, w, b, activation="relu", **kw),
        *fastconv.conv2d_backward(g, x, w, **kw),
        fastconv.conv2d_grad_input(g, w, x.shape, **kw),
        fastconv.conv2d_grad_weight(g, x, w.shape, **kw),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kw", SPLITTABLE)
def test_bitwise_identical_across_thread_counts(restore_threads, x_shape, w_shape, kw, dtype, rng):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    g = rng.standard_normal(fastconv.conv_output_shape(x_shape, w_shape, **kw)).astype(dtype)
    fastconv.set_num_threads(1)
    one = _run_all(x, w, b, g, kw)
    fastconv.set_num_threads(2)
    two = _run_all(x, w, b, g, kw)
    again = _run_all(x, w, b, g, kw)
    for i, (a, c, d) in enumerate(zip(one, two, again)):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, c, err_msg=f"result {i}: 1 vs 2 threads")
        np.testing.assert_array_equal(c, d, err_msg=f"result {i}: two runs on 2 threads")
    # and they are right, not just stable
    tol = dict(rtol=1e-4, atol=1e-3) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(one[0], _reference_forward(x, w, b, kw), **tol)


def _ref_args(x, w, kw):
    stride, dilation = kw.get("stride", 1), kw.get("dilation", 1)
    tblr = pad_tblr(kw.get("padding", 0), x.shape[2:], w.shape[2:], stride, dilation)
    return stride, tblr, dilation, kw.get("groups", 1)


def _reference_forward(x, w, b, kw):
    return conv2d_ref(x, w, b, *_ref_args(x, w, kw))


# --------------------------------------------------------------------------------------------
# Concurrent calls from Python threads
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_threads", [1, 2])
def test_concurrent_python_threads(restore_threads, num_threads, rng):
    fastconv.set_num_threads(num_threads)
    problems = []
    for i in range(4):  # different shapes per thread so that shared workspaces would collide
        groups = (1, 2, 4, 8)[i]
        x = rng.standard_normal((3, 8, 12 + i, 14 - i))
        w = rng.standard_normal((8, 8 // groups, 3, 2 + i % 2))
        b = rng.standard_normal(8)
        kw = dict(padding=(1, i % 2), stride=1 + i % 2, groups=groups)
        g = rng.standard_normal(fastconv.conv_output_shape(x.shape, w.shape, **kw))
        problems.append((x, w, b, g, kw))
    expected = [
        (_reference_forward(x, w, b, kw),) + conv2d_backward_ref(g, x, w, *_ref_args(x, w, kw))
        for x, w, b, g, kw in problems
    ]
    serial = [_single(p) for p in problems]
    results, errors = [None] * 4, []
    barrier = threading.Barrier(4)

    def worker(i):
        try:
            barrier.wait(timeout=30)
            results[i] = [_single(problems[i]) for _ in range(5)]
        except Exception as exc:  # reported below: an exception in a thread would otherwise vanish
            errors.append((i, exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    assert not errors, errors
    for i in range(4):
        for s, want in zip(serial[i], expected[i]):
            np.testing.assert_allclose(s, want, rtol=1e-10, atol=1e-10)
        for repeat in results[i]:
            for r, s in zip(repeat, serial[i]):
                np.testing.assert_allclose(r, s, rtol=1e-12, atol=1e-12, err_msg=f"thread {i}")


def _single(problem):
    x, w, b, g, kw = problem
    return (fastconv.conv2d(x, w, b, **kw),) + fastconv.conv2d_backward(g, x, w, **kw)
