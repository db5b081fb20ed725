"""fastconv's fuzzer: random valid calls against the independent references, random invalid calls
that must raise ValueError/TypeError naming the bad argument, crashes caught in subprocesses.

    python tests/fuzz.py --cases 10000 [--seed 0] [--chunk 500]

runs the cases in child processes of `--chunk` cases each (a crash ends one child and is reported
with its seed), and ends with 'fuzz: N passed, N failed'. tests/test_fuzz.py runs the same case
functions under hypothesis (bounded in CI) and a short run of this command.

Every case is a function of one integer seed, so any failure is reproduced by
`python tests/fuzz.py --replay SEED`.
"""

import argparse
import os
import re
import subprocess
import sys
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import (  # noqa: E402
    adaptive_max_pool2d_ref,
    avg_pool2d_ref,
    conv1d_ref,
    conv2d_backward_ref,
    conv2d_ref,
    conv_transpose2d_backward_ref,
    conv_transpose2d_ref,
    max_pool2d_ref,
    pad_tblr,
    same_padding,
    sigmoid_ref,
)

import fastconv  # noqa: E402
from fastconv._kernels import conv as _conv  # noqa: E402
from fastconv._kernels import direct as _direct  # noqa: E402
from fastconv._kernels import pool as _pool  # noqa: E402
from fastconv._kernels import winograd as _winograd  # noqa: E402

# --------------------------------------------------------------------------- valid calls

_DTYPES = [np.float32, np.float64, np.float16, np.int32]


def _layout(a, rng):
    """`a` in a random memory layout: C order, Fortran order, a strided view or reversed axes."""
    kind = rng.integers(4)
    if kind == 1:
        return np.asfortranarray(a)
    if kind == 2:
        big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if kind == 3:
        return a[..., ::-1].copy()[..., ::-1]
    return a


def _padding(rng):
    kind = rng.integers(5)
    if kind == 0:
        return int(rng.integers(0, 4))
    if kind == 1:
        return (int(rng.integers(0, 4)), int(rng.integers(0, 4)))
    if kind == 2:
        return tuple(tuple(int(v) for v in rng.integers(0, 4, 2)) for _ in range(2))
    return ["same", "valid", "same"][kind - 2]


def valid_conv_case(seed):
    """A valid conv2d problem drawn from `seed`: (x, w, b, kwargs, activation)."""
    rng = np.random.default_rng(seed)
    while True:
        groups = int(rng.choice([1, 1, 1, 2, 3]))
        Cg, Fg = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        depthwise = rng.random() < 0.2
        if depthwise:
            Cg = 1
        N, H, W = int(rng.integers(1, 4)), int(rng.integers(1, 13)), int(rng.integers(1, 13))
        KH, KW = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        kwargs = dict(
            stride=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
            dilation=(int(rng.integers(1, 4)), int(rng.integers(1, 3))),
            padding=_padding(rng),
            groups=groups,
        )
        if rng.random() < 0.15:  # degenerate: 1-cell planes, outputs that see only padding
            H, W = int(rng.integers(1, 3)), int(rng.integers(1, 3))
            kwargs["padding"] = tuple(int(v) for v in rng.integers(0, 9, 2))
            kwargs["stride"] = tuple(int(v) for v in rng.integers(1, 9, 2))
        if rng.random() < 0.5:
            kwargs["stride"] = kwargs["stride"][0]
        try:
            fastconv.conv_output_shape((N, Cg * groups, H, W), (Fg * groups, Cg, KH, KW), **kwargs)
            break
        except ValueError:
            continue
    dtype = _DTYPES[rng.integers(len(_DTYPES))]
    x = rng.standard_normal((N, Cg * groups, H, W))
    w = rng.standard_normal((Fg * groups, Cg, KH, KW))
    b = rng.standard_normal(Fg * groups) if rng.random() < 0.5 else None
    if dtype == np.int32:
        x, w = np.round(x * 3), np.round(w * 3)
        b = None if b is None else np.round(b * 3).astype(dtype)
    elif b is not None:
        b = b.astype(dtype)
    x, w = _layout(x.astype(dtype), rng), _layout(w.astype(dtype), rng)
    activation = "relu" if rng.random() < 0.3 else None
    return x, w, b, kwargs, activation


def _check_close(name, actual, expected, reduction):
    tol = (2e-4 if actual.dtype == np.float32 else 1e-9) * np.sqrt(max(reduction, 1))
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    err = float(np.abs(actual.astype(np.float64) - expected).max(initial=0)) / scale
    if not err <= tol:
        raise AssertionError(f"{name}: relative error {err:.3g} > {tol:.3g}")


def check_valid_conv(seed):
    """conv2d and conv2d_backward against the float64 references; inputs left unmodified."""
    x, w, b, kwargs, activation = valid_conv_case(seed)
    saved = [a.copy() for a in (x, w)]
    y = fastconv.conv2d(x, w, b, activation=activation, **kwargs)
    tblr = pad_tblr(
        kwargs["padding"], x.shape[2:], w.shape[2:], kwargs["stride"], kwargs["dilation"]
    )
    ref_kwargs = dict(
        stride=kwargs["stride"], pad=tblr, dilation=kwargs["dilation"], groups=kwargs["groups"]
    )
    expected = conv2d_ref(x, w, b, **ref_kwargs)
    if activation:
        expected = np.maximum(expected, 0)
    want = np.result_type(*(a.dtype for a in (x, w, b) if a is not None))
    want = np.float64 if want.kind in "biu" else np.float32 if want == np.float16 else want
    assert y.dtype == want, f"result dtype {y.dtype}, expected {np.dtype(want)}"
    reduction = w.shape[1] * w.shape[2] * w.shape[3]
    _check_close("forward", y, expected, reduction)
    grad_out = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(y.dtype)
    gx, gw, gb = fastconv.conv2d_backward(grad_out, x, w, **kwargs)
    rx, rw, rb = conv2d_backward_ref(grad_out, x, w, **ref_kwargs)
    _check_close("grad_input", gx, rx, w.shape[0] * w.shape[2] * w.shape[3])
    _check_close("grad_weight", gw, rw, y.shape[0] * y.shape[2] * y.shape[3])
    _check_close("grad_bias", gb, rb, y.shape[0] * y.shape[2] * y.shape[3])
    for before, after in zip(saved, (x, w)):
        np.testing.assert_array_equal(before, after, err_msg="an input was modified")


def check_valid_pool(seed):
    """max_pool2d / avg_pool2d against the naive loops."""
    rng = np.random.default_rng(seed)
    N, C, H, W = (int(v) for v in np.concatenate([rng.integers(1, 4, 2), rng.integers(1, 10, 2)]))
    kernel = (int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1)))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = (int(rng.integers(0, kernel[0] // 2 + 1)), int(rng.integers(0, kernel[1] // 2 + 1)))
    dtype = _DTYPES[rng.integers(2)]
    x = _layout(rng.integers(-3, 4, (N, C, H, W)).astype(dtype), rng)
    y, idx = fastconv.max_pool2d(x, kernel, stride, padding, return_indices=True)
    y_ref, idx_ref = max_pool2d_ref(x, kernel, stride, padding)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    include = bool(rng.integers(2))
    a = fastconv.avg_pool2d(x, kernel, stride, padding, count_include_pad=include)
    _check_close(
        "avg_pool2d", a, avg_pool2d_ref(x, kernel, stride, padding, include), kernel[0] * kernel[1]
    )
    # then (drawn after the above, which the seeds keep reproducing): a dilated max pool, ceil
    # mode, divisor_override and adaptive max pooling
    dilation, kernel, padding = _dilated_pool(rng, H, W)
    ceil_mode = bool(rng.integers(2))
    y, idx = fastconv.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, True)
    y_ref, idx_ref = max_pool2d_ref(x, kernel, stride, padding, ceil_mode, dilation)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    divisor = int(rng.integers(1, 10))
    kw = dict(ceil_mode=ceil_mode, count_include_pad=include, divisor_override=divisor)
    a = fastconv.avg_pool2d(x, kernel, stride, padding, **kw)
    expected = avg_pool2d_ref(x, kernel, stride, padding, include, ceil_mode, divisor)
    _check_close("avg_pool2d divisor_override", a, expected, kernel[0] * kernel[1])
    out = (int(rng.integers(1, 2 * H + 1)), int(rng.integers(1, 2 * W + 1)))
    y, idx = fastconv.adaptive_max_pool2d(x, out, return_indices=True)
    y_ref, idx_ref = adaptive_max_pool2d_ref(x, out)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)


def _dilated_pool(rng, H, W):
    """(dilation, kernel, padding) of a valid dilated pool over H x W: each dilated kernel
    spans at most the input, padding at most half the kernel (so no window is all padding)."""
    dilation = tuple(int(rng.choice([1, 2, 3])) for _ in range(2))
    kernel = tuple(int(rng.integers(1, (n - 1) // d + 2)) for n, d in zip((H, W), dilation))
    padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    return dilation, kernel, padding


# ------------------------------------------------------------- every algorithm, every SIMD level

_SIMD_MODULES = (_conv, _direct, _winograd, _pool)


def check_forced_algorithms(seed):
    """Every algorithm conv2d_algorithms lists for a pass, forced, with the SIMD kernels at a
    random level the CPU has (and the direct kernels' random layout), against the references."""
    rng = np.random.default_rng(seed)
    x, w, b, kwargs, activation = valid_conv_case(seed)
    dtype = (np.float32, np.float64)[rng.integers(2)]
    x, w = np.ascontiguousarray(x, dtype), np.ascontiguousarray(w, dtype)
    b = None if b is None else b.astype(dtype)
    levels = [m.set_level(int(rng.integers(m.detected_level() + 1))) for m in _SIMD_MODULES]
    layout = _direct.set_layout(("filters", "rows1", "rows2")[rng.integers(3)])
    try:
        _check_algorithms(seed, x, w, b, kwargs, activation)
    finally:
        for m, level in zip(_SIMD_MODULES, levels):
            m.set_level(level)
        _direct.set_layout(layout)


def _check_algorithms(seed, x, w, b, kwargs, activation):
    algorithms = fastconv.conv2d_algorithms(x.shape, w.shape, dtype=x.dtype, **kwargs)
    tblr = pad_tblr(
        kwargs["padding"], x.shape[2:], w.shape[2:], kwargs["stride"], kwargs["dilation"]
    )
    ref = dict(
        stride=kwargs["stride"], pad=tblr, dilation=kwargs["dilation"], groups=kwargs["groups"]
    )
    expected = conv2d_ref(x, w, b, **ref)
    if activation:
        expected = np.maximum(expected, 0)
    grad_out = np.random.default_rng(seed + 1).standard_normal(expected.shape).astype(x.dtype)
    rx, rw, _ = conv2d_backward_ref(grad_out, x, w, **ref)
    F, Cg, KH, KW = w.shape
    N, _, OH, OW = expected.shape
    for name in algorithms["forward"]:
        y = fastconv.conv2d(x, w, b, activation=activation, algorithm=name, **kwargs)
        _check_close(f"forward {name}", y, expected, Cg * KH * KW)
    for name in algorithms["grad_input"]:
        gx = fastconv.conv2d_grad_input(grad_out, w, x.shape, algorithm=name, **kwargs)
        _check_close(f"grad_input {name}", gx, rx, F * KH * KW)
    for name in algorithms["grad_weight"]:
        gw = fastconv.conv2d_grad_weight(grad_out, x, w.shape, algorithm=name, **kwargs)
        _check_close(f"grad_weight {name}", gw, rw, N * OH * OW)


# ----------------------------------------------------------- transposed and 1-D convolutions


def check_conv_transpose(seed):
    """conv_transpose2d and its gradients against the scatter-loop references, output_padding
    up to its limit (outputs no input reaches included)."""
    rng = np.random.default_rng(seed)
    while True:
        groups = int(rng.choice([1, 1, 2, 3]))
        N, H, W = int(rng.integers(1, 3)), int(rng.integers(1, 6)), int(rng.integers(1, 6))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 4, 2))
        kwargs = dict(
            stride=stride,
            padding=tuple(int(v) for v in rng.integers(0, 4, 2)),
            output_padding=tuple(int(rng.integers(max(s, d))) for s, d in zip(stride, dilation)),
            groups=groups,
            dilation=dilation,
        )
        x_shape = (N, groups * int(rng.integers(1, 4)), H, W)
        w_shape = (
            x_shape[1],
            int(rng.integers(1, 4)),
            int(rng.integers(1, 5)),
            int(rng.integers(1, 5)),
        )
        try:
            out_shape = fastconv.conv_transpose_output_shape(x_shape, w_shape, **kwargs)
            break
        except ValueError:
            continue
    dtype = (np.float32, np.float64)[rng.integers(2)]
    x = _layout(rng.standard_normal(x_shape).astype(dtype), rng)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(out_shape[1]).astype(dtype) if rng.random() < 0.5 else None
    y = fastconv.conv_transpose2d(x, w, b, **kwargs)
    assert y.shape == out_shape, f"shape {y.shape}, expected {out_shape}"
    _check_close("forward", y, conv_transpose2d_ref(x, w, b, **kwargs), np.prod(w_shape[1:]))
    g = rng.standard_normal(out_shape).astype(dtype)
    got = fastconv.conv_transpose2d_backward(g, x, w, **kwargs)
    for name, a, e in zip(
        ("grad_input", "grad_weight", "grad_bias"),
        got,
        conv_transpose2d_backward_ref(g, x, w, **kwargs),
    ):
        _check_close(name, a, e, np.prod(out_shape) // max(1, out_shape[1]) + np.prod(w_shape[1:]))


def check_conv1d(seed):
    """conv1d and its gradients against the 1-D reference and the 2-D gradient reference on a
    one-row image."""
    rng = np.random.default_rng(seed)
    while True:
        groups = int(rng.choice([1, 1, 2, 3]))
        N, L, K = int(rng.integers(1, 4)), int(rng.integers(1, 16)), int(rng.integers(1, 6))
        stride, dilation = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        kind = rng.integers(4)
        padding = (
            int(rng.integers(0, 5))
            if kind == 0
            else tuple(int(v) for v in rng.integers(0, 5, 2))
            if kind == 1
            else ("same", "valid")[kind - 2]
        )
        x_shape = (N, groups * int(rng.integers(1, 4)), L)
        w_shape = (groups * int(rng.integers(1, 4)), x_shape[1] // groups, K)
        try:
            fastconv.conv1d_output_shape(x_shape, w_shape, stride, padding, dilation, groups)
            break
        except ValueError:
            continue
    if padding == "same":
        pad = same_padding(L, K, stride, dilation)
    else:
        pad = (
            (0, 0)
            if padding == "valid"
            else padding
            if isinstance(padding, tuple)
            else (padding,) * 2
        )
    dtype = (np.float32, np.float64)[rng.integers(2)]
    x = _layout(rng.standard_normal(x_shape).astype(dtype), rng)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if rng.random() < 0.5 else None
    args = (stride, padding, dilation, groups)
    y = fastconv.conv1d(x, w, b, *args)
    _check_close(
        "forward", y, conv1d_ref(x, w, b, stride, pad, dilation, groups), np.prod(w_shape[1:])
    )
    g = rng.standard_normal(y.shape).astype(dtype)
    got = fastconv.conv1d_backward(g, x, w, *args)
    want = conv2d_backward_ref(
        g[:, :, None],
        x[:, :, None],
        w[:, :, None],
        (1, stride),
        (0, 0) + tuple(pad),
        (1, dilation),
        groups,
    )
    for name, a, e in zip(("grad_input", "grad_weight", "grad_bias"), got, want):
        _check_close(name, a, e.reshape(a.shape), y.shape[0] * y.shape[2] + np.prod(w_shape))


# --------------------------------------------------------------------------- Dask chunkings


def _chunking(size, rng):
    """A random split of `size` cells: one-cell chunks often, else random cuts."""
    if rng.random() < 0.35:
        return (1,) * size
    cuts = sorted(set(rng.integers(1, size, rng.integers(0, size)).tolist())) if size > 1 else []
    return tuple(np.diff([0, *cuts, size]).tolist())


def _chunked(a, rng):
    import dask.array as da

    return da.from_array(a, chunks=tuple(_chunking(s, rng) for s in a.shape))


def _same_lazily(name, lazy, eager):
    """The lazy result's shape (before compute) and values (after) are the in-memory call's."""
    import dask.array as da

    assert isinstance(lazy, da.Array), f"{name}: a {type(lazy).__name__}, not a Dask array"
    assert lazy.shape == eager.shape, f"{name}: lazy shape {lazy.shape}, in memory {eager.shape}"
    assert lazy.dtype == eager.dtype, f"{name}: lazy dtype {lazy.dtype}, in memory {eager.dtype}"
    got = lazy.compute()
    assert got.shape == eager.shape, f"{name}: computed shape {got.shape}, lazy {eager.shape}"
    scale = max(1.0, float(np.abs(eager).max(initial=0)))
    err = float(np.abs(got.astype(np.float64) - eager).max(initial=0)) / scale
    if not err <= 1e-10:
        raise AssertionError(f"{name}: relative difference {err:.3g} from the in-memory call")


def _dask_conv(rng, seed):
    x, w, b, kwargs, activation = valid_conv_case(seed)
    x, w = x.astype(np.float64), w.astype(np.float64)
    b = None if b is None else b.astype(np.float64)
    xd = _chunked(x, rng)
    y = fastconv.conv2d(x, w, b, activation=activation, **kwargs)
    _same_lazily("conv2d", fastconv.conv2d(xd, w, b, activation=activation, **kwargs), y)
    g = rng.standard_normal(y.shape)
    gd = _chunked(g, rng)
    want = fastconv.conv2d_backward(g, x, w, **kwargs)
    got = fastconv.conv2d_backward(gd, xd, w, **kwargs)
    for name, a, e in zip(("grad_input", "grad_weight", "grad_bias"), got, want):
        _same_lazily(f"conv2d_backward {name}", a, e)
    _same_lazily(
        "conv2d_grad_input",
        fastconv.conv2d_grad_input(gd, w, x.shape, **kwargs),
        fastconv.conv2d_grad_input(g, w, x.shape, **kwargs),
    )
    _same_lazily(
        "conv2d_grad_weight",
        fastconv.conv2d_grad_weight(gd, xd, w.shape, **kwargs),
        fastconv.conv2d_grad_weight(g, x, w.shape, **kwargs),
    )


def _dask_transpose(rng, seed):
    x = rng.standard_normal(
        (int(rng.integers(1, 3)), 2, int(rng.integers(1, 7)), int(rng.integers(1, 7)))
    )
    stride, dilation = (
        tuple(int(v) for v in rng.integers(1, 4, 2)),
        tuple(int(v) for v in rng.integers(1, 3, 2)),
    )
    kwargs = dict(
        stride=stride,
        padding=tuple(int(v) for v in rng.integers(0, 3, 2)),
        output_padding=tuple(int(rng.integers(max(s, d))) for s, d in zip(stride, dilation)),
        dilation=dilation,
    )
    w = rng.standard_normal((2, 3, int(rng.integers(1, 4)), int(rng.integers(1, 4))))
    try:
        y = fastconv.conv_transpose2d(x, w, None, **kwargs)
    except ValueError:
        return
    xd = _chunked(x, rng)
    _same_lazily("conv_transpose2d", fastconv.conv_transpose2d(xd, w, None, **kwargs), y)
    g = rng.standard_normal(y.shape)
    got = fastconv.conv_transpose2d_backward(_chunked(g, rng), xd, w, **kwargs)
    for name, a, e in zip(
        ("grad_input", "grad_weight", "grad_bias"),
        got,
        fastconv.conv_transpose2d_backward(g, x, w, **kwargs),
    ):
        _same_lazily(f"conv_transpose2d_backward {name}", a, e)


def _dask_conv1d(rng, seed):
    x = rng.standard_normal((int(rng.integers(1, 3)), 3, int(rng.integers(1, 12))))
    w = rng.standard_normal((2, 3, int(rng.integers(1, 4))))
    args = (int(rng.integers(1, 4)), int(rng.integers(0, 4)), int(rng.integers(1, 3)))
    try:
        y = fastconv.conv1d(x, w, None, *args)
    except ValueError:
        return
    xd = _chunked(x, rng)
    _same_lazily("conv1d", fastconv.conv1d(xd, w, None, *args), y)
    g = rng.standard_normal(y.shape)
    got = fastconv.conv1d_backward(_chunked(g, rng), xd, w, *args)
    for name, a, e in zip(
        ("grad_input", "grad_weight", "grad_bias"), got, fastconv.conv1d_backward(g, x, w, *args)
    ):
        _same_lazily(f"conv1d_backward {name}", a, e)


def _dask_pool(rng, seed):
    N, C, H, W = (int(v) for v in np.concatenate([rng.integers(1, 3, 2), rng.integers(1, 10, 2)]))
    kernel = (int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1)))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = (int(rng.integers(0, kernel[0] // 2 + 1)), int(rng.integers(0, kernel[1] // 2 + 1)))
    ceil_mode = bool(rng.integers(2))
    x = rng.integers(-3, 4, (N, C, H, W)).astype(np.float64)
    xd = _chunked(x, rng)
    args = (kernel, stride, padding)
    y, idx = fastconv.max_pool2d(x, *args, return_indices=True, ceil_mode=ceil_mode)
    yd, idxd = fastconv.max_pool2d(xd, *args, return_indices=True, ceil_mode=ceil_mode)
    _same_lazily("max_pool2d", yd, y)
    _same_lazily("max_pool2d indices", idxd, idx)
    g = rng.standard_normal(y.shape)
    _same_lazily(
        "max_pool2d_backward",
        fastconv.max_pool2d_backward(_chunked(g, rng), idxd, x.shape),
        fastconv.max_pool2d_backward(g, idx, x.shape),
    )
    include = bool(rng.integers(2))
    a = fastconv.avg_pool2d(x, *args, ceil_mode=ceil_mode, count_include_pad=include)
    ad = fastconv.avg_pool2d(xd, *args, ceil_mode=ceil_mode, count_include_pad=include)
    _same_lazily("avg_pool2d", ad, a)
    g = rng.standard_normal(a.shape)
    kw = dict(ceil_mode=ceil_mode, count_include_pad=include)
    _same_lazily(
        "avg_pool2d_backward",
        fastconv.avg_pool2d_backward(_chunked(g, rng), x.shape, *args, **kw),
        fastconv.avg_pool2d_backward(g, x.shape, *args, **kw),
    )
    out = (int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1)))
    _same_lazily(
        "adaptive_avg_pool2d",
        fastconv.adaptive_avg_pool2d(xd, out),
        fastconv.adaptive_avg_pool2d(x, out),
    )
    g = rng.standard_normal((N, C) + out)
    _same_lazily(
        "adaptive_avg_pool2d_backward",
        fastconv.adaptive_avg_pool2d_backward(_chunked(g, rng), x.shape),
        fastconv.adaptive_avg_pool2d_backward(g, x.shape),
    )
    _same_lazily("global_avg_pool2d", fastconv.global_avg_pool2d(xd), fastconv.global_avg_pool2d(x))
    # then (drawn after the above): dilated max pooling (halos of dilated windows) and adaptive
    # max pooling
    dilation, kernel, padding = _dilated_pool(rng, H, W)
    args = (kernel, stride, padding, dilation, ceil_mode, True)
    y, idx = fastconv.max_pool2d(x, *args)
    yd, idxd = fastconv.max_pool2d(_chunked(x, rng), *args)
    _same_lazily("max_pool2d dilated", yd, y)
    _same_lazily("max_pool2d dilated indices", idxd, idx)
    y, idx = fastconv.adaptive_max_pool2d(x, out, True)
    yd, idxd = fastconv.adaptive_max_pool2d(xd, out, True)
    _same_lazily("adaptive_max_pool2d", yd, y)
    _same_lazily("adaptive_max_pool2d indices", idxd, idx)
    g = rng.standard_normal(y.shape)
    _same_lazily(
        "adaptive_max_pool2d_backward",
        fastconv.adaptive_max_pool2d_backward(_chunked(g, rng), idxd, x.shape),
        fastconv.adaptive_max_pool2d_backward(g, idx, x.shape),
    )


def _dask_dense(rng, seed):
    N, IN, OUT = (int(v) for v in rng.integers(1, 9, 3))
    x, w, b = rng.standard_normal((N, IN)), rng.standard_normal((OUT, IN)), rng.standard_normal(OUT)
    xd = _chunked(x, rng)
    y = fastconv.linear(x, w, b)
    _same_lazily("linear", fastconv.linear(xd, w, b), y)
    g = rng.standard_normal(y.shape)
    got = fastconv.linear_backward(_chunked(g, rng), xd, w)
    for name, a, e in zip(
        ("grad_input", "grad_weight", "grad_bias"), got, fastconv.linear_backward(g, x, w)
    ):
        _same_lazily(f"linear_backward {name}", a, e)
    labels = rng.integers(0, OUT, N)
    loss, probs = fastconv.softmax_cross_entropy(y, labels)
    loss_d, probs_d = fastconv.softmax_cross_entropy(_chunked(y, rng), _chunked(labels, rng))
    _same_lazily("softmax_cross_entropy loss", loss_d, np.asarray(loss))
    _same_lazily("softmax_cross_entropy probs", probs_d, probs)
    for op in ("relu", "sigmoid", "tanh"):
        yo = getattr(fastconv, op)(x)
        _same_lazily(op, getattr(fastconv, op)(xd), yo)
        _same_lazily(
            f"{op}_backward",
            getattr(fastconv, f"{op}_backward")(_chunked(g[:, :1] * x, rng), _chunked(yo, rng)),
            getattr(fastconv, f"{op}_backward")(g[:, :1] * x, yo),
        )


_DASK_OPS = (
    _dask_conv,
    _dask_conv,
    _dask_conv,
    _dask_transpose,
    _dask_conv1d,
    _dask_pool,
    _dask_dense,
)


def check_dask(seed):
    """A random op on Dask arrays of a random chunking (one-cell chunks often): lazy shape,
    computed shape and values equal to the in-memory call (float64, 1e-10 relative)."""
    import dask

    rng = np.random.default_rng(seed)
    with dask.config.set(scheduler="synchronous"):
        _DASK_OPS[rng.integers(len(_DASK_OPS))](rng, seed)


# ------------------------------------------------------------------------- elementwise ops

_ELEMENTWISE = {
    "relu": (lambda x: np.maximum(x, 0), lambda g, y: g * (y > 0)),
    "sigmoid": (sigmoid_ref, lambda g, y: g * y * (1 - y)),
    "tanh": (np.tanh, lambda g, y: g * (1 - y * y)),
}


def check_elementwise(seed):
    """relu, sigmoid, tanh and their gradients on 0-d, 1-element and small arrays of any
    shape: same shape, the dtype rule, values of the NumPy formulas."""
    rng = np.random.default_rng(seed)
    shape = [(), (1,), (1, 1, 1, 1), tuple(int(v) for v in rng.integers(1, 4, rng.integers(1, 5)))][
        rng.integers(4)
    ]
    dtype = (np.float32, np.float64)[rng.integers(2)]
    x = (rng.standard_normal(shape) * 10).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    for name, (forward, backward) in _ELEMENTWISE.items():
        y = getattr(fastconv, name)(x)
        assert isinstance(y, np.ndarray) and y.shape == x.shape and y.dtype == dtype, (
            f"{name}: {type(y).__name__} {np.shape(y)} {getattr(y, 'dtype', None)} for {shape} {np.dtype(dtype)}"
        )
        _check_close(name, y, forward(x.astype(np.float64)), 1)
        gx = getattr(fastconv, f"{name}_backward")(g, y)
        assert isinstance(gx, np.ndarray) and gx.shape == x.shape and gx.dtype == dtype, name
        _check_close(
            f"{name}_backward", gx, backward(g.astype(np.float64), y.astype(np.float64)), 1
        )


# ------------------------------------------------------------------------- invalid calls

_X, _W, _B = np.ones((2, 4, 6, 6)), np.ones((6, 2, 3, 3)), np.ones(6)
_CONV = dict(x=_X, weight=_W, bias=_B, stride=1, padding=1, dilation=1, groups=2)
_BAD_INTS = [
    0,
    -1,
    -(2**63),
    1.5,
    "2",
    None,
    True,
    (1, 2, 3),
    (1, 0),
    [1, "a"],
    2j,
    np.float64(2.0),
    object(),
]
_BAD_ARRAYS = [
    np.ones((4, 6)),  # (a 3-D x is one sample (C, H, W), as torch takes it)
    np.ones((2, 4, 6, 6), complex),
    np.array("abc"),
    np.ones((2, 4, 6, 6), object),
    "x",
    3,
    np.ones((0, 4, 6, 6, 1)),
]


def _conv_call(args):
    a = dict(args)
    return fastconv.conv2d(a.pop("x"), a.pop("weight"), a.pop("bias"), **a)


def _backward_call(args):
    a = dict(args)
    a.pop("bias")
    go = a.pop("grad_out", np.ones((2, 6, 6, 6)))
    return fastconv.conv2d_backward(go, a.pop("x"), a.pop("weight"), **a)


def _pool_call(args):
    a = dict(args)
    fn = fastconv.max_pool2d if a.pop("max") else fastconv.avg_pool2d
    return fn(a.pop("x"), **a)


def _families():
    """(name, baseline arguments, call, {argument: bad values})."""
    geometry = {
        "stride": _BAD_INTS,
        "dilation": _BAD_INTS,
        "groups": _BAD_INTS + [3, 5, 2**63],
        "padding": [-1, (1, -1), ((1, 2), (3,)), "full", 1.5, None, (1, 2, 3), ((1, -2), (0, 0))],
    }
    conv_bad = dict(
        geometry,
        x=_BAD_ARRAYS + [np.ones((2, 3, 6, 6)), np.ones((2, 4, 0, 6)), np.ones((3, 6, 6))],
        weight=_BAD_ARRAYS
        + [
            np.ones((6, 3, 3, 3)),
            np.ones((5, 2, 3, 3)),
            np.ones((6, 2, 0, 3)),
            np.ones((6, 2, 9, 9)),
        ],
        bias=[np.ones(5), np.ones((6, 1)), np.ones(6, complex), "b"],
    )
    back_bad = dict(
        geometry,
        x=conv_bad["x"],
        weight=conv_bad["weight"],
        grad_out=[np.ones((2, 6, 5, 6)), np.ones((2, 6, 6)), np.ones((2, 6, 6, 6), complex), "g"],
        needs=[5, ("input", "nope"), (3,), None],
    )
    pool = dict(x=_X, kernel_size=2, stride=None, padding=0, max=True)
    pool_bad = {
        "x": _BAD_ARRAYS + [np.ones((1, 1, 1, 1))],
        "kernel_size": [k for k in _BAD_INTS if k is not None] + [(7, 7)],
        "stride": [k for k in _BAD_INTS if k is not None],
        "padding": [-1, 2, (0, 2), 1.5, "1", (1, 2, 3)],
    }
    pool_avg = dict(pool, max=False)
    dense = dict(x=np.ones((3, 5)), weight=np.ones((4, 5)), bias=np.ones(4))
    dense_bad = {
        # (x (5,) is one sample and (2, 3, 5) a batch of sequences: linear takes (*, IN))
        "x": [np.ones((3, 4)), np.ones(4), np.ones(()), np.ones((3, 5), complex), "x"],
        "weight": [np.ones((4, 6)), np.ones(4), "w"],
        "bias": [np.ones(3), np.ones((4, 1)), "b"],
        "activation": ["tanh", 1, "RELU"],
    }
    softmax = dict(logits=np.zeros((3, 4)), labels=np.array([0, 1, 3]))
    softmax_bad = {
        "logits": [np.zeros(4), np.zeros((3, 0)), np.zeros((3, 4), complex), "z"],
        "labels": [
            np.array([0, 1]),
            np.array([0, 1, 4]),
            np.array([0.0, 1.0, 2.0]),
            np.array([-1, 0, 0]),
            np.zeros((3, 1), int),
        ],
    }
    return [
        ("conv2d", dict(_CONV), _conv_call, conv_bad),
        (
            "conv2d_backward",
            dict(_CONV, needs=("input", "weight", "bias")),
            _backward_call,
            back_bad,
        ),
        (
            "conv_output_shape",
            dict(
                input_shape=(2, 4, 6, 6),
                weight_shape=(6, 2, 3, 3),
                stride=1,
                padding=1,
                dilation=1,
                groups=2,
            ),
            lambda a: fastconv.conv_output_shape(**a),
            dict(
                geometry,
                input_shape=[(2, 4, 6), (2, 4, 0, 6), (2, 4, "6", 6), None, (2, 3, 6, 6)],
                weight_shape=[(6, 2, 3), (6, 2, -3, 3), (6, 2, 9, 9), "w"],
            ),
        ),
        ("max_pool2d", pool, _pool_call, pool_bad),
        ("avg_pool2d", pool_avg, _pool_call, pool_bad),
        (
            "max_pool2d dilated",
            dict(pool, dilation=2),
            _pool_call,
            {"dilation": [d for d in _BAD_INTS if d is not None] + [(1, 6)]},
        ),
        (
            "avg_pool2d divisor_override",
            dict(pool_avg, divisor_override=3),
            _pool_call,
            {"divisor_override": [0, 1.5, "2", True, (2,), 2j]},
        ),
        (
            "adaptive_max_pool2d",
            dict(x=_X, output_size=(3, None)),
            lambda a: fastconv.adaptive_max_pool2d(a["x"], a["output_size"]),
            {
                "x": _BAD_ARRAYS[1:] + [np.ones((2, 4, 0, 6))],
                "output_size": [0, -1, 1.5, "2", (1, 2, 3), (2, 0), True],
            },
        ),
        (
            "linear",
            dense,
            lambda a: fastconv.linear(
                a["x"], a["weight"], a["bias"], activation=a.get("activation")
            ),
            dense_bad,
        ),
        (
            "linear_backward",
            dict(dense, grad_out=np.ones((3, 4)), needs=("input",)),
            lambda a: fastconv.linear_backward(
                a["grad_out"], a["x"], a["weight"], needs=a["needs"]
            ),
            {
                "grad_out": [np.ones((3, 5)), np.ones(4), "g"],
                "x": dense_bad["x"],
                "needs": [5, ("bias", 2), ("x",)],
            },
        ),
        (
            "softmax_cross_entropy",
            softmax,
            lambda a: fastconv.softmax_cross_entropy(a["logits"], a["labels"]),
            softmax_bad,
        ),
        (
            "softmax_cross_entropy_backward",
            dict(log_probs=np.zeros((3, 4)), labels=softmax["labels"], grad_loss=1.0),
            lambda a: fastconv.softmax_cross_entropy_backward(
                a["log_probs"], a["labels"], a["grad_loss"]
            ),
            {
                "log_probs": softmax_bad["logits"],
                "labels": softmax_bad["labels"],
                "grad_loss": ["abc", None, [1.0], 1j],
            },
        ),
        (
            "set_num_threads",
            dict(n=2),
            lambda a: fastconv.set_num_threads(a["n"]),
            {"n": [0, -1, 2**31, 2**63, 1.5, "2", True]},
        ),
    ]


_FAMILIES = _families()


def check_invalid(seed):
    """One bad argument in an otherwise valid call: ValueError or TypeError naming it."""
    rng = np.random.default_rng(seed)
    name, base, call, bad = _FAMILIES[rng.integers(len(_FAMILIES))]
    arg = list(bad)[rng.integers(len(bad))]
    value = bad[arg][rng.integers(len(bad[arg]))]
    threads = fastconv.get_num_threads()
    try:
        call(dict(base, **{arg: value}))
    except (ValueError, TypeError) as exc:
        label = {"n": r"\bn\b"}.get(arg, rf"(?<![\w]){re.escape(arg)}(?![\w])")
        if not re.search(label, str(exc)):
            raise AssertionError(
                f"{name}({arg}={value!r}): {type(exc).__name__} does not name {arg!r}: {exc}"
            ) from None
        return
    finally:
        fastconv.set_num_threads(threads)
    raise AssertionError(f"{name}({arg}={value!r}) raised nothing")


CHECKS = (
    check_valid_conv,
    check_valid_conv,
    check_valid_pool,
    check_invalid,
    check_forced_algorithms,
    check_conv_transpose,
    check_conv1d,
    check_dask,
    check_elementwise,
)


def run_case(seed):
    """The case of `seed` (its family: CHECKS[seed % len(CHECKS)])."""
    if os.environ.get("FASTCONV_FUZZ_SELFTEST_CRASH") == str(seed):  # the runner's own test
        os.abort()
    CHECKS[seed % len(CHECKS)](seed)


# ----------------------------------------------------------------------------- the runner


def _run_chunk(first, count):
    """Run cases first..first+count-1 here; print one line per failure; return failures."""
    failed = 0
    for seed in range(first, first + count):
        try:
            run_case(seed)
            print(f"PASS {seed}", flush=True)
        except Exception as exc:  # a wrong result or an unnamed error: report and go on
            failed += 1
            print(
                f"FAIL seed={seed} {CHECKS[seed % len(CHECKS)].__name__}: "
                f"{type(exc).__name__}: {str(exc)[:300]}",
                flush=True,
            )
    return failed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="first case's seed")
    ap.add_argument("--chunk", type=int, default=500, help="cases per child process")
    ap.add_argument("--replay", type=int, help="run one case here, with its traceback")
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.replay is not None:
        try:
            run_case(args.replay)
        except Exception:
            traceback.print_exc()
            return 1
        print("ok")
        return 0
    if args.child:
        return 1 if _run_chunk(*args.child) else 0
    passed = failed = crashed = 0
    for first in range(args.seed, args.seed + args.cases, args.chunk):
        count = min(args.chunk, args.seed + args.cases - first)
        run = subprocess.run(
            [sys.executable, __file__, "--child", str(first), str(count)],
            capture_output=True,
            text=True,
        )
        lines = run.stdout.splitlines()
        fails = [ln for ln in lines if ln.startswith("FAIL")]
        passes = sum(ln.startswith("PASS") for ln in lines)
        for ln in fails:
            print(ln)
        passed += passes
        failed += count - passes  # a crash, and what it left unrun, count as failed
        if run.returncode not in (0, 1):  # a signal or an unexpected exit: the chunk crashed
            crashed += 1
            print(
                f"CRASH in seeds {first}..{first + count - 1}: exit {run.returncode}\n"
                f"{run.stderr[-2000:]}"
            )
    print(f"crashes: {crashed}")
    print(f"fuzz: {passed} passed, {failed} failed")
    return 1 if failed or crashed else 0


if __name__ == "__main__":
    sys.exit(main())
