"""Regression tests for the holes a 14,000-case fuzz found (issue 15): each failed before its fix."""

import gzip
import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from reference import conv2d_ref

import fastconv
from fastconv import _atomic
from fastconv.datasets import DatasetError, read_idx


# ----------------------------------------------------------------- softmax with a shared offset
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_large_shared_offset_keeps_log_s(dtype):
    logits = np.array([[1e8, 1e8]], dtype)
    loss, log_probs = fastconv.softmax_cross_entropy(logits, np.array([0]))
    grad = fastconv.softmax_cross_entropy_backward(log_probs, np.array([0]))
    np.testing.assert_allclose(float(loss), np.log(2), rtol=1e-6)
    np.testing.assert_allclose(grad, [[-0.5, 0.5]], rtol=1e-6)


@pytest.mark.parametrize(
    "dtype, offset", [(np.float32, 1e4), (np.float32, 1e6), (np.float64, 1e13), (np.float64, 1e15)]
)
def test_softmax_gradient_exact_beside_offset(dtype, offset):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((16, 10))
    logits = (base + offset).astype(dtype)
    labels = rng.integers(0, 10, 16)
    # The reference works on the stored values, relative to each row's maximum (exact in float64).
    rel = logits.astype(np.float64) - logits.astype(np.float64).max(axis=1, keepdims=True)
    p = np.exp(rel) / np.exp(rel).sum(axis=1, keepdims=True)
    expected = (p - np.eye(10)[labels]) / 16
    _, log_probs = fastconv.softmax_cross_entropy(logits, labels)
    grad = fastconv.softmax_cross_entropy_backward(log_probs, labels)
    err = np.abs(grad - expected).max() / np.abs(expected).max()
    assert err < (1e-6 if dtype == np.float32 else 1e-13), err


# ------------------------------------------------- padding that no output reads costs nothing
_PEAK_SCRIPT = textwrap.dedent("""
    import resource, sys, numpy as np, fastconv
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pad, stride, groups = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    w = rng.standard_normal((8, 2 // groups, 3, 3)).astype(np.float32)
    y = fastconv.conv2d(x, w, padding=pad, stride=stride, groups=groups)
    g = fastconv.conv2d_backward(np.ones_like(y), x, w, padding=pad, stride=stride, groups=groups)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    np.savez(sys.argv[4], y=y, gx=g[0], gw=g[1])
    print(grown)
""")


@pytest.mark.parametrize("pad, stride", [(20000, 20000), (30000, 30000), (30000, 1)])
@pytest.mark.parametrize("groups", [1, 2])
def test_huge_padding_bounded_memory_and_right(tmp_path, pad, stride, groups):
    out = tmp_path / "r.npz"
    if stride == 1:  # a huge output is what was asked for: use a smaller pad, still >> input
        pad = 300
    run = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(pad), str(stride), str(groups), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    grown_kib = int(run.stdout.split()[-1])
    OH = (4 + 2 * pad - 3) // stride + 1
    output_kib = 8 * OH * OH * 4 * 3 / 1024  # y, its gradient, and a copy
    assert grown_kib < 64 * 1024 + 4 * output_kib, grown_kib
    r = np.load(out)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 4, 4))
    w = rng.standard_normal((8, 2 // groups, 3, 3))
    if stride > 1:
        # Only the centre output reads the input, at rows/columns 0..2; the rest is padding.
        expected = np.zeros((1, 8, OH, OH))
        expected[:, :, 1, 1] = conv2d_ref(x, w, groups=groups)[:, :, 0, 0]
    else:
        expected = conv2d_ref(x, w, pad=(pad,) * 4, groups=groups)
    np.testing.assert_allclose(r["y"], expected, rtol=1e-4, atol=1e-4)
    assert np.isfinite(r["gx"]).all() and np.isfinite(r["gw"]).all()


# ---------------------------------------------------------------------- thread count bounds
@pytest.mark.parametrize("n", [2**31, 2**63, fastconv._backend.cpu.threads.MAX_THREADS + 1, 0, -1])
def test_set_num_threads_out_of_range(n):
    before = fastconv.get_num_threads()
    with pytest.raises(ValueError, match=r"\bn\b must be in \[1, "):
        fastconv.set_num_threads(n)
    assert fastconv.get_num_threads() == before
    x = np.ones((1, 1, 4, 4), np.float32)
    assert fastconv.conv2d(x, np.ones((1, 1, 3, 3), np.float32)).shape == (1, 1, 2, 2)


# ---------------------------------------------------------- errors that name their argument
def test_linear_backward_needs_not_iterable():
    x, w = np.ones((2, 3)), np.ones((4, 3))
    with pytest.raises(TypeError, match=r"\bneeds\b"):
        fastconv.linear_backward(np.ones((2, 4)), x, w, needs=5)
    with pytest.raises(ValueError, match=r"\bneeds\b"):
        fastconv.linear_backward(np.ones((2, 4)), x, w, needs=("input", 3))


@pytest.mark.parametrize("grad_loss", ["abc", None, [1.0, 2.0], 1j, True, object()])
def test_softmax_backward_grad_loss_type(grad_loss):
    _, log_probs = fastconv.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(TypeError, match=r"\bgrad_loss\b"):
        fastconv.softmax_cross_entropy_backward(log_probs, np.array([0, 1]), grad_loss)


@pytest.mark.parametrize("grad_loss", [2, 2.0, np.float32(2), np.array(2.0)])
def test_softmax_backward_grad_loss_real(grad_loss):
    _, log_probs = fastconv.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]))
    g = fastconv.softmax_cross_entropy_backward(log_probs, np.array([0, 1]), grad_loss)
    np.testing.assert_allclose(g[0], [(1 / 3 - 1), 1 / 3, 1 / 3])  # 2 / N = 1


@pytest.mark.parametrize("stride", [2**63, 2**64 + 5, (1, 2**70)])
def test_pool_huge_stride_is_one_window(stride):
    x = np.arange(2 * 3 * 5 * 6, dtype=np.float64).reshape(2, 3, 5, 6)
    y, idx = fastconv.max_pool2d(x, 2, stride=stride, return_indices=True)
    sh, sw = (stride, stride) if np.ndim(stride) == 0 else stride
    expected = fastconv.max_pool2d(x, 2, stride=(min(sh, 5), min(sw, 6)))
    np.testing.assert_array_equal(y, expected)
    gx = fastconv.max_pool2d_backward(np.ones_like(y), idx, x.shape)
    assert gx.sum() == y.size
    a = fastconv.avg_pool2d(x, 2, stride=stride)
    assert a.shape == y.shape
    ga = fastconv.avg_pool2d_backward(np.ones_like(a), x.shape, 2, stride=stride)
    assert ga.sum() == pytest.approx(a.size)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: fastconv.conv_output_shape((1, 1, 0, 4), (1, 1, 1, 1)), "input_shape"),
        (lambda: fastconv.conv_output_shape((1, 1, 4, 4), (0, 1, 1, 1)), "weight_shape"),
        (lambda: fastconv.conv_output_shape((1, 1, 2, 2), (1, 1, 3, 3)), "input_shape"),
        (
            lambda: fastconv.conv2d_grad_input(
                np.ones((1, 1, 1, 1)), np.ones((1, 1, 3, 3)), (1, 1, 2, 3)
            ),
            "input_shape",
        ),
        (
            lambda: fastconv.conv2d_grad_weight(
                np.ones((1, 1, 1, 1)), np.ones((1, 1, 3, 3)), (1, 1, 0, 3)
            ),
            "weight_shape",
        ),
        (lambda: fastconv.conv2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3))), "x"),
        (lambda: fastconv.conv2d(np.ones((1, 0, 2, 2)), np.ones((1, 0, 3, 3))), "x"),
        (lambda: fastconv.max_pool2d(np.ones((1, 1, 1, 1)), 2), "x"),
        (
            lambda: fastconv.avg_pool2d_backward(np.ones((1, 1, 1, 1)), (1, 1, 1, 1), 2),
            "input_shape",
        ),
    ],
)
def test_geometry_errors_name_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"(?<![\w.]){name}(?![\w])"):
        call()


# ------------------------------------------------------------------------------ gzip bomb
def _idx_header(dims):
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)


def test_gzip_bomb_stops_at_declared_size(tmp_path):
    path = tmp_path / "bomb.gz"
    # 64 MiB of zeros after a header that promises 10x28x28 bytes: about 64 KiB compressed.
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(_idx_header((10, 28, 28)))
        zeros = bytes(1 << 20)
        for _ in range(64):
            f.write(zeros)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="trailing bytes"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak  # one 4 MiB read chunk at most, never the 64 MiB


def test_header_claiming_terabytes_is_truncated_not_memoryerror(tmp_path):
    for name, opener in (("raw.idx", open), ("c.gz", gzip.open)):
        path = tmp_path / name
        with opener(path, "wb") as f:
            f.write(_idx_header((1 << 20, 1 << 10, 1 << 10)) + b"\x00" * 100)
        with pytest.raises(DatasetError, match="truncated"):
            read_idx(path)


# ----------------------------------------------------------- kill -9 leaves no debris for long
_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from fastconv._atomic import atomic_write
    with atomic_write(sys.argv[1]) as f:
        f.write(b"x" * 100000)
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
""")


@pytest.mark.skipif(os.name != "posix", reason="stale files are recognised by pid on POSIX")
def test_killed_save_debris_removed_by_next_save(tmp_path):
    target = tmp_path / "model.npz"
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILLED_WRITER, str(target)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    debris = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(debris) == 1  # each killed writer's file was removed by the next writer
    # A live writer's temporary file and another target's are not touched.
    live = tmp_path / f".model.npz.{_atomic._owner_tag()}.keep.tmp"
    live.write_bytes(b"live")
    other = tmp_path / ".other.npz.somehost-1.abc.tmp"
    other.write_bytes(b"other")
    _atomic.save_npz_atomic(target, a=np.arange(3))
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([target.name, live.name, other.name]), left
    np.testing.assert_array_equal(np.load(target)["a"], np.arange(3))
