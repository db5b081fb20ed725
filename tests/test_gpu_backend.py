"""The GPU backend against its contract (docs/INTERNALS.md).

Runs anywhere: both backends export the same OPS with identical signatures; the kernel table of
fastconv._backend.gpu.ops matches the templates in the .cu files; without CuPy every op raises the install
hint; a compile failure is reported with file, kernel and log.
On a CUDA machine (marker `gpu`, skipped otherwise): every op on CuPy arrays against the CPU
backend on the same NumPy inputs, float32 and float64, over groups, depthwise, strides,
asymmetric padding and dilation.
"""

import importlib
import inspect
import re
import types

import numpy as np
import pytest

from fastconv import _compat
from fastconv._backend.gpu import ops as _gpu

needs_gpu = pytest.mark.skipif(not _compat.gpu_available(), reason="needs CuPy and a CUDA device")
DTYPES = [np.float32, np.float64]


def _cpu():
    # Imported per test so that a missing CPU op fails these tests, not the module's collection.
    return importlib.import_module("fastconv._backend.cpu.ops")


# ------------------------------------------------------------------------- the interface


def test_ops_tuples_equal():
    assert _cpu().OPS == _gpu.OPS


def test_signatures_identical():
    cpu = _cpu()
    for name in _gpu.OPS:
        assert hasattr(cpu, name), f"fastconv._backend.cpu.ops lacks {name}"
        assert hasattr(_gpu, name), f"fastconv._backend.gpu.ops lacks {name}"
        assert inspect.signature(getattr(cpu, name)) == inspect.signature(getattr(_gpu, name)), name


def test_kernel_table_matches_cu_files():
    pattern = re.compile(
        r"template\s*<\s*typename\s+T\s*(,\s*int\s+BM\s*,\s*int\s+BN\s*)?>\s*__global__\s+void\s+"
        r"(?:__launch_bounds__\s*\((?:[^()]|\([^()]*\))*\)\s*)?(\w+)\s*\("
    )
    on_disk = sorted(p.name for p in _gpu.KERNEL_DIR.glob("*.cu"))
    assert sorted(_gpu.KERNELS) == on_disk
    for filename, names in _gpu.KERNELS.items():
        source = _gpu.kernel_source(filename)
        assert not re.search(r"^\s*#\s*include", source, re.M), f"{filename}: include left"
        # the file's own kernels (conv_tc.cu pastes in conv_igemm.cu and conv_wgrad.cu, whose
        # kernels their own modules compile)
        found = pattern.findall((_gpu.KERNEL_DIR / filename).read_text())
        assert sorted(n for _, n in found) == sorted(names), filename
        # tiled exactly when the template takes (BM, BN)
        assert {n for tiled, n in found if tiled} == set(names) & _gpu.TILED, filename


def test_tile_constants_match_kernel_headers():
    from fastconv._backend.gpu import plans as gpu_plans

    tile_h = (_gpu.KERNEL_DIR / "igemm_tile.cuh").read_text()
    assert int(re.search(r"\bIGEMM_BK\s*=\s*(\d+)", tile_h).group(1)) == gpu_plans.BK
    common = (_gpu.KERNEL_DIR / "common.cuh").read_text()
    found = re.search(r"\bREDUCE_THREADS\s*=\s*(\d+)", common)
    assert found and int(found.group(1)) == _gpu.REDUCE_THREADS
    geo_h = (_gpu.KERNEL_DIR / "conv_geo.cuh").read_text()
    start = geo_h.index("enum : int {")
    block = geo_h[start : geo_h.index("GEO_SIZE", start)]
    assert re.findall(r"\bGEO_(\w+),", block) == gpu_plans.GEO
    expr = _gpu.name_expressions("conv_igemm.cu")
    for dtype, ctype in (("f4", "float"), ("f8", "double")):
        for bm, bn in gpu_plans.tiles(dtype):
            assert f"conv_igemm<{ctype}, {bm}, {bn}>" in expr


def test_ops_without_cupy_raise_install_hint(monkeypatch):
    monkeypatch.setattr(_compat, "cupy", None)
    for name in _gpu.OPS:
        op = getattr(_gpu, name)
        n_args = len(inspect.signature(op).parameters)
        with pytest.raises(RuntimeError, match=r'pip install "fastconv\[cuda12\]"'):
            op(*[None] * n_args)


def test_compile_error_names_file_kernel_and_log(monkeypatch):
    class CompileException(Exception):
        def get_message(self):
            return "conv_igemm.cu(12): error: expected a ';'"

    class RawModule:
        def __init__(self, code, options, name_expressions):
            assert "__global__" in code and "-std=c++17" in options

        def get_function(self, name):
            raise CompileException()

    runtime = types.SimpleNamespace(getDevice=lambda: 0)
    fake = types.SimpleNamespace(RawModule=RawModule, cuda=types.SimpleNamespace(runtime=runtime))
    monkeypatch.setattr(_compat, "cupy", fake)
    monkeypatch.setattr(_gpu, "_modules", {})
    with pytest.raises(RuntimeError) as info:
        _gpu._kernel("conv_igemm.cu", "conv_igemm", np.float32, tile=(64, 64))
    message = str(info.value)
    assert "conv_igemm.cu" in message and "conv_igemm<float, 64, 64>" in message
    assert "expected a ';'" in message


def test_launch_refuses_arrays_a_kernel_would_misread():
    # Checked before any CuPy call, so NumPy arrays stand in for device arrays here.
    square = np.zeros((3, 3), np.float32)
    for bad, why in [(square.T, "non-contiguous"), (square.astype(np.float64), "float64")]:
        with pytest.raises(ValueError, match=why):
            _gpu._launch("elementwise.cu", "relu_backward", np.float32, (1,), (1,), (bad,))


def test_compat_helpers():
    assert isinstance(_compat.gpu_available(), bool)
    assert not _compat.is_cupy_array(np.zeros(2))
    fake_type = type("ndarray", (), {"__module__": "cupy._core.core"})
    assert _compat.is_cupy_array(fake_type())
    assert _compat.array_module(np.zeros(2)) is np


# ------------------------------------------------------------------ numbers, on a GPU only


def _both(op, inputs, outputs, *params):
    """Run `op` on the CPU backend (NumPy) and the GPU backend (CuPy) with the same inputs.

    `outputs` are NumPy arrays giving each output's shape and dtype (or None: not computed).
    Returns (cpu results, gpu results as NumPy).
    """
    cp = _compat.cupy
    cpu_out = [None if o is None else np.empty_like(o) for o in outputs]
    getattr(_cpu(), op)(*inputs, *cpu_out, *params)
    dev = [None if a is None else cp.asarray(a) for a in inputs]
    gpu_out = [None if o is None else cp.empty(o.shape, o.dtype) for o in outputs]
    getattr(_gpu, op)(*dev, *gpu_out, *params)
    return cpu_out, [None if o is None else cp.asnumpy(o) for o in gpu_out]


def _check(cpu_out, gpu_out, dtype, reduction=1):
    scale = float(np.sqrt(reduction))
    tol = (
        dict(rtol=1e-4, atol=1e-5 * scale)
        if dtype == np.float32
        else dict(rtol=1e-10, atol=1e-10 * scale)
    )
    for c, g in zip(cpu_out, gpu_out):
        if c is None:
            continue
        assert g.dtype == c.dtype and g.shape == c.shape
        if c.dtype.kind == "i":
            np.testing.assert_array_equal(g, c)
        else:
            np.testing.assert_allclose(g, c, equal_nan=True, **tol)


# N, C, H, W, F, KH, KW, stride, (top, bottom, left, right) padding, dilation, groups
CONV_CASES = {
    "basic_nonsquare": (2, 3, 9, 8, 4, 3, 2, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    "stride_asym_pad_dil": (2, 4, 9, 11, 6, 3, 3, (2, 3), (1, 2, 0, 1), (2, 1), 2),
    "groups3_stride_dil": (2, 6, 9, 9, 3, 3, 3, (2, 2), (1, 1, 1, 1), (2, 2), 3),
    "depthwise_x2": (1, 3, 7, 6, 6, 3, 3, (2, 2), (1, 0, 1, 1), (1, 2), 3),
    "depthwise_x1": (2, 5, 6, 6, 5, 2, 3, (1, 1), (0, 1, 2, 0), (1, 1), 5),
    "C1_5x5": (2, 1, 8, 8, 3, 5, 5, (1, 1), (2, 2, 2, 2), (1, 1), 1),
    "pad_gt_kernel": (2, 3, 5, 4, 4, 3, 3, (1, 1), (3, 3, 3, 3), (1, 1), 1),
    "many_tiles": (3, 20, 12, 12, 70, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    "split_reduction": (4, 6, 32, 33, 8, 3, 3, (1, 1), (1, 0, 1, 1), (1, 1), 2),
    "pointwise_groups": (2, 8, 10, 9, 130, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 2),
}


def _conv_inputs(case, dtype, rng):
    N, C, H, W, F, KH, KW, stride, (pt, pb, pl, pr), dil, groups = case
    OH = (H + pt + pb - dil[0] * (KH - 1) - 1) // stride[0] + 1
    OW = (W + pl + pr - dil[1] * (KW - 1) - 1) // stride[1] + 1
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C // groups, KH, KW)).astype(dtype)
    bias = rng.standard_normal(F).astype(dtype)
    gy = rng.standard_normal((N, F, OH, OW)).astype(dtype)
    params = (stride, (pt, pl), dil, groups)
    return x, w, bias, gy, params


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CONV_CASES.values()), ids=list(CONV_CASES))
@pytest.mark.parametrize("bias,relu", [(True, False), (True, True), (False, False)])
def test_conv2d_forward(case, dtype, bias, relu, rng):
    x, w, b, gy, params = _conv_inputs(case, dtype, rng)
    out = _both("conv2d_forward", [x, w, b if bias else None], [gy], *params, relu, "auto")
    _check(*out, dtype, reduction=w[0].size)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CONV_CASES.values()), ids=list(CONV_CASES))
def test_conv2d_backward(case, dtype, rng):
    x, w, b, gy, params = _conv_inputs(case, dtype, rng)
    _check(*_both("conv2d_grad_input", [gy, w], [x], *params, "auto"), dtype, reduction=w.size)
    _check(
        *_both("conv2d_grad_weight", [gy, x], [w], *params, "auto"), dtype, reduction=gy[:, 0].size
    )
    _check(*_both("conv2d_grad_bias", [gy], [b]), dtype, reduction=gy[:, 0].size)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["basic_nonsquare", "stride_asym_pad_dil", "depthwise_x2"])
def test_conv2d_non_finite_like_cpu(case, dtype, rng):
    """NaN/inf land where the CPU backend puts them: padding multiplies as zero in forward and
    grad_weight (0 * inf = NaN); grad_input sums only the taps that reach a pixel."""
    x, w, b, gy, params = _conv_inputs(CONV_CASES[case], dtype, rng)
    w[1, 0, 0, 1], x[0, 0, 2, 2], gy[0, 1, 0, 0] = np.nan, np.inf, -np.inf
    with np.errstate(invalid="ignore", over="ignore"):
        _check(*_both("conv2d_forward", [x, w, b], [gy], *params, True, "auto"), dtype, 100)
        _check(*_both("conv2d_grad_input", [gy, w], [x], *params, "auto"), dtype, 100)
        _check(*_both("conv2d_grad_weight", [gy, x], [w], *params, "auto"), dtype, 100)


# N, C, H, W, kernel, stride, padding
POOL_CASES = [
    (2, 3, 7, 8, (3, 3), (2, 2), (1, 1)),  # overlapping windows
    (1, 2, 6, 5, (2, 3), (1, 2), (1, 0)),
    (2, 2, 4, 4, (2, 2), (2, 2), (0, 0)),
]


def _pool_out(case):
    N, C, H, W, k, s, p = case
    return N, C, (H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d(case, dtype, rng):
    N, C, H, W, k, s, p = case
    x = rng.integers(-3, 4, size=(N, C, H, W)).astype(dtype)  # many ties: first max must win
    x[0, 0, 1, 1] = np.nan  # NaN wins its windows
    y_shape = _pool_out(case)
    outs = [np.empty(y_shape, dtype), np.empty(y_shape, np.int64)]
    cpu, gpu = _both("max_pool2d_forward", [x], outs, k, s, p, (1, 1))
    _check(cpu, gpu, dtype)
    gy = rng.standard_normal(y_shape).astype(dtype)
    _check(*_both("max_pool2d_backward", [gy, cpu[1]], [x]), dtype, reduction=4)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_dilated_and_adaptive(dtype, rng):
    x = rng.integers(-3, 4, size=(2, 3, 10, 9)).astype(dtype)  # ties
    x[1, 2, 3, 4] = np.nan
    # 3x2 kernel, stride (1, 2), padding 1, dilation (2, 3): spans 5x4, OH = 10 + 2 - 5 + 1,
    # OW = (9 + 2 - 4) // 2 + 1
    y_shape = (2, 3, 8, 4)
    outs = [np.empty(y_shape, dtype), np.empty(y_shape, np.int64)]
    cpu, gpu = _both("max_pool2d_forward", [x], outs, (3, 2), (1, 2), (1, 1), (2, 3))
    _check(cpu, gpu, dtype)
    windows = ([(0, 4), (3, 7), (6, 10)], [(0, 2), (1, 4), (3, 6), (5, 8), (7, 9)])  # torch's
    outs = [np.empty((2, 3, 3, 5), dtype), np.empty((2, 3, 3, 5), np.int64)]
    cpu, gpu = _both("adaptive_max_pool2d_forward", [x], outs, *windows)
    _check(cpu, gpu, dtype)
    gy = rng.standard_normal((2, 3, 3, 5)).astype(dtype)
    _check(*_both("max_pool2d_backward", [gy, cpu[1]], [x]), dtype, reduction=4)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d(case, dtype, count_include_pad, rng):
    N, C, H, W, k, s, p = case
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    y = np.empty(_pool_out(case), dtype)
    for divisor in (None, 7):
        args = (k, s, p, count_include_pad, divisor)
        _check(*_both("avg_pool2d_forward", [x], [y], *args), dtype, 9)
        gy = rng.standard_normal(y.shape).astype(dtype)
        _check(*_both("avg_pool2d_backward", [gy], [x], *args), dtype, 9)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_backward(dtype, rng):
    gy, y = rng.standard_normal((2, 3, 4, 5)).astype(dtype), rng.standard_normal((2, 3, 4, 5))
    _check(*_both("relu_backward", [gy, y.astype(dtype)], [gy]), dtype)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias,relu", [(True, False), (True, True), (False, True), (False, False)])
def test_linear(dtype, bias, relu, rng):
    x, w = rng.standard_normal((5, 70)).astype(dtype), rng.standard_normal((9, 70)).astype(dtype)
    b = rng.standard_normal(9).astype(dtype)
    y = np.empty((5, 9), dtype)
    _check(*_both("linear_forward", [x, w, b if bias else None], [y], relu), dtype, 70)
    gy = rng.standard_normal((5, 9)).astype(dtype)
    _check(*_both("linear_backward", [gy, x, w], [x, w, b]), dtype, 9)
    _check(*_both("linear_backward", [gy, x, w], [None, w, None]), dtype, 9)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,K", [(6, 10), (3, 700)])
def test_softmax_cross_entropy(dtype, N, K, rng):
    logits = (30 * rng.standard_normal((N, K))).astype(dtype)  # large: needs the max shift
    labels = rng.integers(0, K, N).astype(np.int64)
    out = [np.empty((N, K), dtype), np.empty(N, dtype)]
    cpu, gpu = _both("softmax_cross_entropy_forward", [logits, labels], out)
    _check(cpu, gpu, dtype, reduction=K * 900)  # |log_probs| ~ 100: absolute errors scale up
    _check(*_both("softmax_cross_entropy_backward", [cpu[0], labels], [logits], 0.25), dtype)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["basic_nonsquare", "split_reduction", "pointwise_groups"])
def test_conv2d_grad_weight_bias_fused(case, dtype, rng):
    """grad_weight and grad_bias in one pass equal the two CPU ops."""
    cp = _compat.cupy
    x, w, b, gy, params = _conv_inputs(CONV_CASES[case], dtype, rng)
    cpu_w, cpu_b = np.empty_like(w), np.empty_like(b)
    _cpu().conv2d_grad_weight(gy, x, cpu_w, *params, "auto")
    _cpu().conv2d_grad_bias(gy, cpu_b)
    dev_w, dev_b = cp.empty(w.shape, dtype), cp.empty(b.shape, dtype)
    _gpu.conv2d_grad_weight_bias(cp.asarray(gy), cp.asarray(x), dev_w, dev_b, *params)
    _check([cpu_w, cpu_b], [cp.asnumpy(dev_w), cp.asnumpy(dev_b)], dtype, gy[:, 0].size)


@pytest.mark.gpu
@needs_gpu
def test_backward_passes_are_bitwise_reproducible(rng):
    """No float atomics: split-K sums and max-pool backward give identical bits run to run."""
    cp = _compat.cupy
    x, w, b, gy, params = _conv_inputs(CONV_CASES["split_reduction"], np.float32, rng)
    x, w, gy = cp.asarray(x), cp.asarray(w), cp.asarray(gy)
    gpool = cp.asarray(rng.standard_normal((4, 6, 16, 17)).astype(np.float32))
    runs = []
    for _ in range(3):
        gx, gw = cp.empty(x.shape, x.dtype), cp.empty(w.shape, w.dtype)
        _gpu.conv2d_grad_input(gy, w, gx, *params, "auto")
        _gpu.conv2d_grad_weight(gy, x, gw, *params, "auto")
        y = cp.empty((4, 6, 16, 17), x.dtype)  # 3x3 stride-2 windows overlap
        idx = cp.empty(y.shape, np.int64)
        _gpu.max_pool2d_forward(x, y, idx, (3, 3), (2, 2), (1, 1), (1, 1))
        gp = cp.empty(x.shape, x.dtype)
        _gpu.max_pool2d_backward(gpool, idx, gp)
        runs.append([cp.asnumpy(a) for a in (gx, gw, gp)])
    for later in runs[1:]:
        for a, b_ in zip(runs[0], later):
            assert a.tobytes() == b_.tobytes()


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("mode", ["tf32", "3xtf32"])
@pytest.mark.parametrize("case", ["basic_nonsquare", "many_tiles", "split_reduction"])
def test_conv2d_tensor_core_precision_within_bounds(case, mode, rng):
    """fastconv.gpu_precision("tf32" / "3xtf32") on float32: every pass within the documented
    bound of the float64 result, relative to the sum of |products| (the pass on |inputs|):
    TF32 2^-10, 3xTF32 2^-20, plus fp32 summation (tests/gpu_emulation/tc_cases.py). Pre-sm_80
    GPUs run fp32 instead, which meets both."""
    import fastconv

    cp = _compat.cupy
    x, w, _, gy, params = _conv_inputs(CONV_CASES[case], np.float32, rng)
    groups = params[-1]
    passes = (
        ("conv2d_forward", [x, w, None], x.shape[:1] + gy.shape[1:], (False, "auto"), w[0].size),
        ("conv2d_grad_input", [gy, w], x.shape, ("auto",), w.size // w.shape[1] // groups),
        ("conv2d_grad_weight", [gy, x], w.shape, ("auto",), gy[:, 0].size),
    )
    for op, ins, shape, extra, K in passes:
        ref, mag = np.empty(shape), np.empty(shape)
        getattr(_cpu(), op)(*[None if a is None else a.astype(np.float64) for a in ins], ref,
                            *params, *extra)  # fmt: skip
        getattr(_cpu(), op)(*[None if a is None else np.abs(a).astype(np.float64) for a in ins],
                            mag, *params, *extra)  # fmt: skip
        out = cp.empty(shape, np.float32)
        with fastconv.gpu_precision(mode):
            getattr(_gpu, op)(*[None if a is None else cp.asarray(a) for a in ins], out, *params,
                              *extra)  # fmt: skip
        bound = (2.0**-10 + K * 2.0**-24) if mode == "tf32" else (2.0**-20 + 3 * K * 2.0**-24)
        err = np.abs(cp.asnumpy(out) - ref)
        assert np.all(err <= bound * mag + 1e-30), (op, float(np.max(err / (mag + 1e-30))))
