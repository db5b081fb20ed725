"""The FFT convolution backend functions (fastconv._backend.cpu.fft) against the float64 reference.

Accuracy bar (issue 8): relative error max|err| / max|ref| <= 1e-5 forward and <= 5e-5 for the
gradients in float32; float64 must be exact to rounding. The functions are called directly with
the backend's arguments (padding (top, left); bottom/right implied by the output size).
"""

import numpy as np
import pytest
from reference import (
    CASES,
    Case,
    case_tblr,
    conv2d_backward_ref,
    conv2d_ref,
    make_inputs,
    output_hw,
)

import fastconv
from fastconv._backend.cpu import fft as _fft_conv

REL_TOL = {
    np.float32: {"forward": 1e-5, "grad": 5e-5},
    np.float64: {"forward": 1e-12, "grad": 1e-12},
}

# Kernels large enough for the FFT path to matter, plus the geometries that stress its circular
# grid: padding larger than the kernel's reach, bottom rows never read, asymmetric padding,
# dilation with groups, strides that drop the last rows.
FFT_CASES = [
    Case("k15_same", 2, 3, 40, 37, 5, 15, 15, 1, "same", 1, 1),
    Case("k9x13_asym", 2, 2, 30, 33, 3, 9, 13, 1, ((2, 7), (11, 0)), 1, 1),
    Case("k11_dil_2x3_groups2", 2, 4, 41, 45, 6, 5, 4, 1, ((4, 9), (6, 2)), (2, 3), 2),
    Case("k21_single_plane", 1, 1, 70, 64, 1, 21, 21, 1, 10, 1, 1),
    Case("k7_stride_3x2_pad", 3, 2, 29, 31, 4, 7, 7, (3, 2), ((5, 1), (2, 6)), 1, 1),
    Case("k8_stride2_drops", 2, 3, 33, 34, 2, 8, 8, 2, 0, 1, 1),
    Case("k5_pad_beyond_reach", 2, 2, 12, 11, 3, 5, 5, 1, ((9, 8), (7, 10)), 1, 1),
    Case("k9_depthwise_dil2", 2, 4, 30, 30, 4, 9, 9, 1, "same", 2, 4),
    Case("many_channels", 2, 12, 20, 21, 10, 7, 6, 1, 3, 1, 1),
]
ALL_CASES = CASES + FFT_CASES


def rel_err(actual, ref):
    ref = np.asarray(ref, dtype=np.float64)
    scale = np.abs(ref).max()
    return float(np.abs(actual.astype(np.float64) - ref).max() / (scale if scale > 0 else 1.0))


def _backend_args(case):
    t, b, l, r = case_tblr(case)
    OH, OW = output_hw(
        (case.H, case.W), (case.KH, case.KW), case.stride, (t, b, l, r), case.dilation
    )
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    return (OH, OW), (pair(case.stride), (t, l), pair(case.dilation), case.groups), (t, b, l, r)


def _inputs(case, dtype, seed=0):
    x, w, b = (a.astype(dtype) for a in make_inputs(case, np.random.default_rng(seed)))
    return x, w, b


def _check_case(case, dtype, relu=False):
    x, w, b = _inputs(case, dtype)
    (OH, OW), (stride, padding, dilation, groups), tblr = _backend_args(case)
    gy = np.random.default_rng(1).standard_normal((case.N, case.F, OH, OW)).astype(dtype)
    tol = REL_TOL[dtype]

    y = np.full((case.N, case.F, OH, OW), np.nan, dtype=dtype)  # garbage must be overwritten
    _fft_conv.conv2d_forward(x, w, b, y, stride, padding, dilation, groups, relu)
    ref = conv2d_ref(x, w, b, case.stride, tblr, case.dilation, case.groups)
    if relu:
        ref = np.maximum(ref, 0)
    assert y.dtype == dtype
    assert rel_err(y, ref) <= tol["forward"], f"forward {rel_err(y, ref):.2e}"

    gx_ref, gw_ref, _ = conv2d_backward_ref(gy, x, w, case.stride, tblr, case.dilation, case.groups)
    gx = np.full(x.shape, np.nan, dtype=dtype)
    _fft_conv.conv2d_grad_input(gy, w, gx, stride, padding, dilation, groups)
    assert rel_err(gx, gx_ref) <= tol["grad"], f"grad_input {rel_err(gx, gx_ref):.2e}"
    gw = np.full(w.shape, np.nan, dtype=dtype)
    _fft_conv.conv2d_grad_weight(gy, x, gw, stride, padding, dilation, groups)
    assert rel_err(gw, gw_ref) <= tol["grad"], f"grad_weight {rel_err(gw, gw_ref):.2e}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_fft_conv_matches_reference(case, dtype):
    _check_case(case, dtype)


@pytest.mark.parametrize("case", FFT_CASES[:3], ids=[c.id for c in FFT_CASES[:3]])
def test_fft_forward_relu(case):
    _check_case(case, np.float32, relu=True)


def test_fft_forward_no_bias_outputs_in_padding_only():
    # Outputs whose window holds only padding must be 0 without bias (y starts as garbage).
    case = Case("pad_only", 1, 2, 6, 6, 3, 3, 3, 1, 5, 1, 1)
    x, w, _ = _inputs(case, np.float32)
    (OH, OW), args, tblr = _backend_args(case)
    y = np.full((1, 3, OH, OW), np.nan, dtype=np.float32)
    _fft_conv.conv2d_forward(x, w, None, y, *args, False)
    ref = conv2d_ref(x, w, None, 1, tblr)
    assert rel_err(y, ref) <= 1e-5
    assert (y[:, :, :3] == 0).all()


def test_large_kernel_float32_accuracy():
    """A 1-image 160x150 plane with a 41x41 kernel and a 3-channel batch with 25x25: the sizes where
    float32 FFT error would show."""
    for case in (
        Case("k41", 1, 1, 160, 150, 1, 41, 41, 1, 20, 1, 1),
        Case("k25_rgb", 2, 3, 96, 90, 4, 25, 25, 1, "valid", 1, 1),
    ):
        _check_case(case, np.float32)


def test_batch_chunks_and_bin_blocks(monkeypatch):
    """Workspace small enough that every image and every filter is its own chunk (grad_weight then
    sums batch chunks, grad_input filter chunks) and the channel sums run in many bin blocks."""
    monkeypatch.setattr(_fft_conv, "_MIN_WORKSPACE", 1)
    monkeypatch.setattr(_fft_conv, "_WORKSPACE_FACTOR", 0)
    monkeypatch.setattr(_fft_conv, "_BLOCK_BYTES", 4096)
    for case in (FFT_CASES[0], FFT_CASES[-1], FFT_CASES[2], FFT_CASES[4]):
        _check_case(case, np.float32)
        _check_case(case, np.float64)


def _all_passes(case, dtype):
    x, w, b = _inputs(case, dtype)
    (OH, OW), args, _ = _backend_args(case)
    gy = np.random.default_rng(1).standard_normal((case.N, case.F, OH, OW)).astype(dtype)
    y = np.empty((case.N, case.F, OH, OW), dtype=dtype)
    gx = np.empty(x.shape, dtype=dtype)
    gw = np.empty(w.shape, dtype=dtype)
    _fft_conv.conv2d_forward(x, w, b, y, *args, True)
    _fft_conv.conv2d_grad_input(gy, w, gx, *args)
    _fft_conv.conv2d_grad_weight(gy, x, gw, *args)
    return y, gx, gw


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_bitwise_identical_for_1_2_3_threads(monkeypatch, dtype):
    # Small bin blocks so that the channel sums really are spread over the threads, and planes big
    # enough for scipy.fft to split its transforms over workers.
    monkeypatch.setattr(_fft_conv, "_BLOCK_BYTES", 16384)
    cases = [
        Case("thr_many_ch", 3, 6, 64, 60, 8, 9, 9, 1, 4, 1, 1),
        Case("thr_one_plane", 1, 1, 200, 180, 1, 21, 21, 1, 10, 1, 1),
        Case("thr_strided_groups", 2, 4, 50, 47, 6, 7, 6, (2, 3), 3, 1, 2),
    ]
    before = fastconv.get_num_threads()
    try:
        for case in cases:
            results = []
            for n in (1, 2, 3):
                fastconv.set_num_threads(n)
                results.append(_all_passes(case, dtype))
            for other in results[1:]:
                for a, b in zip(results[0], other):
                    assert np.array_equal(a, b), case.id
    finally:
        fastconv.set_num_threads(before)


@pytest.mark.parametrize("case", [FFT_CASES[2], FFT_CASES[4]], ids=["dilated_groups", "strided"])
def test_inputs_not_modified(case):
    x, w, b = _inputs(case, np.float32)
    (OH, OW), args, _ = _backend_args(case)
    gy = np.random.default_rng(1).standard_normal((case.N, case.F, OH, OW)).astype(np.float32)
    copies = [a.copy() for a in (x, w, b, gy)]
    y = np.empty((case.N, case.F, OH, OW), dtype=np.float32)
    _fft_conv.conv2d_forward(x, w, b, y, *args, True)
    _fft_conv.conv2d_grad_input(gy, w, np.empty_like(x), *args)
    _fft_conv.conv2d_grad_weight(gy, x, np.empty_like(w), *args)
    for a, c in zip((x, w, b, gy), copies):
        assert np.array_equal(a, c)


def test_fft_shape_is_fast_and_covers_the_kernel():
    L1, L2 = _fft_conv.fft_shape((1024, 1024), (41, 41), (1024, 1024), (1, 1), (20, 20), (1, 1))
    assert L1 >= 1024 + 20 and L2 >= 1024 + 20
    assert L1 <= 1100 and L2 <= 1100
    # 'valid': the circular grid needs only the input's size
    assert _fft_conv.fft_shape((64, 60), (9, 9), (56, 52), (1, 1), (0, 0), (1, 1)) == (64, 60)


def test_concurrent_calls_from_python_threads(monkeypatch):
    """Calls from several Python threads share the channel-sum pool and the BLAS limit: each gets
    the same bits as when run alone."""
    import threading

    monkeypatch.setattr(_fft_conv, "_BLOCK_BYTES", 16384)  # many bin blocks per call
    cases = [FFT_CASES[-1], FFT_CASES[4], FFT_CASES[0]]
    alone = [_all_passes(c, np.float32) for c in cases]
    results = [None] * len(cases)

    def work(i):
        results[i] = _all_passes(cases[i], np.float32)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, r in zip(alone, results):
        assert all(np.array_equal(u, v) for u, v in zip(a, r))


# Peak resident memory of one forced-FFT call in a fresh process, after imports and inputs: the
# docs/guide/threads.md's bound is max(64 MiB, 3x the arrays) of workspace.
_PEAK_SCRIPT = """
import resource, sys
import numpy as np, fastconv
x = np.random.default_rng(0).standard_normal({x_shape}).astype(np.float32)
w = np.random.default_rng(1).standard_normal({w_shape}).astype(np.float32)
kwargs = {kwargs}
y = fastconv.conv2d(x, w, **kwargs)  # warm-up on GEMM: imports, BLAS and OpenMP threads
g = np.ones_like(y)
fastconv.conv2d_backward(g, x, w, **kwargs)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
y_fft = fastconv.conv2d(x, w, algorithm="fft", **kwargs)
grads = fastconv.conv2d_backward(g, x, w, algorithm="fft", **kwargs)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
assert np.allclose(y_fft, y, rtol=1e-4, atol=1e-4)
for a, e in zip(grads, fastconv.conv2d_backward(g, x, w, algorithm="gemm", **kwargs)):
    assert np.allclose(a, e, rtol=1e-4, atol=1e-4)
print(grown // 1024)
"""


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs",
    [
        # 4 outputs, 2000-cell padding and stride: once 4 million polyphase planes (500 MiB; 6 GiB
        # at 10000); only the phases that meet a tap are formed now
        ((1, 1, 4, 4), (1, 1, 7, 7), dict(padding=2000, stride=2000)),
        ((1, 1, 4, 4), (1, 1, 7, 7), dict(padding=10000, stride=10000)),
        ((2, 3, 64, 64), (4, 3, 15, 15), dict(padding=7, stride=3, dilation=2)),
    ],
    ids=["pad_stride_2000", "pad_stride_10000", "strided_dilated"],
)
def test_forced_fft_keeps_the_memory_bound(x_shape, w_shape, kwargs, tmp_path):
    import subprocess
    import sys

    script = _PEAK_SCRIPT.format(x_shape=x_shape, w_shape=w_shape, kwargs=kwargs)
    run = subprocess.run(  # not from the checkout: `python -c` would import its unbuilt fastconv/
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-2000:]
    grown_mib = int(run.stdout.split()[-1])
    assert grown_mib <= 64, f"forced FFT grew the peak RSS by {grown_mib} MiB"
