"""Run fastconv._backend.gpu.ops's ops on the CPU kernel emulator and compare them with fastconv._backend.cpu.

The child-process half of tests/test_gpu_emulated.py (which describes the whole setup). Run as

    PYTHONPATH=tests/gpu_emulation/fakecupy[:...] python tests/gpu_emulation/run_cases.py ID...

with the fake ``cupy`` first on the path (and FASTCONV_PACKAGE_DIR naming the fastconv package
folder to test; without it, whichever ``import fastconv`` finds). Prints one JSON object per
line on stdout:
``{"probe": "skip", "reason": ...}`` when g++ cannot build the emulator at all (then exits),
``{"fatal": ...}`` when the kernel files do not build (then exits), and for each case
``{"case": ID, "event": "start"}`` then ``{"case": ID, "status": "ok" | "fail", "detail": ...}``.
A case that crashes the process (say a kernel reading past an array: SIGSEGV) leaves a start
line without a result; the parent reruns the remaining cases in a new process.

This module imports only the standard library and NumPy at the top, so that the test module
can read CASES without importing (the fake or the real) cupy.
"""

import importlib.util
import json
import os
import sys
import traceback
import zlib

import numpy as np

F32, F64 = np.float32, np.float64

# ------------------------------------------------------------------------------- devices
# Limits the fake device reports (fastconv._backend.gpu.ops sizes its launches from them). DEFAULT is a
# small ordinary GPU. TINY allows at most 2 blocks along x and z: the 1-D kernels (256 threads)
# and the per-row kernels grid-stride, and the GEMMs grid-stride over groups (gridDim.z = 2).
# FEW_THREADS also caps blocks at 64 threads, for cases that launch only 1-D kernels (the
# GEMM and per-row kernels are written for exactly 256 threads and would be refused).
DEFAULT = dict(sm_count=2)
TINY = dict(sm_count=1, max_threads=256, max_grid=(2, 65535, 2))
FEW_THREADS = dict(sm_count=1, max_threads=64, max_grid=(2, 65535, 2))  # no 256-thread kernels

# -------------------------------------------------------------------------------- cases
# Convolutions: N, C, H, W, F, KH, KW, stride, (top, bottom, left, right) padding, dilation,
# groups; the device; and the kernels the case must reach (so that a change in fastconv._backend.gpu.ops's
# dispatch cannot silently stop a case from covering what it is here for).
CONV = {
    "basic": (
        (2, 3, 6, 5, 4, 3, 2, (1, 1), (1, 1, 1, 1), (1, 1), 1),
        DEFAULT,
        {"conv_igemm", "conv_wgrad", "conv2d_grad_bias_partial"},
    ),
    "groups2_stride_asympad_dilation": (
        (2, 4, 9, 11, 6, 3, 3, (2, 3), (1, 2, 0, 1), (2, 1), 2),
        DEFAULT,
        set(),
    ),
    "groups3_gridz_stride": (  # 3 groups on a gridDim.z of 2
        (2, 6, 7, 7, 3, 3, 3, (2, 2), (1, 1, 1, 1), (2, 2), 3),
        TINY,
        set(),
    ),
    "tiles_multi": (  # > 128 output columns, > 64 filters and channels: several tiles per
        # grid axis (128x128 tiles), a K = 130 reduction ending in a partial 8-slice
        (2, 130, 9, 9, 140, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),
        DEFAULT,
        {"conv_igemm", "conv_wgrad"},
    ),
    "wgrad_big_tile": (  # grad_weight's own tile choice (plans.choose_wgrad_tile): 128 x 128
        # (F x C*KH*KW, no padding) in float, 64x128 in double
        (2, 128, 5, 5, 128, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),
        DEFAULT,
        {"conv_wgrad"},
    ),
    "split_reduction": (  # split-K forward/grad_input and a split grad_weight reduction
        (2, 8, 16, 16, 8, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
        dict(sm_count=8),
        {"splitk_reduce", "wgrad_reduce"},
    ),
    "stride2_phases": (  # grad_input as 4 phase GEMMs, odd sizes (phases of unequal size)
        (2, 5, 11, 10, 7, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1),
        DEFAULT,
        set(),
    ),
    "stride2_dilation2": (  # phases no tap reaches (kh*2 % 2 == 1 never): their pixels get 0
        (1, 4, 9, 9, 6, 3, 3, (2, 2), (2, 2, 2, 2), (2, 2), 1),
        DEFAULT,
        set(),
    ),
    "stem7x7s2": (  # the suite's 7x7 stride-2 stem, scaled down; stride 3 x 1 non-square
        (1, 3, 20, 17, 8, 7, 5, (3, 1), (3, 3, 2, 2), (1, 1), 1),
        DEFAULT,
        set(),
    ),
    "lenet_conv2": (  # the suite's LeNet C3 at batch 2
        (2, 6, 14, 14, 16, 5, 5, (1, 1), (0, 0, 0, 0), (1, 1), 1),
        DEFAULT,
        set(),
    ),
    "c3x3_64": (  # the suite's 3x3 layers (c64..c512), scaled down: 64x128 / 64x64 tiles
        (1, 64, 6, 6, 64, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
        dict(sm_count=1),
        set(),
    ),
    "s2_c64_f128": (  # the suite's 3x3 stride-2 c64 -> f128, scaled down
        (1, 16, 8, 8, 72, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1),
        dict(sm_count=1),
        set(),
    ),
    "pointwise": (  # the suite's 1x1 c256 -> f64, scaled down
        (1, 40, 7, 7, 24, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),
        DEFAULT,
        set(),
    ),
    "dilated": (  # the suite's dilation-2 3x3, scaled down
        (1, 8, 10, 10, 8, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2), 1),
        DEFAULT,
        set(),
    ),
    "pad_beyond_kernel": (  # outputs whose window lies entirely in the padding
        (1, 2, 4, 4, 3, 3, 3, (1, 1), (3, 3, 3, 3), (1, 1), 1),
        DEFAULT,
        set(),
    ),
    "depthwise_x2": (
        (1, 3, 7, 6, 6, 3, 3, (2, 2), (1, 0, 1, 1), (1, 2), 3),
        TINY,
        {"depthwise_forward", "depthwise_grad_input", "depthwise_grad_weight"},
    ),
    "depthwise_split": (  # depthwise grad_weight and grad_bias over 2 splits each
        (1, 2, 64, 64, 2, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 2),
        dict(sm_count=16),
        {"depthwise_grad_weight", "sum_splits"},
    ),
    "c1_single_group": (  # C == 1: the depthwise kernels with F output channels per input
        (2, 1, 6, 6, 3, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
        DEFAULT,
        {"depthwise_forward"},
    ),
}

# Pooling: N, C, H, W, kernel, stride, padding, dilation[, ceil_mode] (dilation: max pooling's;
# average pooling runs the undilated windows).
POOL = {
    "overlap": (2, 3, 7, 8, (3, 3), (2, 2), (1, 1), (1, 1)),
    "rect": (1, 2, 6, 5, (2, 3), (1, 2), (1, 0), (1, 1)),
    "tiled": (2, 2, 4, 4, (2, 2), (2, 2), (0, 0), (1, 1)),
    "floor_uncovered": (1, 2, 8, 7, (3, 3), (2, 2), (0, 0), (1, 1)),  # last row/col in no window
    # ceil mode: last windows run past the input (and past the right padding: divisor < KH*KW)
    "ceil_overhang": (1, 2, 8, 7, (3, 3), (2, 2), (1, 1), (1, 1), True),
    "ceil_2x2_odd": (2, 1, 5, 7, (2, 2), (2, 2), (0, 0), (1, 1), True),
    # dilated max pooling: taps skipping over the padding and the border, non-square
    "dilated": (2, 2, 9, 8, (3, 2), (1, 2), (1, 1), (2, 3)),
    "dilated_ceil": (1, 2, 10, 9, (3, 3), (2, 3), (1, 0), (3, 2), True),
}
# Adaptive max pooling: N, C, H, W, (OH, OW): uneven, overlapping windows, and more outputs
# than inputs along W (windows repeating columns).
ADAPTIVE_MAX = {
    "uneven": (2, 3, 7, 9, (3, 4)),
    "upsample_w": (1, 2, 5, 3, (2, 7)),
}


def _igemm(launches):
    return [(g, b) for name, g, b in launches if name.split("<")[0] in ("conv_igemm", "conv_wgrad")]


# Checks on the launch configurations a case must produce: (what, predicate on LAUNCHES).
LAUNCH_CHECKS = {
    "groups3_gridz_stride": (
        "a GEMM launched with gridDim.z = 2 < groups = 3",
        lambda ls: any(g[2] == 2 for g, _ in _igemm(ls)),
    ),
    "tiles_multi": (
        "a GEMM launched with gridDim.x >= 2 and gridDim.y >= 2 in the biggest tile (128x128, "
        "256 threads, for float; 64x128, 128 threads, for double)",
        lambda ls: any(
            g[0] >= 2 and g[1] >= 2 and b[0] == (128 if "<double" in n else 256)
            for n, g, b in ls
            if n.split("<")[0] in ("conv_igemm", "conv_wgrad")
        ),
    ),
    "wgrad_big_tile": (
        "conv_wgrad in the biggest tile of the dtype (256 threads for float, 128 for double)",
        lambda ls: any(
            n.startswith("conv_wgrad") and b[0] == (128 if "<double" in n else 256)
            for n, g, b in ls
        ),
    ),
    "split_reduction": (
        "split-K: a GEMM launched with gridDim.z >= 2 on one group and one phase",
        lambda ls: any(n.startswith("conv_igemm") and g[2] >= 2 for n, g, _ in ls),
    ),
    "stride2_phases": (
        "grad_input as one launch over the 4 stride phases (gridDim.z = 4)",
        lambda ls: any(n.startswith("conv_igemm") and g[2] == 4 for n, g, _ in ls),
    ),
    "c3x3_64": (
        "64x64 tiles (64 threads) on one SM",
        lambda ls: any(b[0] == 64 for _, b in _igemm(ls)),
    ),
}
_FEW = (
    "every launch with 64-thread blocks and at most 2 blocks",
    lambda ls: all(b == (64, 1, 1) and g[0] <= 2 for _, g, b in ls),
)

CASES = {}
for _name, (_geom, _dev, _expect) in CONV.items():
    for _dt in (F32, F64):
        CASES[f"conv-{_name}-{np.dtype(_dt).name}"] = dict(
            kind="conv",
            geom=_geom,
            device=_dev,
            expect=_expect,
            dtype=_dt,
            launch_check=LAUNCH_CHECKS.get(_name),
        )


def _random_geometries(count, seed=1234):
    """Random small convolutions (fixed seed): groups, strides and dilations up to 3, asymmetric
    padding, non-square kernels, and a random SM count, so that tile shapes, split-K and phase
    splits vary from case to case."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        groups = int(rng.choice([1, 1, 2, 3]))
        C, F = groups * int(rng.integers(1, 12)), groups * int(rng.integers(2, 80))
        if C // groups == 1:
            continue  # depthwise kernels: covered by the depthwise cases
        KH, KW = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        dil = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        pad = tuple(int(v) for v in rng.integers(0, 3, 4))
        H, W = int(rng.integers(3, 14)), int(rng.integers(3, 14))
        if (
            H + pad[0] + pad[1] < dil[0] * (KH - 1) + 1
            or W + pad[2] + pad[3] < dil[1] * (KW - 1) + 1
        ):
            continue
        N = int(rng.integers(1, 3))
        sm = int(rng.choice([1, 2, 8, 32]))
        out.append(((N, C, H, W, F, KH, KW, stride, pad, dil, groups), dict(sm_count=sm)))
    return out


for _i, (_geom, _dev) in enumerate(_random_geometries(8)):
    CASES[f"conv-random{_i}-{'float32' if _i % 2 == 0 else 'float64'}"] = dict(
        kind="conv", geom=_geom, device=_dev, expect=set(), dtype=F32 if _i % 2 == 0 else F64
    )
CASES["conv-nonfinite-float64"] = dict(
    kind="conv_nonfinite", geom=CONV["basic"][0], device=DEFAULT, expect=set(), dtype=F64
)
CASES["conv-nonfinite_stride2-float32"] = dict(  # the exact re-computation in phase GEMMs
    kind="conv_nonfinite",
    geom=CONV["stride2_phases"][0],
    device=dict(sm_count=8),
    expect=set(),
    dtype=F32,
)
CASES["conv-nonfinite_depthwise-float32"] = dict(
    kind="conv_nonfinite", geom=CONV["depthwise_x2"][0], device=DEFAULT, expect=set(), dtype=F32
)
_MAX_POOL_BACKWARD = {"max_pool2d_backward_link", "max_pool2d_backward_gather"}
for _kind, _table, _kernels in (
    ("pool", POOL, {"max_pool2d_forward", "avg_pool2d_forward", "avg_pool2d_backward"}),
    ("adaptive_max_pool", ADAPTIVE_MAX, {"adaptive_max_pool2d_forward"}),
):
    for _name, _geom in _table.items():
        for _dt in (F32, F64):
            CASES[f"{_kind}-{_name}-{np.dtype(_dt).name}"] = dict(
                kind=_kind,
                geom=_geom,
                device=FEW_THREADS,
                dtype=_dt,
                launch_check=_FEW,
                expect=_kernels | _MAX_POOL_BACKWARD,
            )
for _dt in (F32, F64):
    _n = np.dtype(_dt).name
    CASES[f"linear-{_n}"] = dict(
        kind="linear", device=FEW_THREADS, dtype=_dt, expect={"bias_act"}, launch_check=_FEW
    )
    CASES[f"relu_backward-{_n}"] = dict(
        kind="relu_backward",
        device=FEW_THREADS,
        dtype=_dt,
        expect={"relu_backward"},
        launch_check=_FEW,
    )
    CASES[f"softmax_xent-{_n}"] = dict(
        kind="softmax_xent",
        device=TINY,
        dtype=_dt,
        expect={"softmax_xent_forward", "softmax_xent_backward"},
        launch_check=(
            "softmax_xent_forward grid-strides over rows (gridDim.x = 2 < N)",
            lambda ls: any(n.startswith("softmax_xent_forward") and g[0] == 2 for n, g, _ in ls),
        ),
    )
    CASES[f"optim-{_n}"] = dict(
        kind="optim", device=FEW_THREADS, dtype=_dt, expect={"adam_update", "sgd_update"}
    )
    CASES[f"cross_entropy-{_n}"] = dict(  # the public ops on device arrays, Eager("gpu")
        kind="cross_entropy", device=TINY, dtype=_dt, expect={"softmax_xent_forward"}
    )
    CASES[f"unbatched-{_n}"] = dict(
        kind="unbatched", device=DEFAULT, dtype=_dt, expect={"conv_igemm", "max_pool2d_forward"}
    )
# Tensor-core (TF32 / 3xTF32) kernels, float32: tc_cases.py. The 64x64, 128x128 and 64x128 tiles,
# split-K, stride phases, the exact re-computation for a NaN weight, and an sm_70 device.
for _name in (
    "basic",
    "tiles_multi",
    "split_reduction",
    "stride2_phases",
    "c3x3_64",
    "wgrad_big_tile",
):
    CASES[f"conv_tc-{_name}"] = dict(
        kind="conv_tc", geom=CONV[_name][0], device=CONV[_name][1], expect=set()
    )
CASES["conv_tc-nonfinite_stride2"] = dict(
    kind="conv_tc", geom=CONV["stride2_phases"][0], device=DEFAULT, expect=set(), nonfinite=True
)
CASES["conv_tc-old_device"] = dict(
    kind="conv_tc_old_device", geom=CONV["basic"][0], device=DEFAULT, expect={"conv_igemm"}
)
CASES["streams-own-workspaces"] = dict(  # split-K / split grad_weight / grad_bias, max-pool lists
    kind="streams",
    geom=CONV["split_reduction"][0],
    device=CONV["split_reduction"][1],
    dtype=F32,
    expect={"splitk_reduce", "wgrad_reduce", "sum_splits", "max_pool2d_backward_link"},
)
CASES["emulator-self-check"] = dict(kind="self_check", device=DEFAULT)
CASES["lenet-step"] = dict(kind="lenet_step", device=dict(sm_count=4), expect={"conv_igemm"})
CASES["lenet-step-tf32"] = dict(  # (expect: the last run's; the TF32 run is checked inside)
    kind="lenet_step_tf32",
    device=dict(sm_count=4),
    expect={"conv_igemm_3xtf32", "conv_wgrad_3xtf32"},
)

# ----------------------------------------------------------------------------- running

cupy = _cpu = _gpu = None  # imported by main()


def _tol(dtype, reduction):
    scale = float(np.sqrt(max(reduction, 1)))
    if np.dtype(dtype) == np.float32:
        return dict(rtol=1e-4, atol=1e-5 * scale)
    return dict(rtol=1e-10, atol=1e-10 * scale)


def _both(op, inputs, outputs, *params):
    """Run `op` on the CPU backend and on the emulated GPU backend with the same inputs.

    `outputs` are NumPy arrays giving each output's shape and dtype (None: not computed).
    Returns (cpu results, gpu results as NumPy arrays)."""
    cpu_out = [None if o is None else np.empty_like(o) for o in outputs]
    getattr(_cpu, op)(*inputs, *cpu_out, *params)
    dev_in = [None if a is None else cupy.asarray(a) for a in inputs]
    dev_out = [None if o is None else cupy.empty(o.shape, o.dtype) for o in outputs]
    getattr(_gpu, op)(*dev_in, *dev_out, *params)
    return cpu_out, [None if o is None else cupy.asnumpy(o) for o in dev_out]


def _check(what, result, dtype, reduction=1):
    cpu_out, gpu_out = result
    for i, (c, g) in enumerate(zip(cpu_out, gpu_out)):
        if c is None:
            continue
        msg = f"{what}, output {i}"
        assert g.dtype == c.dtype and g.shape == c.shape, f"{msg}: {g.dtype}{g.shape}"
        if c.dtype.kind == "i":
            np.testing.assert_array_equal(g, c, err_msg=msg)
        else:
            np.testing.assert_allclose(g, c, equal_nan=True, err_msg=msg, **_tol(dtype, reduction))


def _conv_inputs(geom, dtype, rng):
    N, C, H, W, F, KH, KW, stride, (pt, pb, pl, pr), dil, groups = geom
    OH = (H + pt + pb - dil[0] * (KH - 1) - 1) // stride[0] + 1
    OW = (W + pl + pr - dil[1] * (KW - 1) - 1) // stride[1] + 1
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C // groups, KH, KW)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    gy = rng.standard_normal((N, F, OH, OW)).astype(dtype)
    return x, w, b, gy, (stride, (pt, pl), dil, groups)


def run_conv(spec, rng):
    dt = spec["dtype"]
    x, w, b, gy, params = _conv_inputs(spec["geom"], dt, rng)
    for bias, relu in [(True, False), (True, True), (False, False)]:
        _check(
            f"conv2d_forward bias={bias} relu={relu}",
            _both("conv2d_forward", [x, w, b if bias else None], [gy], *params, relu, "auto"),
            dt,
            w[0].size,
        )
    _check(
        "conv2d_grad_input", _both("conv2d_grad_input", [gy, w], [x], *params, "auto"), dt, w.size
    )
    _check(
        "conv2d_grad_weight",
        _both("conv2d_grad_weight", [gy, x], [w], *params, "auto"),
        dt,
        gy[:, 0].size,
    )
    _check("conv2d_grad_bias", _both("conv2d_grad_bias", [gy], [b]), dt, gy[:, 0].size)
    # grad_weight and grad_bias from one pass (GPU only: against the two CPU ops)
    cpu = [np.empty_like(w), np.empty_like(b)]
    _cpu.conv2d_grad_weight(gy, x, cpu[0], *params, "auto")
    _cpu.conv2d_grad_bias(gy, cpu[1])
    dev = [cupy.empty(w.shape, dt), cupy.empty(b.shape, dt)]
    _gpu.conv2d_grad_weight_bias(cupy.asarray(gy), cupy.asarray(x), *dev, *params)
    _check("conv2d_grad_weight_bias", (cpu, [cupy.asnumpy(d) for d in dev]), dt, gy[:, 0].size)


def run_streams(spec, rng):
    """The same shapes on the default stream and on two other streams: each stream gets its own
    split workspaces and max-pool lists (kernels on two streams may run at once), a stream
    reuses its own on the next call, and the results are the CPU's on every stream (and
    bitwise the same from stream to stream)."""
    from fastconv._backend.gpu import conv as gpu_conv

    dt = spec["dtype"]
    _gpu.clear_plans()
    x, w, b, gy, params = _conv_inputs(spec["geom"], dt, rng)
    pool = ((3, 3), (2, 2), (1, 1), (1, 1))
    px = rng.integers(-3, 4, size=x.shape).astype(dt)
    ph, pw = (x.shape[2] - 1) // 2 + 1, (x.shape[3] - 1) // 2 + 1
    pshape = (*x.shape[:2], ph, pw)
    pcpu = [np.empty(pshape, dt), np.empty(pshape, np.int64)]
    _cpu.max_pool2d_forward(px, *pcpu, *pool)
    pgy = rng.standard_normal(pshape).astype(dt)
    gy2 = rng.standard_normal((2, 2, 64, 64)).astype(dt)  # enough rows for split grad_bias sums

    def run_all():
        outs = []
        for op, ins, o, extra in (
            ("conv2d_forward", [x, w, b], [gy], (True, "auto")),
            ("conv2d_grad_input", [gy, w], [x], ("auto",)),
            ("conv2d_grad_weight", [gy, x], [w], ("auto",)),
            ("conv2d_grad_bias", [gy2], [b[:2]], ()),
        ):
            cpu, gpu = _both(op, ins, o, *((*params, *extra) if op != "conv2d_grad_bias" else ()))
            _check(op, (cpu, gpu), dt, 100)
            outs += gpu
        dev = [cupy.empty(w.shape, dt), cupy.empty(b.shape, dt)]
        _gpu.conv2d_grad_weight_bias(cupy.asarray(gy), cupy.asarray(x), *dev, *params)
        outs += [cupy.asnumpy(d) for d in dev]
        result = _both("max_pool2d_backward", [pgy, pcpu[1]], [px])
        _check("max_pool2d_backward", result, dt, 4)
        return outs + result[1]

    first = run_all()
    streams = [cupy.cuda.Stream(non_blocking=True) for _ in range(2)]
    for stream in streams:
        with stream:
            assert cupy.cuda.get_current_stream().ptr == stream.ptr
            assert _gpu.current_stream() == stream.ptr != 0
            again = run_all()
        for a, c in zip(again, first):
            np.testing.assert_array_equal(a, c, err_msg="results differ between streams")
    ptrs = [0] + [s.ptr for s in streams]

    def addresses(work):
        return tuple(a.data.ptr for a in (work if isinstance(work, tuple) else (work,)))

    split = [p for p in _gpu._plans.values() if p.make_work is not None]
    whats = {k[0] for k, p in _gpu._plans.items() if p.make_work is not None}
    assert {"forward", "grad_input", "grad_weight", "grad_bias"} <= whats, whats
    seen = set()
    for plan in split:
        assert sorted(plan.works) == sorted(ptrs), (list(plan.works), ptrs)
        for work in plan.works.values():
            assert not seen & set(addresses(work)), "a workspace shared between streams"
            seen |= set(addresses(work))
    pool = {k[1]: v for k, v in gpu_conv._pool_work.items()}
    assert sorted(pool) == sorted(ptrs), list(pool)
    assert len({addresses(v) for v in pool.values()}) == 3
    # A second round on stream 1 reuses its buffers: nothing new is allocated.
    before = {id(p): dict(p.works) for p in split}
    with streams[0]:
        run_all()
    for plan in split:
        assert all(plan.works[k] is v for k, v in before[id(plan)].items())
        assert len(plan.works) == 3
    assert len(gpu_conv._pool_work) == 3
    _gpu.clear_plans()
    assert not _gpu._plans and not gpu_conv._pool_work
    spec["detail"] = f"{len(split)} split plans x 3 streams, distinct workspaces"


def run_conv_nonfinite(spec, rng):
    """NaN/inf end up where the CPU backend puts them (padding multiplies as zero in forward
    and grad_weight; grad_input sums only the taps that reach a pixel)."""
    dt = spec["dtype"]
    x, w, b, gy, params = _conv_inputs(spec["geom"], dt, rng)
    w[1, 0, 0, 1], x[0, 0, 2, 2], gy[0, 1, 0, 0] = np.nan, np.inf, -np.inf
    with np.errstate(invalid="ignore", over="ignore"):
        for op, ins, outs, extra in (
            ("conv2d_forward", [x, w, b], [gy], (True, "auto")),
            ("conv2d_grad_input", [gy, w], [x], ("auto",)),
            ("conv2d_grad_weight", [gy, x], [w], ("auto",)),
        ):
            _check(op, _both(op, ins, outs, *params, *extra), dt, 100)


def _pool_out(size, k, s, p, d, ceil):
    """torch's rule over the dilated kernel; ceil mode keeps a last window starting before
    size + p."""
    span = d * (k - 1) + 1
    if not ceil:
        return (size + 2 * p - span) // s + 1
    o = -(-(size + 2 * p - span) // s) + 1
    return o - 1 if (o - 1) * s >= size + p else o


def run_pool(spec, rng):
    dt = spec["dtype"]
    N, C, H, W, k, s, p, d, *ceil = spec["geom"]
    y_shape = (N, C, *(_pool_out(*a, bool(ceil)) for a in zip((H, W), k, s, p, d)))
    x = rng.integers(-3, 4, size=(N, C, H, W)).astype(dt)  # many ties: the first max must win
    x[0, 0, 1, 1] = np.nan  # a NaN wins its windows
    cpu, gpu = _both(
        "max_pool2d_forward", [x], [np.empty(y_shape, dt), np.empty(y_shape, np.int64)], k, s, p, d
    )
    _check("max_pool2d_forward", (cpu, gpu), dt)
    gy = rng.standard_normal(y_shape).astype(dt)
    _check("max_pool2d_backward", _both("max_pool2d_backward", [gy, cpu[1]], [x]), dt, 4)
    y_shape = (N, C, *(_pool_out(*a, 1, bool(ceil)) for a in zip((H, W), k, s, p)))
    gy = rng.standard_normal(y_shape).astype(dt)
    x = rng.standard_normal((N, C, H, W)).astype(dt)
    for cip, divisor in ((True, None), (False, None), (False, 5)):
        what = f"count_include_pad={cip} divisor_override={divisor}"
        _check(
            f"avg_pool2d_forward {what}",
            _both("avg_pool2d_forward", [x], [np.empty(y_shape, dt)], k, s, p, cip, divisor),
            dt,
            9,
        )
        _check(
            f"avg_pool2d_backward {what}",
            _both("avg_pool2d_backward", [gy], [x], k, s, p, cip, divisor),
            dt,
            9,
        )


def run_adaptive_max_pool(spec, rng):
    """torch's adaptive windows (written out here), max_pool2d's rule and indices."""
    dt = spec["dtype"]
    N, C, H, W, (OH, OW) = spec["geom"]
    windows = [
        [(i * n // o, -(-(i + 1) * n // o)) for i in range(o)] for n, o in ((H, OH), (W, OW))
    ]
    x = rng.integers(-3, 4, size=(N, C, H, W)).astype(dt)  # ties
    x[-1, -1, 2, 1] = np.nan
    y_shape = (N, C, OH, OW)
    outs = [np.empty(y_shape, dt), np.empty(y_shape, np.int64)]
    cpu, gpu = _both("adaptive_max_pool2d_forward", [x], outs, *windows)
    _check("adaptive_max_pool2d_forward", (cpu, gpu), dt)
    gy = rng.standard_normal(y_shape).astype(dt)
    _check("max_pool2d_backward", _both("max_pool2d_backward", [gy, cpu[1]], [x]), dt, 6)


def run_linear(spec, rng):
    dt = spec["dtype"]
    x, w = rng.standard_normal((5, 70)).astype(dt), rng.standard_normal((9, 70)).astype(dt)
    b, gy = rng.standard_normal(9).astype(dt), rng.standard_normal((5, 9)).astype(dt)
    y = np.empty((5, 9), dt)
    for bias, relu in [(True, False), (True, True), (False, True), (False, False)]:
        _check(
            f"linear_forward bias={bias} relu={relu}",
            _both("linear_forward", [x, w, b if bias else None], [y], relu),
            dt,
            70,
        )
    _check("linear_backward", _both("linear_backward", [gy, x, w], [x, w, b]), dt, 9)
    _check(
        "linear_backward grad_weight only",
        _both("linear_backward", [gy, x, w], [None, w, None]),
        dt,
        9,
    )


def run_relu_backward(spec, rng):
    dt = spec["dtype"]
    gy, y = rng.standard_normal((2, 3, 7, 11)).astype(dt), rng.standard_normal((2, 3, 7, 11))
    y[0, 0, 0, :3] = [0.0, np.nan, -0.0]
    _check("relu_backward", _both("relu_backward", [gy, y.astype(dt)], [gy]), dt)


def run_softmax_xent(spec, rng):
    dt = spec["dtype"]
    for N, K in [(5, 10), (3, 700)]:  # K > 256: each thread of a row's block takes several
        logits = (30 * rng.standard_normal((N, K))).astype(dt)  # large: needs the max shift
        labels = rng.integers(0, K, N).astype(np.int64)
        out = [np.empty((N, K), dt), np.empty(N, dt)]
        cpu, gpu = _both("softmax_cross_entropy_forward", [logits, labels], out)
        _check(f"softmax_cross_entropy_forward K={K}", (cpu, gpu), dt, K * 900)
        _check(
            f"softmax_cross_entropy_backward K={K}",
            _both("softmax_cross_entropy_backward", [cpu[0], labels], [logits], 0.25),
            dt,
        )


def _host(a):
    return a if isinstance(a, (float, type(None))) else cupy.asnumpy(a)


def run_cross_entropy(spec, rng):
    """fastconv.cross_entropy and its backward on device arrays against the same calls on
    NumPy arrays: weights, ignore_index, reductions, smoothing, probability targets; a class
    index out of range gives NaN rows on the GPU (the CPU raises)."""
    import fastconv as fc

    dt = spec["dtype"]
    x = rng.standard_normal((4, 5, 3)).astype(dt)
    t = rng.integers(0, 5, (4, 3))
    t[0, 0] = -100
    w = (rng.random(5) + 0.5).astype(dt)
    p = rng.random((4, 5, 3)).astype(dt)
    options = [
        dict(),
        dict(reduction="sum", label_smoothing=0.2),
        dict(reduction="none", label_smoothing=0.1),
        dict(ignore_index=1),
    ]
    for target in (t, p):
        for opts in options:
            if opts.get("ignore_index", -100) != -100:
                if target is p:  # (torch's rule: no ignore_index with probabilities)
                    continue
                target = np.where(t == -100, opts["ignore_index"], t)
            dev = [cupy.asarray(a) for a in (x, target, w)]
            host_loss = fc.cross_entropy(x, target, w, **opts)
            loss = fc.cross_entropy(*dev, **opts)
            assert fc._compat.is_cupy_array(loss) or np.ndim(loss) == 0, type(loss)
            _check(
                f"cross_entropy {opts}",
                ([np.asarray(host_loss)], [np.asarray(_host(loss))]),
                dt,
                15,
            )
            none = opts.get("reduction") == "none"
            g = rng.standard_normal(host_loss.shape).astype(dt) if none else 0.5
            host_grad = fc.cross_entropy_backward(g, x, target, w, **opts)
            grad = fc.cross_entropy_backward(cupy.asarray(g) if none else g, *dev, **opts)
            assert fc._compat.is_cupy_array(grad)
            _check(f"cross_entropy_backward {opts}", ([host_grad], [cupy.asnumpy(grad)]), dt, 15)
    bad = t.copy()
    bad[1, 2] = 7
    loss = cupy.asnumpy(fc.cross_entropy(cupy.asarray(x), cupy.asarray(bad), reduction="none"))
    assert np.isnan(loss[1, 2]) and np.isfinite(np.delete(loss.reshape(-1), 5)).all(), loss
    grad = cupy.asnumpy(fc.cross_entropy_backward(1.0, cupy.asarray(x), cupy.asarray(bad)))
    assert np.isnan(grad[1, :, 2]).all() and not np.isnan(grad[0]).any()


def run_unbatched(spec, rng):
    """One sample (C, H, W) on device arrays: results and gradients without the batch axis."""
    import fastconv as fc

    dt = spec["dtype"]
    x = rng.standard_normal((3, 7, 6)).astype(dt)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dt)
    dx, dw = cupy.asarray(x), cupy.asarray(w)
    y = fc.conv2d(dx, dw, None, 1, 1)
    assert y.shape == (4, 7, 6)
    _check("conv2d one sample", ([fc.conv2d(x, w, None, 1, 1)], [cupy.asnumpy(y)]), dt, 27)
    g = rng.standard_normal((4, 7, 6)).astype(dt)
    host = fc.conv2d_backward(g, x, w, 1, 1)
    dev = fc.conv2d_backward(cupy.asarray(g), dx, dw, 1, 1)
    assert dev[0].shape == x.shape
    _check("conv2d_backward one sample", (list(host), [cupy.asnumpy(a) for a in dev]), dt, 60)
    py, idx = fc.max_pool2d(dx, 2, return_indices=True)
    assert py.shape == idx.shape == (3, 3, 3)
    host_y, host_idx = fc.max_pool2d(x, 2, return_indices=True)
    _check("max_pool2d one sample", ([host_y, host_idx], [cupy.asnumpy(py), cupy.asnumpy(idx)]), dt)
    gp = fc.max_pool2d_backward(cupy.asarray(host_y), idx, x.shape)
    _check(
        "max_pool2d_backward one sample",
        ([fc.max_pool2d_backward(host_y, host_idx, x.shape)], [cupy.asnumpy(gp)]),
        dt,
    )


SELF_CHECK_SOURCE = r"""
template <typename T>
__global__ void stale_read(T* out) {  // a missing __syncthreads between write and read
    __shared__ T s[64];
    s[threadIdx.x] = T(threadIdx.x);
    out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}
template <typename T>
__global__ void divergent_barrier(T* out) {
    if (threadIdx.x < 2) __syncthreads();
    out[threadIdx.x] = T(1);
}
template <typename T>
__global__ void block_total(T* out) {  // barriers done right: every thread sums all slots
    __shared__ T s[64];
    s[threadIdx.x] = T(threadIdx.x);
    __syncthreads();
    T acc = T(0);
    for (unsigned i = 0; i < blockDim.x; ++i) acc += s[i];
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}
template <typename T>
__global__ void warp_mma(T* out) {  // one m16n8k8 of ones: out = 8 in every lane's d0..d3
    const T x = out[threadIdx.x];   // 1.0 (a TF32 value), or 1 + 2^-20 (not one)
    const unsigned v = __float_as_uint(x);
    const unsigned a[4] = {v, v, v, v}, b[2] = {v, v};
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    mma_tf32_16x8x8(d, a, b);
    out[threadIdx.x] = d[0] + d[1] + d[2] + d[3];
}
"""


def run_self_check(spec, rng):
    """The emulator catches what it claims to: a missing barrier (stale shared memory), a
    barrier in divergent code, a wrong argument type, an mma operand that is not TF32;
    unwritten outputs read as NaN."""
    exprs = ["stale_read<float>", "divergent_barrier<float>", "block_total<double>"]
    exprs.append("warp_mma<float>")
    mod = cupy.RawModule(code=SELF_CHECK_SOURCE, options=("-std=c++17",), name_expressions=exprs)
    out = cupy.empty(8, np.float32)
    mod.get_function("stale_read<float>")((1,), (8,), (out,))
    assert not np.array_equal(out.get(), (np.arange(8) + 1) % 8), "missing barrier not caught"
    try:
        mod.get_function("divergent_barrier<float>")((1,), (8,), (out,))
    except RuntimeError:
        pass
    else:
        raise AssertionError("divergent __syncthreads not caught")
    total = cupy.empty(3 * 16, np.float64)
    try:
        mod.get_function("block_total<double>")((3,), (16,), (cupy.empty(48, np.float32),))
    except RuntimeError:
        pass
    else:
        raise AssertionError("a float array for a double* parameter not caught")
    mod.get_function("block_total<double>")((3,), (16,), (total,))
    np.testing.assert_array_equal(total.get(), np.full(48, 120.0))
    assert np.isnan(cupy.empty(3, np.float32).get()).all()
    mma = mod.get_function("warp_mma<float>")
    ones = cupy.asarray(np.ones(32, np.float32))
    mma((1,), (32,), (ones,))
    np.testing.assert_array_equal(ones.get(), np.full(32, 32.0))  # 4 outputs of 8 each
    raw = np.ones(32, np.float32)
    raw[5] = np.float32(1 + 2.0**-20)  # below TF32's 10 mantissa bits: not converted
    try:
        mma((1,), (32,), (cupy.asarray(raw),))
    except RuntimeError as exc:
        assert "(code 6)" in str(exc), exc  # cuda_emu.h's code for a non-TF32 operand
    else:
        raise AssertionError("an mma operand that is not a TF32 value not caught")


def run_optim(spec, rng):
    """Three in-place Adam / SGD steps over 18 parameters (one spans several chunks, so the
    grid-stride loop goes round; more than MAX_PARAMS, so two launches per step), weight decay
    and Nesterov on, one parameter a step ahead (Adam: its own launch), the same on both
    backends: the results must be bitwise equal (the same arithmetic, no FMA on either side).
    The device tables are uploaded on the first step only, though the gradients are new arrays
    every step."""
    from fastconv._backend.gpu import optim as gpu_optim

    dt = spec["dtype"]
    shapes = [(3, 1500), (5,)] + [(k + 1,) for k in range(16)]
    n = len(shapes)
    adam = (1e-2, 0.9, 0.999, 1e-8, 0.01)
    sgd = (0.05, 0.9, True, 0.01)
    for op in ("adam_update", "sgd_update"):
        host = [rng.standard_normal(s).astype(dt) for s in shapes for _ in range(4)]
        dev = [cupy.asarray(a) for a in host]
        for t in (1, 2, 3):
            grads = [rng.standard_normal(s).astype(dt) for s in shapes]
            steps = [t + (k == 1) for k in range(n)]
            dev_grads = [cupy.asarray(g) for g in grads]
            for arrays, xp_grads in ((host, grads), (dev, dev_grads)):
                p, m, v = arrays[0::4], arrays[1::4], arrays[2::4]
                backend = _cpu if arrays is host else _gpu
                launches, uploads = len(cupy.LAUNCHES), len(cupy.UPLOADS)
                if op == "adam_update":
                    backend.adam_update(p, xp_grads, m, v, steps, *adam)
                else:
                    backend.sgd_update(p, xp_grads, m, [t == 1] * n, *sgd)
                if arrays is dev:
                    made = [name for name, _, _ in cupy.LAUNCHES[launches:]]
                    want = (3 if op == "adam_update" else 2) * [op]  # groups of <= 16
                    assert [m.split("<")[0] for m in made] == want, made
                    new = len(cupy.UPLOADS) - uploads
                    assert new == (len(want) if t == 1 else 0), f"step {t}: {new} uploads"
        for c, g in zip(host, dev):
            np.testing.assert_array_equal(cupy.asnumpy(g), c, err_msg=op)
    assert gpu_optim.MAX_PARAMS == 16 < n


def run_lenet_step(spec, rng):
    """A LeNet training step: no host sync, a launch budget, CPU-equal parameters."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import lenet_step

    spec["detail"] = lenet_step.run(spec, rng, cupy)


def _tc_cases():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tc_cases

    return tc_cases


def run_conv_tc(spec, rng):
    """TF32 / 3xTF32 convolution kernels against a float64 CPU reference (tc_cases.py)."""
    spec["detail"] = _tc_cases().run(spec, rng, cupy, _cpu, _gpu, _conv_inputs)


def run_conv_tc_old_device(spec, rng):
    spec["detail"] = _tc_cases().run_old_device(spec, rng, cupy, _cpu, _gpu, _conv_inputs)


def run_lenet_step_tf32(spec, rng):
    """Two LeNet SGD steps with TF32 convolutions: launches as fp32, CPU-close parameters."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import lenet_step

    spec["detail"] = lenet_step.run_tf32(spec, rng, cupy)


RUNNERS = {
    "conv": run_conv,
    "conv_nonfinite": run_conv_nonfinite,
    "streams": run_streams,
    "pool": run_pool,
    "adaptive_max_pool": run_adaptive_max_pool,
    "linear": run_linear,
    "relu_backward": run_relu_backward,
    "softmax_xent": run_softmax_xent,
    "optim": run_optim,
    "cross_entropy": run_cross_entropy,
    "unbatched": run_unbatched,
    "self_check": run_self_check,
    "lenet_step": run_lenet_step,
    "lenet_step_tf32": run_lenet_step_tf32,
    "conv_tc": run_conv_tc,
    "conv_tc_old_device": run_conv_tc_old_device,
}

PROBE_SOURCE = r"""
template <typename T>
__global__ void probe(T* out, int n) {
    __shared__ T s[4];
    s[threadIdx.x] = T(threadIdx.x + n);
    __syncthreads();
    out[threadIdx.x] = s[3 - threadIdx.x];
}
"""


def _emit(**record):
    print(json.dumps(record), flush=True)


def _probe():
    """None when the emulator builds and runs here; the reason when the toolchain cannot
    build it (no g++, no C++17, no <ucontext.h>, ...). A wrong result is a bug, not a skip."""
    mod = cupy.RawModule(
        code=PROBE_SOURCE, options=("-std=c++17",), name_expressions=["probe<float>"]
    )
    try:
        kernel = mod.get_function("probe<float>")
    except (cupy.CompileException, OSError) as exc:
        return str(exc)[-2000:]
    out = cupy.empty(4, np.float32)
    kernel((1,), (4,), (out, np.int32(10)))
    np.testing.assert_array_equal(out.get(), [13, 12, 11, 10])
    return None


def main(case_ids):
    global cupy, _cpu, _gpu
    import cupy as _cupy

    if not getattr(_cupy, "IS_FASTCONV_EMULATOR", False):
        _emit(
            fatal=f"imported the real cupy ({_cupy.__file__}), not the emulator: "
            "the fake cupy must come first on PYTHONPATH"
        )
        return 1
    cupy = _cupy
    pkg = os.environ.get("FASTCONV_PACKAGE_DIR")
    if pkg:  # the very package the parent tests, whatever sys.path would find first here
        spec = importlib.util.spec_from_file_location(
            "fastconv", os.path.join(pkg, "__init__.py"), submodule_search_locations=[pkg]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["fastconv"] = module
        spec.loader.exec_module(module)
    import fastconv
    from fastconv import _compat
    from fastconv._backend.cpu import ops as cpu_backend
    from fastconv._backend.gpu import ops as gpu_backend

    got = os.path.dirname(os.path.realpath(fastconv.__file__))
    if pkg and got != os.path.realpath(pkg):
        _emit(fatal=f"child imported fastconv from {got}, the tests use {pkg}")
        return 1
    assert _compat.cupy is cupy and _compat.gpu_available()
    _cpu, _gpu = cpu_backend, gpu_backend

    reason = _probe()
    if reason is not None:
        _emit(probe="skip", reason=reason)
        return 0
    try:  # all kernel files at once, a few g++ at a time; _gpu then finds them in the cache
        cupy.precompile(
            [
                cupy.RawModule(
                    code=_gpu.kernel_source(f),
                    options=_gpu.NVRTC_OPTIONS,
                    name_expressions=_gpu.name_expressions(f),
                )
                for f in _gpu.KERNELS
            ]
        )
    except cupy.CompileException as exc:
        _emit(fatal=f"a kernel file does not build under the emulator:\n{exc}")
        return 1

    for case in case_ids:
        spec = CASES[case]
        _emit(case=case, event="start")
        try:
            cupy.configure_device(**spec["device"])
            _gpu._device_infos.clear()
            del cupy.LAUNCHES[:]
            RUNNERS[spec["kind"]](spec, np.random.default_rng(zlib.crc32(case.encode())))
            launched = {name.split("<")[0] for name, _, _ in cupy.LAUNCHES}
            missing = set(spec.get("expect", ())) - launched
            assert not missing, f"kernels {sorted(missing)} never launched (ran {sorted(launched)})"
            if spec.get("launch_check"):
                what, predicate = spec["launch_check"]
                assert predicate(cupy.LAUNCHES), f"expected {what}; launches: {cupy.LAUNCHES}"
        except Exception:
            _emit(case=case, status="fail", detail=traceback.format_exc())
        else:
            _emit(
                case=case, status="ok", detail=spec.get("detail", f"{len(cupy.LAUNCHES)} launches")
            )
    return 0


if __name__ == "__main__":
    import faulthandler

    faulthandler.enable()  # a crash inside a kernel prints the Python stack (the op) to stderr
    sys.exit(main(sys.argv[1:] or list(CASES)))
