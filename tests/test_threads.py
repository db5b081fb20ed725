"""OpenMP thread control, determinism across thread counts, and concurrent calls from Python threads."""

import os
import threading

import numpy as np
import pytest
from reference import conv2d_backward_ref, conv2d_ref, pad_tblr

import fastconv


def test_openmp_enabled_is_bool():
    assert isinstance(fastconv.openmp_enabled(), bool)


@pytest.mark.skipif(
    os.environ.get("FASTCONV_REQUIRE_OPENMP", "") in ("", "0"),
    reason="FASTCONV_REQUIRE_OPENMP not set",
)
def test_openmp_required():
    assert fastconv.openmp_enabled(), (
        "FASTCONV_REQUIRE_OPENMP is set but fastconv was built without OpenMP"
    )


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
    [
        (0, ValueError),
        (-1, ValueError),
        (-8, ValueError),
        (1.5, TypeError),
        (2.0, TypeError),
        ("2", TypeError),
        (True, TypeError),
        ((2,), TypeError),
    ],
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
    assert "BLAS" in text
    assert fastconv.__version__ in text
    from fastconv._kernels import direct as direct_kernels

    level_name = {0: "baseline", 1: "AVX2", 2: "AVX-512"}[direct_kernels.level()]
    assert f"direct kernels (few-filter convolutions): {level_name}" in text


# --------------------------------------------------------------------------------------------
# Determinism: 1 thread and 2 threads give bitwise identical results
# --------------------------------------------------------------------------------------------

SPLITTABLE = [
    pytest.param((4, 16, 20, 20), (32, 16, 3, 3), dict(padding=1), id="batch4"),
    pytest.param((1, 16, 20, 20), (32, 16, 3, 3), dict(padding=1), id="batch1"),
    pytest.param(
        (4, 16, 20, 20), (32, 4, 3, 3), dict(padding="same", stride=2, groups=4), id="groups4_s2"
    ),
    pytest.param((4, 16, 20, 20), (16, 1, 3, 3), dict(padding=1, groups=16), id="depthwise"),
    pytest.param(
        (3, 8, 17, 19),
        (16, 1, 5, 3),
        dict(padding=(2, 1), dilation=(1, 2), groups=8),
        id="depthwise_x2",
    ),
    pytest.param((2, 16, 24, 24), (8, 16, 1, 1), dict(), id="pointwise"),
    pytest.param((1, 32, 40, 40), (16, 32, 3, 3), dict(padding=1), id="tiles_of_one_image"),
    pytest.param((2, 3, 64, 64), (4, 3, 3, 3), dict(padding="same"), id="few_channels_partials"),
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
    fastconv.set_num_threads(3)  # more threads than this machine may have, uneven splits
    three = _run_all(x, w, b, g, kw)
    for i, (a, c, d, e) in enumerate(zip(one, two, again, three)):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, c, err_msg=f"result {i}: 1 vs 2 threads")
        np.testing.assert_array_equal(c, d, err_msg=f"result {i}: two runs on 2 threads")
        np.testing.assert_array_equal(a, e, err_msg=f"result {i}: 1 vs 3 threads")
    # and they are right, not just stable
    ref_y = _reference_forward(x, w, b, kw)
    expected = (ref_y, np.maximum(ref_y, 0)) + conv2d_backward_ref(g, x, w, *_ref_args(x, w, kw))
    expected += expected[2:4]
    tol = dict(rtol=1e-4, atol=2e-3) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-9)
    for i, (got, want) in enumerate(zip(one, expected)):
        np.testing.assert_allclose(got, want, err_msg=f"result {i}", **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N", [1, 64, 130])  # one block; one row block of several columns; both
def test_dense_ops_bitwise_identical_across_thread_counts(restore_threads, N, dtype, rng):
    """linear (and the conv layers that reduce to it) in fixed blocks of rows and columns."""
    x = rng.standard_normal((N, 70)).astype(dtype)
    w = rng.standard_normal((150, 70)).astype(dtype)
    b = rng.standard_normal(150).astype(dtype)
    g = rng.standard_normal((N, 150)).astype(dtype)
    runs = []
    for threads in (1, 2, 3):
        fastconv.set_num_threads(threads)
        runs.append(
            (fastconv.linear(x, w, b, activation="relu"), *fastconv.linear_backward(g, x, w))
        )
    for other in runs[1:]:
        for a, c in zip(runs[0], other):
            np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(runs[0][0], np.maximum(x @ w.T + b, 0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(runs[0][1], g @ w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(runs[0][2], g.T @ x, rtol=1e-4, atol=1e-3)


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
    """4 Python threads, each repeating forward + backward on its own shapes and dtype at once."""
    fastconv.set_num_threads(num_threads)
    problems = []
    for i in range(
        4
    ):  # different shapes and dtypes per thread so that shared workspaces would collide
        dtype = (np.float64, np.float32)[i % 2]
        groups = (1, 2, 4, 8)[i]
        x = rng.standard_normal((3, 8, 12 + i, 14 - i)).astype(dtype)
        w = rng.standard_normal((8, 8 // groups, 3, 2 + i % 2)).astype(dtype)
        b = rng.standard_normal(8).astype(dtype)
        kw = dict(padding=(1, i % 2), stride=1 + i % 2, groups=groups)
        g = rng.standard_normal(fastconv.conv_output_shape(x.shape, w.shape, **kw)).astype(dtype)
        problems.append((x, w, b, g, kw))
    serial = [_single(p) for p in problems]
    for (x, w, b, g, kw), results in zip(problems, serial):
        expected = (_reference_forward(x, w, b, kw),) + conv2d_backward_ref(
            g, x, w, *_ref_args(x, w, kw)
        )
        tol = dict(rtol=1e-4, atol=1e-4) if x.dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
        for got, want in zip(results, expected):
            np.testing.assert_allclose(got, want, **tol)

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
        for repeat in results[i]:
            for r, s in zip(repeat, serial[i]):
                # same shapes, same thread count: the deterministic kernels give the same bits
                np.testing.assert_array_equal(r, s, err_msg=f"thread {i}")


def _single(problem):
    x, w, b, g, kw = problem
    return (fastconv.conv2d(x, w, b, **kw),) + fastconv.conv2d_backward(g, x, w, **kw)


def test_blas_threads_restored(rng):
    """BLAS is held to one thread only while a kernel runs; afterwards its setting is back."""
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [
            (i["filepath"], i["num_threads"])
            for i in threadpoolctl.threadpool_info()
            if i["user_api"] == "blas"
        ]

    before = blas_threads()
    x = rng.standard_normal((2, 8, 10, 10))
    w = rng.standard_normal((4, 8, 3, 3))
    y = fastconv.conv2d(x, w, padding=1)
    fastconv.conv2d_backward(y, x, w, padding=1)
    with pytest.raises(ValueError):
        fastconv.conv2d(x, w, padding=-1)
    assert blas_threads() == before
