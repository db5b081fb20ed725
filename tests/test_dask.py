"""fastconv on Dask arrays: lazy results equal to the in-memory calls, whatever the chunks."""

import numpy as np
import pytest

import fastconv

da = pytest.importorskip("dask.array")

CONV_CASES = [  # (x shape, x chunks, weight shape, kwargs)
    ((5, 6, 23, 19), (2, 6, 7, 6), (8, 6, 3, 3), dict(padding=1)),
    ((3, 4, 17, 16), (3, 4, 5, 16), (6, 4, 3, 2), dict(padding="same", stride=2)),
    (
        (2, 3, 21, 18),
        (1, 3, 8, 5),
        (4, 3, 3, 3),
        dict(padding=((2, 0), (1, 3)), stride=(2, 3), dilation=2),
    ),
    ((2, 8, 12, 12), (2, 3, 12, 5), (8, 8, 5, 5), dict(padding=2)),  # C chunks: partial sums
    ((2, 6, 11, 13), (1, 4, 6, 6), (9, 2, 3, 3), dict(padding=1, groups=3)),  # group-aligned
    ((1, 4, 9, 9), (1, 1, 4, 4), (4, 1, 3, 3), dict(padding=(0, 2), groups=4)),  # depthwise
    ((1, 2, 4, 4), (1, 2, 2, 2), (3, 2, 3, 3), dict(padding=7, stride=5)),  # blocks of padding
]
IDS = ["halo", "same_s2", "asym_dil", "c_chunks", "groups", "depthwise", "only_padding"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, chunks, w_shape, kwargs", CONV_CASES, ids=IDS)
def test_conv_forward_and_gradients_match_in_memory(shape, chunks, w_shape, kwargs, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    xd = da.from_array(x, chunks=chunks)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for activation in (None, "relu"):
        y = fastconv.conv2d(xd, w, b, activation=activation, **kwargs)
        expected = fastconv.conv2d(x, w, b, activation=activation, **kwargs)
        assert isinstance(y, da.Array) and y.shape == expected.shape and y.dtype == dtype
        assert type(y._meta) is np.ndarray
        np.testing.assert_allclose(y.compute(), expected, **tol)
    g = rng.standard_normal(expected.shape).astype(dtype)
    gd = da.from_array(g, chunks=(1,) + g.shape[1:2] + (4, 3))
    got = fastconv.conv2d_backward(gd, xd, w, **kwargs)
    want = fastconv.conv2d_backward(g, x, w, **kwargs)
    for a, e, name in zip(got, want, ("grad_input", "grad_weight", "grad_bias")):
        assert isinstance(a, da.Array) and a.shape == e.shape and a.dtype == dtype, name
        np.testing.assert_allclose(a.compute(), e, err_msg=name, **tol)
    assert got[0].chunks == xd.chunks  # grad_input is chunked like x


def test_single_gradients_and_dask_weight():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 10, 9))
    w = rng.standard_normal((5, 3, 3, 3))
    g = rng.standard_normal((4, 5, 10, 9))
    xd, gd = da.from_array(x, chunks=(2, 3, 4, 4)), da.from_array(g, chunks=(1, 5, 10, 9))
    np.testing.assert_allclose(
        fastconv.conv2d_grad_input(gd, da.from_array(w), x.shape, padding=1).compute(),
        fastconv.conv2d_grad_input(g, w, x.shape, padding=1),
        rtol=1e-12,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        fastconv.conv2d_grad_weight(g, xd, w.shape, padding=1).compute(),
        fastconv.conv2d_grad_weight(g, x, w.shape, padding=1),
        rtol=1e-12,
        atol=1e-12,
    )


def test_errors_as_in_memory():
    xd = da.zeros((2, 3, 8, 8), chunks=(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\bweight\b"):
        fastconv.conv2d(xd, np.zeros((4, 2, 3, 3)))
    with pytest.raises(TypeError, match=r"\bout=.*Dask"):
        fastconv.conv2d(xd, np.zeros((4, 3, 3, 3)), out=np.zeros((2, 4, 6, 6)))


@pytest.mark.parametrize(
    "x, w, kwargs, expected",
    [  # the reports: a block of padding only once took padding of its own (one row too many)
        ([1.0, 2.0, 3.0], [1.0, 11.0], dict(dilation=(2, 1), padding=(1, 0)), [22.0, 34.0, 2.0]),
        ([1.0, 2.0], [1.0], dict(stride=(2, 1), padding=(3, 0)), [0.0, 0.0, 2.0, 0.0]),
    ],
)
def test_one_row_chunks_with_padding_stride_dilation(x, w, kwargs, expected):
    x = np.array(x).reshape(1, 1, -1, 1)
    w = np.array(w).reshape(1, 1, -1, 1)
    y = fastconv.conv2d(da.from_array(x, chunks=1), w, **kwargs)
    assert y.shape == (1, 1, len(expected), 1)
    np.testing.assert_array_equal(y.compute().ravel(), expected)
    np.testing.assert_array_equal(fastconv.conv2d(x, w, **kwargs).ravel(), expected)


def _chunking(size, rng):
    """A random split of `size` cells, one-cell chunks often."""
    if rng.random() < 0.4:
        return (1,) * size
    cuts = sorted(set(rng.integers(1, size, rng.integers(0, size)).tolist())) if size > 1 else []
    return tuple(np.diff([0, *cuts, size]).tolist())


def test_small_chunks_equal_the_in_memory_call():
    """Chunks of 1-3 rows and columns with padding, stride >= 2 and dilation >= 2: the lazy
    shape is the computed one and the values are the in-memory call's (tests/fuzz.py draws
    thousands more)."""
    rng = np.random.default_rng(3)
    for _ in range(40):
        H, W, KH, KW = (int(v) for v in rng.integers(1, 6, 4))
        kwargs = dict(
            stride=tuple(int(v) for v in rng.integers(1, 4, 2)),
            dilation=tuple(int(v) for v in rng.integers(1, 4, 2)),
            padding=tuple(int(v) for v in rng.integers(0, 5, 2)),
        )
        try:
            shape = fastconv.conv_output_shape((1, 2, H, W), (3, 2, KH, KW), **kwargs)
        except ValueError:
            continue
        x = rng.standard_normal((1, 2, H, W))
        w = rng.standard_normal((3, 2, KH, KW))
        xd = da.from_array(x, chunks=((1,), (2,), _chunking(H, rng), _chunking(W, rng)))
        y = fastconv.conv2d(xd, w, **kwargs)
        assert y.shape == shape, kwargs
        np.testing.assert_allclose(y.compute(), fastconv.conv2d(x, w, **kwargs), rtol=1e-12)
        g = rng.standard_normal(shape)
        got = fastconv.conv2d_backward(da.from_array(g, chunks=1), xd, w, **kwargs)
        for a, e in zip(got, fastconv.conv2d_backward(g, x, w, **kwargs)):
            assert a.shape == e.shape
            np.testing.assert_allclose(a.compute(), e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", [0, 1])
def test_pooling(padding):
    rng = np.random.default_rng(2)
    x = rng.integers(-3, 4, (3, 4, 13, 11)).astype(np.float32)
    xd = da.from_array(x, chunks=(2, 3, 5, 4))
    y, idx = fastconv.max_pool2d(xd, 3, 2, padding, return_indices=True)
    ey, eidx = fastconv.max_pool2d(x, 3, 2, padding, return_indices=True)
    np.testing.assert_array_equal(y.compute(), ey)
    np.testing.assert_array_equal(idx.compute(), eidx)
    g = rng.standard_normal(ey.shape).astype(np.float32)
    gd = da.from_array(g, chunks=(1, 2, 3, 3))
    np.testing.assert_array_equal(
        fastconv.max_pool2d_backward(gd, idx, x.shape).compute(),
        fastconv.max_pool2d_backward(g, eidx, x.shape),
    )
    np.testing.assert_array_equal(
        fastconv.max_pool2d(xd, 3, 2, padding, ceil_mode=True).compute(),
        fastconv.max_pool2d(x, 3, 2, padding, ceil_mode=True),
    )
    a = fastconv.avg_pool2d(xd, 2, padding=padding, count_include_pad=False)
    np.testing.assert_allclose(
        a.compute(), fastconv.avg_pool2d(x, 2, padding=padding, count_include_pad=False)
    )
    ga = fastconv.avg_pool2d(x, 2, padding=padding)
    gad = da.from_array(np.ones_like(ga), chunks=(2, 2, 3, 3))
    np.testing.assert_allclose(
        fastconv.avg_pool2d_backward(gad, x.shape, 2, padding=padding).compute(),
        fastconv.avg_pool2d_backward(np.ones_like(ga), x.shape, 2, padding=padding),
    )


def test_dense_ops():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((37, 20)), rng.standard_normal((7, 20)), rng.standard_normal(7)
    labels = rng.integers(0, 7, 37)
    xd, ld = da.from_array(x, chunks=(10, 6)), da.from_array(labels, chunks=9)
    y = fastconv.linear(xd, w, b, activation="relu")
    np.testing.assert_allclose(y.compute(), fastconv.linear(x, w, b, activation="relu"))
    g = rng.standard_normal((37, 7))
    for a, e in zip(
        fastconv.linear_backward(da.from_array(g, chunks=(5, 7)), xd, w),
        fastconv.linear_backward(g, x, w),
    ):
        np.testing.assert_allclose(a.compute(), e, rtol=1e-12, atol=1e-12)
    z = fastconv.linear(x, w)
    loss, lp = fastconv.softmax_cross_entropy(da.from_array(z, chunks=(8, 7)), ld)
    eloss, elp = fastconv.softmax_cross_entropy(z, labels)
    np.testing.assert_allclose(loss.compute(), eloss, rtol=1e-12)
    np.testing.assert_allclose(lp.compute(), elp, rtol=1e-12)
    np.testing.assert_allclose(
        fastconv.softmax_cross_entropy_backward(lp, ld, 2.0).compute(),
        fastconv.softmax_cross_entropy_backward(elp, labels, 2.0),
        rtol=1e-12,
        atol=1e-15,
    )
    np.testing.assert_array_equal(
        fastconv.relu_backward(da.from_array(g, chunks=5), z).compute(),
        fastconv.relu_backward(g, z),
    )


def test_lenet_inference_on_dask_array():
    from fastconv.lenet.model import LeNet5

    model = LeNet5(seed=0)
    model.eval()
    x = np.random.default_rng(4).standard_normal((50, 1, 32, 32)).astype(np.float32)
    lazy = model.predict(da.from_array(x, chunks=(16, 1, 32, 32)))
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), model.predict(x))


def test_tasks_share_the_cores():
    """Under the threaded scheduler each task's kernels get a share of the threads."""
    from fastconv._backend.dask import _common

    seen = []

    def probe(block):
        seen.append(fastconv.get_num_threads())
        return block

    total = fastconv.get_num_threads()
    with __import__("dask").config.set(num_workers=2):
        da.ones((8,), chunks=1).map_blocks(_common._in_task(probe), meta=np.empty(0)).compute(
            scheduler="threads"
        )
    assert seen and max(seen) == max(1, total // 2)
    assert fastconv.get_num_threads() == total  # nothing leaks out of the tasks


@pytest.mark.slow
def test_distributed_local_cluster():
    """Every geometry of CONV_CASES (N, H/W and C chunks; stride, dilation, 'same' and asymmetric
    padding; chunks that do not divide the output), float32 and float64, forward and all
    gradients, plus LeNet-5 inference, computed by a real 2-process cluster."""
    distributed = pytest.importorskip("distributed")
    from fastconv.lenet.model import LeNet5

    rng = np.random.default_rng(5)
    lazy, want = [], []
    for dtype in (np.float32, np.float64):
        for shape, chunks, w_shape, kwargs in CONV_CASES:
            x = rng.standard_normal(shape).astype(dtype)
            w = rng.standard_normal(w_shape).astype(dtype)
            b = rng.standard_normal(w_shape[0]).astype(dtype)
            xd = da.from_array(x, chunks=chunks)
            y = fastconv.conv2d(x, w, b, **kwargs)
            g = rng.standard_normal(y.shape).astype(dtype)
            gd = da.from_array(g, chunks=(1,) + g.shape[1:2] + (4, 3))
            lazy += [
                fastconv.conv2d(xd, w, b, **kwargs),
                *fastconv.conv2d_backward(gd, xd, w, **kwargs),
            ]
            want += [y, *fastconv.conv2d_backward(g, x, w, **kwargs)]
    model = LeNet5(seed=0)
    model.eval()
    images = rng.standard_normal((70, 1, 32, 32)).astype(np.float32)
    lazy.append(model.predict(da.from_array(images, chunks=(16, 1, 32, 32))))
    want.append(model.predict(images))
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster, distributed.Client(cluster) as client:
        got = client.compute(lazy, sync=True)
        threads = client.run(lambda: __import__("fastconv").get_num_threads())
    for a, e in zip(got, want):
        # Block sums add in another order than the whole-array call: float32 rounding relative
        # to the largest value (grad-weight sums reach ~100 here).
        scale = max(1.0, float(np.abs(e).max()))
        eps = 2e-5 if e.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(a, e, rtol=eps, atol=eps * scale)
    np.testing.assert_array_equal(got[-1], want[-1])  # the same predictions
    assert set(threads.values()) == {1}  # workers x threads x OpenMP threads <= cores


_DASK_PEAK_SCRIPT = """
import resource
import dask, dask.array as da, numpy as np, fastconv
w = np.random.default_rng(0).standard_normal((8, 8, 3, 3)).astype(np.float32)
def images(n):
    x = da.random.default_rng(1).standard_normal((n, 8, 256, 256), chunks=(1, 8, 256, 256))
    return x.astype(np.float32)
with dask.config.set(scheduler="threads", num_workers=2):
    fastconv.conv2d(images(4), w, padding=1).sum().compute()  # warm-up: imports, pools
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # 128 MiB of input and as much output, 2 MiB per block
    total = fastconv.conv2d(images(64), w, padding=1).sum().compute()
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
assert np.isfinite(total)
print(grown // 1024)
"""


def test_tasks_hold_a_few_blocks_never_the_array(tmp_path):
    """benchmarks/README.md's Dask promise: peak memory of a few blocks per worker, never the array."""
    import subprocess
    import sys

    run = subprocess.run(  # not from the checkout: `python -c` would import its unbuilt fastconv/
        [sys.executable, "-c", _DASK_PEAK_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    grown_mib = int(run.stdout.split()[-1])
    assert grown_mib <= 64, f"computing 128 MiB of blocks grew the peak RSS by {grown_mib} MiB"
