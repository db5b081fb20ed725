"""The planner: which algorithm each pass takes, the public way to see it, and forcing one."""

import numpy as np
import pytest
from reference import conv2d_backward_ref, conv2d_ref

import fastconv
import fastconv.nn
from fastconv._kernels import conv as conv_kernels
from fastconv._kernels import direct as direct_kernels

SIMD = direct_kernels.level() > 0


def test_plan_matches_known_choices():
    # LeNet-5: conv1 (C=1, 6 filters) and conv2 (16 filters of 6x5x5) on the direct kernels,
    # C5 (a 5x5 kernel over a 5x5 input) as one matrix product.
    direct = "direct" if SIMD else "gemm"
    conv1 = fastconv.conv2d_plan((64, 1, 32, 32), (6, 1, 5, 5))
    assert conv1["forward"] == direct and conv1["grad_weight"] == direct
    assert fastconv.conv2d_plan((64, 6, 14, 14), (16, 6, 5, 5))["forward"] == direct
    assert set(fastconv.conv2d_plan((64, 16, 5, 5), (120, 16, 5, 5)).values()) == {"matmul"}
    assert set(
        fastconv.conv2d_plan((8, 32, 20, 20), (32, 1, 3, 3), padding=1, groups=32).values()
    ) == {"depthwise"}
    wide = fastconv.conv2d_plan((8, 256, 14, 14), (256, 256, 3, 3), stride=2, padding=1)
    assert wide == {"forward": "gemm", "grad_input": "gemm", "grad_weight": "gemm"}


def test_wide_grad_weight_takes_direct_at_every_simd_level():
    """64 filters of 7x7 on RGB: direct for the forward pass and grad-weight at any SIMD level
    (with AVX-512 the grad-weight measured 0.72-0.95x GEMM's time, planner.py); GEMM without
    SIMD."""
    plan = fastconv.conv2d_plan((8, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3)
    assert plan["forward"] == ("direct" if SIMD else "gemm")
    assert plan["grad_weight"] == ("direct" if SIMD else "gemm")


@pytest.mark.skipif(direct_kernels.detected_level() < 2, reason="needs AVX-512")
def test_avx512_thresholds_leave_avx2_as_measured(request):
    """The AVX-512 measurements change nothing with AVX2: 64-filter grad-weight stays direct,
    32-channel 3x3 stays off Winograd."""
    previous = direct_kernels.set_level(1)
    request.addfinalizer(lambda: direct_kernels.set_level(previous))
    wide = fastconv.conv2d_plan((8, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3)
    assert wide["grad_weight"] == "direct"
    few = fastconv.conv2d_plan((8, 32, 56, 56), (32, 32, 3, 3), padding=1)
    assert few["forward"] != "winograd" and few["grad_input"] != "winograd"
    direct_kernels.set_level(2)
    few = fastconv.conv2d_plan((8, 32, 56, 56), (32, 32, 3, 3), padding=1)
    assert few["forward"] == few["grad_input"] == "winograd"


@pytest.mark.skipif(direct_kernels.detected_level() < 2, reason="needs AVX-512")
def test_avx512_grad_weight_takes_direct_where_measured(request):
    """With AVX-512, up to 128 float32 filters of >= 256 taps with N*OH*OW >= 4 * taps take the
    direct grad-weight (the stride-2 3x3 and the 1x1 of bench_conv.py's suite); outside that
    (few products per tap, 256 filters, float64, dilation, AVX2) GEMM stays."""
    previous = direct_kernels.set_level(2)
    request.addfinalizer(lambda: direct_kernels.set_level(previous))
    s2 = dict(stride=2, padding=1)
    assert fastconv.conv2d_plan((8, 64, 56, 56), (128, 64, 3, 3), **s2)["grad_weight"] == "direct"
    assert fastconv.conv2d_plan((8, 256, 56, 56), (64, 256, 1, 1))["grad_weight"] == "direct"
    for x_shape, w_shape, kwargs in [
        ((8, 128, 28, 28), (128, 128, 3, 3), s2),  # 8 * 14 * 14 < 4 * 1152
        ((8, 256, 28, 28), (256, 256, 1, 1), {}),  # 256 filters
        ((8, 64, 56, 56), (128, 64, 3, 3), dict(s2, dtype=np.float64)),
        ((8, 64, 56, 56), (128, 64, 3, 3), dict(s2, dilation=2)),
    ]:
        assert fastconv.conv2d_plan(x_shape, w_shape, **kwargs)["grad_weight"] == "gemm"
    direct_kernels.set_level(1)
    assert fastconv.conv2d_plan((8, 64, 56, 56), (128, 64, 3, 3), **s2)["grad_weight"] == "gemm"


def test_algorithms_lists_what_runs():
    algs = fastconv.conv2d_algorithms((2, 4, 9, 9), (8, 4, 3, 3), stride=2)
    assert algs["forward"][0] == "gemm" and "gemm" in algs["grad_input"]
    assert "direct" not in algs["grad_input"]  # the flipped forward needs stride 1
    assert ("direct" in algs["forward"]) is SIMD


@pytest.mark.parametrize("algorithm", ["winograd", "fft", "matmul", "depthwise"])
def test_forcing_what_cannot_run_names_the_algorithm(algorithm):
    x = np.ones((1, 4, 6, 6), np.float32)
    w = np.ones((8, 2, 3, 3), np.float32)  # groups=2, stride 2: none of these apply
    can = fastconv.conv2d_algorithms(x.shape, w.shape, stride=2, groups=2)
    if algorithm in can["forward"]:
        pytest.skip(f"{algorithm} runs this convolution")
    with pytest.raises(ValueError, match=rf"algorithm '{algorithm}' cannot compute the forward"):
        fastconv.conv2d(x, w, stride=2, groups=2, algorithm=algorithm)
    with pytest.raises(ValueError, match=rf"algorithm '{algorithm}'"):
        fastconv.conv2d_plan(x.shape, w.shape, stride=2, groups=2, algorithm=algorithm)


@pytest.mark.parametrize("bad, exc", [("nope", ValueError), (3, TypeError), (None, TypeError)])
def test_unknown_algorithm(bad, exc):
    x, w = np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3))
    for call in (
        lambda: fastconv.conv2d(x, w, algorithm=bad),
        lambda: fastconv.conv2d_backward(np.ones((1, 1, 2, 2)), x, w, algorithm=bad),
        lambda: fastconv.conv2d_plan(x.shape, w.shape, algorithm=bad),
        lambda: fastconv.nn.Conv2D(1, 1, 3, algorithm=bad),
    ):
        with pytest.raises(exc, match=r"\balgorithm\b"):
            call()


def test_plan_arguments_are_checked():
    with pytest.raises(ValueError, match=r"\bdevice\b"):
        fastconv.conv2d_plan((1, 1, 4, 4), (1, 1, 3, 3), device="tpu")
    with pytest.raises(TypeError, match=r"\bdtype\b"):
        fastconv.conv2d_plan((1, 1, 4, 4), (1, 1, 3, 3), dtype="not a dtype")
    with pytest.raises(ValueError, match=r"\binput_shape\b"):
        fastconv.conv2d_plan((1, 1, 2, 2), (1, 1, 3, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [False, True])
def test_matmul_algorithm_against_reference(dtype, relu, rng, assert_close):
    x = rng.standard_normal((5, 16, 5, 4)).astype(dtype)
    w = rng.standard_normal((12, 16, 5, 4)).astype(dtype)
    b = rng.standard_normal(12).astype(dtype)
    expected = conv2d_ref(x, w, b)
    y = fastconv.conv2d(x, w, b, activation="relu" if relu else None, algorithm="matmul")
    assert_close(y, np.maximum(expected, 0) if relu else expected, dtype, 16 * 20)
    g = rng.standard_normal(y.shape).astype(dtype)
    gx, gw, gb = fastconv.conv2d_backward(g, x, w, algorithm="matmul")
    rx, rw, rb = conv2d_backward_ref(g, x, w)
    assert_close(gx, rx, dtype, 12)
    assert_close(gw, rw, dtype, 5)
    assert_close(gb, rb, dtype, 5)


def test_conv2d_layer_passes_its_algorithm(rng):
    layer = fastconv.nn.Conv2D(3, 4, 3, padding=1, algorithm="gemm", rng=0)
    assert "algorithm='gemm'" in repr(layer)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(
        layer.forward(x),
        fastconv.conv2d(x, layer.weight.data, layer.bias.data, padding=1, algorithm="gemm"),
    )


def test_large_kernels_take_fft_and_match_the_reference(rng, assert_close):
    plan = fastconv.conv2d_plan((1, 1, 64, 64), (1, 1, 21, 21), padding=10)
    assert plan == {"forward": "fft", "grad_input": "fft", "grad_weight": "fft"}
    assert fastconv.conv2d_plan((8, 64, 56, 56), (64, 64, 3, 3), padding=1)["forward"] != "fft"
    x = rng.standard_normal((2, 3, 30, 27)).astype(np.float32)
    w = rng.standard_normal((4, 3, 11, 9)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    kw = dict(padding=((5, 3), (4, 4)), algorithm="fft")
    y = fastconv.conv2d(x, w, b, activation="relu", **kw)
    expected = conv2d_ref(x, w, b, pad=(5, 3, 4, 4))
    assert np.abs(y - np.maximum(expected, 0)).max() <= 1e-5 * np.abs(expected).max()
    g = rng.standard_normal(y.shape).astype(np.float32)
    for got, ref in zip(
        fastconv.conv2d_backward(g, x, w, **kw), conv2d_backward_ref(g, x, w, pad=(5, 3, 4, 4))
    ):
        assert np.abs(got - ref).max() <= 5e-5 * np.abs(ref).max()


@pytest.mark.parametrize("where", ["x", "weight"])
def test_transforms_keep_numpy_inf_semantics(where, rng):
    """One inf spreads over a whole FFT plane as NaN; the backend computes such inputs on an
    exact path, so inf and NaN land where the reference puts them."""
    x = rng.standard_normal((1, 2, 32, 32))
    w = rng.standard_normal((3, 2, 9, 9))
    (x if where == "x" else w)[0, 1, 5, 5] = np.inf
    y = fastconv.conv2d(x, w, padding=4, algorithm="fft")
    with np.errstate(invalid="ignore"):
        expected = conv2d_ref(x, w, pad=(4, 4, 4, 4))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(expected))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dilated_kernel_of_the_input_size_is_not_a_matmul(dtype, assert_close):
    # A 2x1 kernel at dilation 2 on a 2-row input reads row 2, the bottom padding: no dense
    # layer (the plan's padding holds top/left only). It once gave x[0] + 11 x[1] = 35.
    x = np.array([2.0, 3.0], dtype).reshape(1, 1, 2, 1)
    w = np.array([1.0, 11.0], dtype).reshape(1, 1, 2, 1)
    kwargs = dict(dilation=(2, 1), padding=((0, 1), (0, 0)))
    for pass_, names in fastconv.conv2d_algorithms(x.shape, w.shape, dtype=dtype, **kwargs).items():
        assert "matmul" not in names, pass_
    y = fastconv.conv2d(x, w, **kwargs)
    np.testing.assert_array_equal(y.ravel(), [2.0])
    g = np.ones_like(y)
    gx, gw, _ = fastconv.conv2d_backward(g, x, w, **kwargs)
    rx, rw, _ = conv2d_backward_ref(g, x, w, pad=(0, 1, 0, 0), dilation=(2, 1))
    assert_close(gx, rx, dtype, 2)
    assert_close(gw, rw, dtype, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_kernel(dtype):
    """The finiteness check behind for_operands (_kernels.conv.all_finite): an inf, -inf or NaN
    anywhere (chunk edges included) at 1, 2 and 3 threads; the largest finite values,
    subnormals and -0.0 are finite; an empty array is."""
    n = 3 * 262144 + 5  # FINITE_CHUNK elements per chunk: four chunks, the last partial
    finite = np.array([np.finfo(dtype).max, -np.finfo(dtype).max, np.finfo(dtype).tiny / 2, -0.0])
    a = np.resize(finite.astype(dtype), n)
    for threads in (1, 2, 3):
        assert conv_kernels.all_finite(a, threads)
        assert conv_kernels.all_finite(a[:0], threads)
    for value in (np.inf, -np.inf, np.nan):
        for position in (0, 262143, 262144, n - 1):
            b = a.copy()
            b[position] = value
            for threads in (1, 2, 3):
                assert not conv_kernels.all_finite(b, threads), (value, position, threads)
