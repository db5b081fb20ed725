#!/usr/bin/env python
"""Benchmark fastconv's conv2d forward and backward against a plain NumPy im2col
baseline and (when installed) PyTorch, interleaved in one process.

    python benchmarks/bench_conv.py                       # full suite, CPU, all cores
    env -u OPENBLAS_CORETYPE python benchmarks/bench_conv.py --threads 2 --json out.json
    python benchmarks/bench_conv.py --quick               # the whole run in under a minute
    python benchmarks/bench_conv.py --cases 'lenet|3x3' --impls fastconv,torch
    python benchmarks/bench_conv.py --device gpu          # CuPy arrays, CUDA-event timing

See benchmarks/README.md for what the columns mean.
"""

import argparse
import contextlib
import datetime
import gc
import io
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
import numpy_im2col  # noqa: E402  (the baseline, next to this file; after the sys.path line)

# Relative error (max |a - ref| / max |ref|) above which a result is marked wrong.
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}
# Columns held to no fp32 tolerance (their errors are still recorded); 3xTF32 is held to it.
TF32_COLUMNS = ("torch-tf32", "fastconv-tf32")
FASTCONV_GPU_PRECISIONS = ("tf32", "3xtf32")  # --impls fastconv-tf32, fastconv-3xtf32 (GPU)


# --------------------------------------------------------------------------- cases
@dataclass
class Case:
    name: str
    N: int
    C: int
    H: int
    W: int
    F: int
    K: tuple  # (KH, KW)
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    dtype: str = "float32"
    big: bool = False  # the numpy baseline may be skipped on it (--numpy-skip-big)

    @property
    def out_hw(self):
        return numpy_im2col.conv_output_shape(
            self.H, self.W, self.K[0], self.K[1], self.stride, self.padding, self.dilation
        )

    @property
    def flops_fwd(self):
        OH, OW = self.out_hw
        return 2 * self.N * self.F * OH * OW * (self.C // self.groups) * self.K[0] * self.K[1]

    @property
    def flops_bwd(self):  # input and weight gradients: one forward's worth each
        return 2 * self.flops_fwd

    @property
    def spec(self):
        s = f"{self.N}x{self.C}x{self.H}x{self.W}>{self.F} k{self.K[0]}"
        if self.K[0] != self.K[1]:
            s += f"x{self.K[1]}"
        for tag, v in (
            ("s", self.stride),
            ("p", self.padding),
            ("d", self.dilation),
            ("g", self.groups),
        ):
            if v != (0 if tag == "p" else 1):
                s += f" {tag}{v}"
        return s

    def record(self):
        OH, OW = self.out_hw
        return {
            "name": self.name,
            "spec": self.spec,
            "dtype": self.dtype,
            "x_shape": [self.N, self.C, self.H, self.W],
            "weight_shape": [self.F, self.C // self.groups, self.K[0], self.K[1]],
            "y_shape": [self.N, self.F, OH, OW],
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "flops_fwd": self.flops_fwd,
            "flops_bwd": self.flops_bwd,
            "plan": self.plan,
        }

    @property
    def plan(self):
        """The algorithm fastconv's planner takes for each pass on the CPU (conv2d_plan)."""
        import fastconv

        return fastconv.conv2d_plan(
            (self.N, self.C, self.H, self.W),
            (self.F, self.C // self.groups, self.K[0], self.K[1]),
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            dtype=self.dtype,
        )


def build_suite(quick):
    """The benchmark suite; --quick divides every batch size by 4."""
    q = (lambda n: max(1, n // 4)) if quick else (lambda n: n)
    cases = []
    for n in (64, 256):
        cases.append(Case(f"lenet-conv1-n{q(n)}", q(n), 1, 32, 32, 6, (5, 5)))
        cases.append(Case(f"lenet-conv2-n{q(n)}", q(n), 6, 14, 14, 16, (5, 5)))
    n = q(8)
    for c, hw in ((64, 56), (128, 28), (256, 14), (512, 7)):
        cases.append(Case(f"3x3-c{c}-{hw}", n, c, hw, hw, c, (3, 3), padding=1, big=True))
    cases += [
        Case("3x3s2-c64-56-f128", n, 64, 56, 56, 128, (3, 3), stride=2, padding=1, big=True),
        Case("1x1-c256-56-f64", n, 256, 56, 56, 64, (1, 1), big=True),
        Case("7x7s2-c3-224-f64", n, 3, 224, 224, 64, (7, 7), stride=2, padding=3, big=True),
        Case("dw3x3-c32-112", n, 32, 112, 112, 32, (3, 3), padding=1, groups=32, big=True),
        Case("dil3x3-c64-56", n, 64, 56, 56, 64, (3, 3), padding=2, dilation=2, big=True),
        Case(f"lenet-conv2-n{q(64)}-f64", q(64), 6, 14, 14, 16, (5, 5), dtype="float64"),
    ]
    return cases


def make_data(case, seed=0):
    """Host (NumPy) inputs: x, weight (fan-in scaled), bias, grad_y."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(case.dtype)
    KH, KW = case.K
    OH, OW = case.out_hw
    fan_in = (case.C // case.groups) * KH * KW
    x = rng.standard_normal((case.N, case.C, case.H, case.W), dtype=np.float32).astype(dt)
    w = (
        rng.standard_normal((case.F, case.C // case.groups, KH, KW), dtype=np.float32)
        / np.float32(math.sqrt(fan_in))
    ).astype(dt)
    b = rng.standard_normal(case.F, dtype=np.float32).astype(dt)
    gy = rng.standard_normal((case.N, case.F, OH, OW), dtype=np.float32).astype(dt)
    return x, w, b, gy


# --------------------------------------------------------------------------- implementations
@dataclass
class Impl:
    """One column: prepare(host arrays) -> (fwd, bwd) zero-argument callables returning outputs.

    to_host(output) -> numpy array; timer: "cpu" | "cupy" | "torch".
    """

    name: str
    prepare: object
    to_host: object
    timer: str = "cpu"
    baseline: bool = False  # the numpy/cupy im2col column: reps capped, skippable
    ok_cases: dict = field(default_factory=dict)


def _np_host(a):
    return np.asarray(a)


def fastconv_impl(fc, device, precision=None):
    """fastconv's column; on the GPU ``precision`` ("tf32", "3xtf32") runs the opt-in
    tensor-core kernels (fastconv.gpu_precision) as a column of its own."""
    if device == "gpu":
        import cupy as cp

        def put(a):
            return cp.asarray(a)

        def host(a):
            return cp.asnumpy(a)

        timer = "cupy"
    else:

        def put(a):
            return a

        host, timer = _np_host, "cpu"

    def prepare(case, x, w, b, gy):
        x, w, b, gy = put(x), put(w), put(b), put(gy)
        s, p, d, g = case.stride, case.padding, case.dilation, case.groups
        if precision is None:
            return (
                lambda: fc.conv2d(x, w, b, s, p, d, g),
                lambda: fc.conv2d_backward(gy, x, w, s, p, d, g),
            )

        def fwd():
            with fc.gpu_precision(precision):
                return fc.conv2d(x, w, b, s, p, d, g)

        def bwd():
            with fc.gpu_precision(precision):
                return fc.conv2d_backward(gy, x, w, s, p, d, g)

        return fwd, bwd

    return Impl("fastconv" + (f"-{precision}" if precision else ""), prepare, host, timer)


def baseline_impl(device):
    if device == "gpu":
        import cupy as cp

        put, host, timer, name = cp.asarray, cp.asnumpy, "cupy", "cupy-im2col"
    else:
        put, host, timer, name = (lambda a: a), _np_host, "cpu", "numpy"

    def prepare(case, x, w, b, gy):
        x, w, b, gy = put(x), put(w), put(b), put(gy)
        s, p, d, g = case.stride, case.padding, case.dilation, case.groups
        return (
            lambda: numpy_im2col.conv2d(x, w, b, s, p, d, g),
            lambda: numpy_im2col.conv2d_backward(gy, x, w, s, p, d, g),
        )

    return Impl(name, prepare, host, timer, baseline=True)


def torch_impls(torch, device):
    """torch's forward (F.conv2d, inference mode) and the backward kernel autograd runs
    (aten.convolution_backward: grad input, weight and bias in one call)."""
    dev = "cuda" if device == "gpu" else "cpu"
    conv_bwd = torch.ops.aten.convolution_backward

    def make(tf32):
        def prepare(case, x, w, b, gy):
            x, w, b, gy = (torch.from_numpy(a).to(dev) for a in (x, w, b, gy))
            s, p, d, g = (case.stride,) * 2, (case.padding,) * 2, (case.dilation,) * 2, case.groups
            F = case.F

            def flag():
                if dev == "cuda":
                    torch.backends.cudnn.allow_tf32 = tf32

            def fwd():
                flag()
                with torch.inference_mode():
                    return torch.nn.functional.conv2d(x, w, b, s, p, d, g)

            def bwd():
                flag()
                with torch.inference_mode():
                    return conv_bwd(gy, x, w, [F], s, p, d, False, [0, 0], g, [True, True, True])

            return fwd, bwd

        def host(t):
            return t.detach().cpu().numpy()

        return Impl(
            "torch-tf32" if tf32 else "torch", prepare, host, "torch" if dev == "cuda" else "cpu"
        )

    impls = [make(False)]
    if device == "gpu":
        impls.append(make(True))
    return impls


# --------------------------------------------------------------------------- timing
class Timer:
    def __init__(self, kind, cp=None, torch=None):
        self.kind, self.cp, self.torch = kind, cp, torch

    def __call__(self, fn, calls):
        """Seconds per call over `calls` back-to-back calls."""
        # As in a training loop, each call's output is freed when the next one replaces it.
        out = None
        if self.kind == "cpu":
            t0 = time.perf_counter()
            for _ in range(calls):
                out = fn()
            dt = time.perf_counter() - t0
            del out
            return dt / calls
        if self.kind == "cupy":
            ev0, ev1 = self.cp.cuda.Event(), self.cp.cuda.Event()
            ev0.record()
            for _ in range(calls):
                out = fn()
            ev1.record()
            ev1.synchronize()
            del out
            return self.cp.cuda.get_elapsed_time(ev0, ev1) / 1e3 / calls
        ev0 = self.torch.cuda.Event(enable_timing=True)
        ev1 = self.torch.cuda.Event(enable_timing=True)
        ev0.record()
        for _ in range(calls):
            out = fn()
        ev1.record()
        ev1.synchronize()
        del out
        return ev0.elapsed_time(ev1) / 1e3 / calls


def rel_err(a, ref):
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if a.shape != ref.shape:
        return float("inf")
    if not np.all(np.isfinite(a)):
        return float("inf")
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    return float(np.abs(a - ref).max()) / (scale if scale > 0 else 1.0)


def errors(outs, refs, to_host):
    """Relative errors of (y,) or (gx, gw, gb) against the reference's."""
    return [rel_err(to_host(o), r) for o, r in zip(outs, refs)]


def reference(case, data, torch, device):
    """Reference outputs on the CPU: (y,), (gx, gw, gb).

    CPU runs: torch in the case's dtype when installed, else the numpy baseline.
    GPU runs: float64 on the CPU (torch when installed, else the numpy baseline).
    """
    x, w, b, gy = data
    if device == "gpu":
        x, w, b, gy = (a.astype(np.float64) for a in (x, w, b, gy))
    s, p, d, g = case.stride, case.padding, case.dilation, case.groups
    if torch is not None:
        t = [torch.from_numpy(a) for a in (x, w, b, gy)]
        with torch.inference_mode():
            y = torch.nn.functional.conv2d(t[0], t[1], t[2], s, p, d, g).numpy()
            grads = torch.ops.aten.convolution_backward(
                t[3], t[0], t[1], [case.F], (s, s), (p, p), (d, d), False, [0, 0], g, [True] * 3
            )
        return (y,), tuple(a.numpy() for a in grads), "torch"
    y = numpy_im2col.conv2d(x, w, b, s, p, d, g)
    return (y,), numpy_im2col.conv2d_backward(gy, x, w, s, p, d, g), "numpy"


class LoadMeter:
    """CPU time used by other processes (and the hypervisor: steal) while it runs, as a fraction of
    all CPUs: the machine noise a benchmark cannot interleave away. Linux only (None elsewhere)."""

    def __init__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()

    @staticmethod
    def _busy():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
        return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own():
        t = os.times()
        return t.user + t.system

    def other(self):
        busy = self._busy()
        if busy is None or self.busy0 is None:
            return None
        wall = time.perf_counter() - self.t0
        if wall < 0.05:  # too short for the 10 ms clock ticks of /proc/stat
            return 0.0
        other = (busy - self.busy0) - (self._own() - self.own0)
        return max(0.0, other / (wall * (os.cpu_count() or 1)))


def time_phase(phase, active, args, timers):
    """Warm up, then time reps interleaved across implementations: {name: (times, calls)}."""
    plan = []
    for impl, fwd, bwd in active:
        fn = fwd if phase == "fwd" else bwd
        timer = timers[impl.timer]
        t = min(timer(fn, 1) for _ in range(args.warmup if not impl.baseline else 1))
        # calls per rep so that one rep lasts >= min_rep_s (the baseline is slow enough as it is)
        calls = (
            1
            if impl.baseline
            else max(1, min(args.max_calls, math.ceil(args.min_rep_s / max(t, 1e-9))))
        )
        reps = min(args.reps, args.numpy_reps) if impl.baseline else args.reps
        plan.append((impl, fn, timer, calls, reps, []))
    gc.collect()
    gc.disable()
    try:
        for r in range(args.reps):
            k = r % max(1, len(plan))
            for impl, fn, timer, calls, reps, times in plan[k:] + plan[:k]:  # rotate the order
                if r < reps:
                    if (
                        len(plan) > 1 and not impl.baseline
                    ):  # untimed: absorbs the switch from another column
                        for _ in range(args.switch_warmup):
                            fn()
                    times.append(timer(fn, calls))
    finally:
        gc.enable()
    return {impl.name: (times, calls) for impl, fn, timer, calls, reps, times in plan}


def run_case(case, impls, args, timers, torch):
    """Check every implementation, then time forward and backward, interleaved rep by rep."""
    data = make_data(case)
    ref_fwd, ref_bwd, ref_name = reference(case, data, torch, args.device)
    tol = TOLERANCE[case.dtype]
    rec = case.record()
    rec.update(
        reference=ref_name + (" float64" if args.device == "gpu" else ""),
        tolerance=tol,
        errors={},
        skipped={},
        fwd={},
        bwd={},
    )

    skip_baseline = args.numpy_skip_big and case.big
    active = []
    for impl in impls:
        if impl.baseline and (skip_baseline or args.numpy_reps == 0):
            rec["skipped"][impl.name] = "--numpy-skip-big" if skip_baseline else "--numpy-reps 0"
            continue
        try:
            fwd, bwd = impl.prepare(case, *data)
            y = fwd()  # the first warm-up call doubles as the correctness check
            grads = bwd()
            err = {
                "fwd": errors((y,), ref_fwd, impl.to_host),
                "bwd": errors(grads[:3], ref_bwd, impl.to_host),
            }
            del y, grads
        except Exception as e:  # a missing path (e.g. no GPU kernel yet) skips the column
            rec["skipped"][impl.name] = f"{type(e).__name__}: {e}"
            continue
        rec["errors"][impl.name] = err
        active.append((impl, fwd, bwd))

    for phase in ("fwd", "bwd"):
        flops = case.flops_fwd if phase == "fwd" else case.flops_bwd
        for attempt in range(args.retries + 1):
            meter = LoadMeter()
            res = time_phase(phase, active, args, timers)
            busy = meter.other()
            if busy is None or busy <= args.busy_limit or attempt == args.retries:
                break
            print(
                f"  [{case.name} {phase}: other processes used {100 * busy:.0f}% of the CPUs; timing again]",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(1.0 + attempt)  # let a burst of other work pass
        rec.setdefault("busy", {})[phase] = busy
        rec.setdefault("attempts", {})[phase] = attempt + 1
        for name, (times, calls) in res.items():
            med = statistics.median(times)
            rec[phase][name] = {
                "median_ms": med * 1e3,
                "times_ms": [t * 1e3 for t in times],
                "calls_per_rep": calls,
                "gflops": flops / med / 1e9,
            }
    del active, data
    gc.collect()

    # ratios (time / time)
    rec["ratios"] = {}
    for phase in ("fwd", "bwd"):
        t = {k: v["median_ms"] for k, v in rec[phase].items()}
        r = {}
        for other in ("torch", "torch-tf32"):
            if "fastconv" in t and other in t:
                r[f"fastconv/{other}"] = t["fastconv"] / t[other]
        for ours in ("fastconv-tf32", "fastconv-3xtf32"):  # tensor cores against cuDNN's TF32
            if ours in t and "torch-tf32" in t:
                r[f"{ours}/torch-tf32"] = t[ours] / t["torch-tf32"]
        base = next((k for k in ("numpy", "cupy-im2col") if k in t), None)
        if base and "fastconv" in t:
            r[f"{base}/fastconv"] = t[base] / t["fastconv"]
        rec["ratios"][phase] = r
    rec["ok"] = {
        name: all(e <= tol for e in err["fwd"] + err["bwd"]) for name, err in rec["errors"].items()
    }
    return rec


def geomean(vals):
    vals = [v for v in vals if v and v > 0 and math.isfinite(v)]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


# --------------------------------------------------------------------------- environment
def cpu_model():
    name, fam, model, flags = None, None, None, ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key, val = key.strip(), val.strip()
                if key == "model name" and name is None:
                    name = val
                elif key == "cpu family" and fam is None:
                    fam = val
                elif key == "model" and model is None:
                    model = val
                elif key == "flags" and not flags:
                    flags = val
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    extra = []
    if fam is not None:
        extra.append(f"family {fam} model {model}")
    isa = [f for f in ("avx512f", "avx2") if f in flags.split()]
    if isa:
        extra.append(isa[0])
    return name + (f" ({', '.join(extra)})" if extra else "")


def logical_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _blas_entry(e):
    keep = (
        "internal_api",
        "prefix",
        "version",
        "architecture",
        "threading_layer",
        "num_threads",
        "filepath",
    )
    return {k: e.get(k) for k in keep if k in e}


def blas_info():
    """(numpy's BLAS, scipy's BLAS) as threadpoolctl entries; scipy's found by loading it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None, None
    before = [e for e in threadpool_info() if e.get("user_api") == "blas"]
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS, the one fastconv's kernels call)

    after = [e for e in threadpool_info() if e.get("user_api") == "blas"]
    seen = {e["filepath"] for e in before}
    scipy_blas = [e for e in after if e["filepath"] not in seen]
    if not scipy_blas:  # scipy shares numpy's BLAS (distro / conda builds)
        scipy_blas = after
    return ([_blas_entry(e) for e in before], [_blas_entry(e) for e in scipy_blas])


def describe_blas(entries):
    if not entries:
        return "unknown (threadpoolctl not installed)"
    return "; ".join(
        f"{e.get('internal_api')} {e.get('version')} core={e.get('architecture', '?')} "
        f"({os.path.basename(e.get('filepath', ''))})"
        for e in entries
    )


# --------------------------------------------------------------------------- output
def fmt_ms(v):
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:.0f}"
    if v >= 100:
        return f"{v:.1f}"
    if v >= 10:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}"


class Table:
    def __init__(self, impl_names, ratio_key):
        self.impls = impl_names
        self.ratio_key = ratio_key  # e.g. "fastconv/torch"
        self.cols = [("case", 21, "<"), ("shape", 27, "<"), ("algorithm f/gi/gw", 17, "<")]
        for phase in ("fwd", "bwd"):
            self.cols += [(f"{phase} {n}", max(9, len(n) + 1), ">") for n in impl_names]
            self.cols += [("GF/s", 7, ">"), ("ft/torch", 8, ">")]
        self.cols += [("busy%", 5, ">"), ("check", 6, "<")]

    def line(self, values):
        return " ".join(f"{str(v)[:w]:{a}{w}}" for v, (_, w, a) in zip(values, self.cols))

    def header(self):
        top = " ".join(f"{'':{w}}" for _, w, _ in self.cols[:3])
        width = sum(w + 1 for _, w, _ in self.cols[3 : 3 + len(self.impls) + 2]) - 1
        top += (
            " "
            + f"{'forward: ms per call':^{width}}"
            + " "
            + f"{'backward (dx, dw, db): ms per call':^{width}}"
        )
        names = [
            c[0].split(" ", 1)[-1] if c[0].startswith(("fwd ", "bwd ")) else c[0] for c in self.cols
        ]
        sep = "-" * (sum(w + 1 for _, w, _ in self.cols) - 1)
        return "\n".join([top, self.line(names), sep])

    def row(self, rec):
        plan = rec.get("plan") or {}
        short = "/".join(plan.get(p, "-")[:4] for p in ("forward", "grad_input", "grad_weight"))
        vals = [rec["name"], rec["spec"], short]
        for phase in ("fwd", "bwd"):
            for n in self.impls:
                vals.append(fmt_ms(rec[phase].get(n, {}).get("median_ms")))
            ft = rec[phase].get("fastconv")
            vals.append(f"{ft['gflops']:.1f}" if ft else "-")
            vals.append(fmt_ratio(rec["ratios"][phase].get(self.ratio_key)))
        busy = [b for b in rec.get("busy", {}).values() if b is not None]
        vals.append(f"{100 * max(busy):.0f}" if busy else "-")
        vals.append(check_mark(rec))
        return self.line(vals)


def check_mark(rec):
    marks = []
    for name, err in rec["errors"].items():
        tol = rec["tolerance"]
        if name in TF32_COLUMNS:  # TF32 is expected to miss an fp32 tolerance
            continue
        bad = "".join(p[0] for p in ("fwd", "bwd") if any(e > tol for e in err[p]))
        if bad:
            marks.append(("FC!" if name == "fastconv" else name[:2] + "!") + bad)
    if "fastconv" not in rec["errors"]:
        return "n/a"
    return " ".join(marks) if marks else "ok"


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="cpu: NumPy arrays (default); gpu: CuPy arrays, torch on cuda, CUDA-event timing",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for every column: fastconv.set_num_threads, torch.set_num_threads and "
        "threadpoolctl's BLAS limit (default: the CPUs this process may use)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="batch sizes / 4, 3 reps, 1 baseline rep, no re-timing when busy: < 1 minute",
    )
    p.add_argument(
        "--cases", default=None, metavar="REGEX", help="only cases whose name matches (re.search)"
    )
    p.add_argument(
        "--impls",
        default="fastconv,torch,numpy",
        help="comma-separated columns: fastconv, torch, numpy (default: all; torch is dropped "
        "with a note when it is not installed); on --device gpu also fastconv-tf32, "
        "fastconv-3xtf32 (fastconv.gpu_precision)",
    )
    p.add_argument(
        "--reps", type=int, default=None, help="timed repetitions (default 7, --quick 3)"
    )
    p.add_argument(
        "--numpy-reps",
        type=int,
        default=None,
        help="cap on the baseline's repetitions (default 3, --quick 1; 0 skips it)",
    )
    p.add_argument(
        "--numpy-skip-big", action="store_true", help="skip the baseline on the big (batch-8) cases"
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="warm-up calls per implementation (default 2, --quick 1)",
    )
    p.add_argument(
        "--min-rep-ms",
        type=float,
        default=None,
        help="calls per rep are repeated until a rep lasts this long (default 20, --quick 5)",
    )
    p.add_argument(
        "--busy-limit",
        type=float,
        default=0.10,
        help="re-time a case when other processes used more than this fraction of the CPUs "
        "during it (default 0.10)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=None,
        help="re-timings allowed per case and phase when busy (default 2, --quick 0)",
    )
    p.add_argument(
        "--switch-warmup",
        type=int,
        default=2,
        help="untimed calls before each timed rep, after switching from another column (default 2): "
        "they absorb what the previous column left behind (allocator state, caches, threads)",
    )
    p.add_argument(
        "--json", default=None, metavar="PATH", help="write all results and the environment here"
    )
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    args = p.parse_args(argv)
    q = args.quick
    args.reps = args.reps if args.reps is not None else (3 if q else 7)
    args.numpy_reps = args.numpy_reps if args.numpy_reps is not None else (1 if q else 3)
    args.warmup = max(1, args.warmup if args.warmup is not None else (1 if q else 2))
    args.min_rep_s = (
        args.min_rep_ms if args.min_rep_ms is not None else (5.0 if q else 20.0)
    ) / 1e3
    args.max_calls = 50
    args.retries = args.retries if args.retries is not None else (0 if q else 2)
    return args


def main(argv=None):
    args = parse_args(argv)
    suite = build_suite(args.quick)
    if args.cases:
        rx = re.compile(args.cases)
        suite = [c for c in suite if rx.search(c.name)]
    if args.list:
        for c in suite:
            print(f"{c.name:24} {c.spec:30} {c.dtype}  {c.flops_fwd / 1e9:.3f} GFLOP fwd")
        return 0
    if not suite:
        print("no case matches --cases", file=sys.stderr)
        return 2
    wanted = [s.strip() for s in args.impls.split(",") if s.strip()]
    tc_cols = [f"fastconv-{m}" for m in FASTCONV_GPU_PRECISIONS]
    unknown = set(wanted) - {"fastconv", "torch", "numpy", *tc_cols}
    if unknown:
        print(f"unknown --impls {sorted(unknown)}", file=sys.stderr)
        return 2

    coretype = os.environ.get("OPENBLAS_CORETYPE")
    numpy_blas, scipy_blas = blas_info()  # before torch/fastconv so scipy's BLAS is told apart
    notes = []

    if args.device != "gpu" and set(tc_cols) & set(wanted):
        print("--impls fastconv-tf32 / fastconv-3xtf32 need --device gpu", file=sys.stderr)
        return 2
    fc = None
    if any(w.startswith("fastconv") for w in wanted):
        try:
            import fastconv as fc
        except ImportError as e:
            print(
                f"error: fastconv is not importable ({e}).\nBuild it in place first, or run "
                "without it: --impls torch,numpy",
                file=sys.stderr,
            )
            return 2
        if not hasattr(
            fc, "conv2d"
        ):  # e.g. the unbuilt source folder imported as a namespace package
            print(
                f"error: the fastconv found at {list(getattr(fc, '__path__', []))} has no conv2d "
                "(not built?)",
                file=sys.stderr,
            )
            return 2
    torch = None
    if "torch" in wanted or args.device == "gpu":
        try:
            import torch
        except ImportError:
            notes.append("torch is not installed: its columns are skipped")
    cp = None
    if args.device == "gpu":
        try:
            import cupy as cp

            cp.cuda.runtime.getDeviceCount()
        except Exception as e:
            print(
                f"error: --device gpu needs CuPy and a CUDA device ({type(e).__name__}: {e})",
                file=sys.stderr,
            )
            return 2
        if torch is not None and not torch.cuda.is_available():
            notes.append("torch has no CUDA: its GPU columns are skipped")
            torch_cols = False
        else:
            torch_cols = torch is not None and "torch" in wanted
    else:
        torch_cols = torch is not None and "torch" in wanted

    # one thread count for every column
    nthreads = args.threads or logical_cpus()
    limiter = None
    if fc is not None:
        fc.set_num_threads(nthreads)
    if torch is not None:
        torch.set_num_threads(nthreads)
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=nthreads, user_api="blas")  # held for the whole run
    except ImportError:
        notes.append("threadpoolctl is not installed: NumPy's BLAS threads are not limited")

    impls = []
    if fc is not None and "fastconv" in wanted:
        impls.append(fastconv_impl(fc, args.device))
    for mode in FASTCONV_GPU_PRECISIONS:
        if fc is not None and f"fastconv-{mode}" in wanted:
            impls.append(fastconv_impl(fc, args.device, mode))
    if torch_cols:
        impls += torch_impls(torch, args.device)
    if "numpy" in wanted:
        impls.append(baseline_impl(args.device))
    timers = {
        "cpu": Timer("cpu"),
        "cupy": Timer("cupy", cp=cp),
        "torch": Timer("torch", torch=torch),
    }

    # ---------------------------------------------------------------- header
    env = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": args.device,
        "fastconv": getattr(fc, "__version__", None) if fc else None,
        "fastconv_file": getattr(fc, "__file__", None) if fc else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "logical_cpus": logical_cpus(),
        "threads": nthreads,
        "fastconv_threads": fc.get_num_threads() if fc else None,
        "torch": getattr(torch, "__version__", None),
        "torch_threads": torch.get_num_threads() if torch else None,
        "OPENBLAS_CORETYPE": coretype,
        "numpy_blas": numpy_blas,
        "scipy_blas": scipy_blas,
        "thread_env": {
            k: os.environ[k]
            for k in (
                "OMP_NUM_THREADS",
                "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS",
                "OMP_WAIT_POLICY",
                "OPENBLAS_THREAD_TIMEOUT",
            )
            if k in os.environ
        },
    }
    try:
        from threadpoolctl import threadpool_info

        env["openmp"] = [_blas_entry(e) for e in threadpool_info() if e.get("user_api") == "openmp"]
    except ImportError:
        env["openmp"] = None
    try:
        import scipy

        env["scipy"] = scipy.__version__
    except ImportError:
        pass
    if fc is not None and hasattr(fc, "show_config"):
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                ret = fc.show_config()
            text = buf.getvalue()
            if not text.strip() and ret is not None:
                text = json.dumps(ret, indent=1, default=str) if not isinstance(ret, str) else ret
        except Exception as e:
            text = f"show_config() failed: {type(e).__name__}: {e}"
        env["fastconv_config"] = text
    if args.device == "gpu":
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        env["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        env["cupy"] = cp.__version__
        env["cuda_runtime"] = cp.cuda.runtime.runtimeGetVersion()
        if torch is not None:
            env["torch_cuda"] = torch.version.cuda
            env["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None

    out = sys.stdout
    print("fastconv conv2d benchmark", file=out)
    print(
        f"  fastconv      {env['fastconv'] or '(not run)'}"
        + (f"  [{os.path.dirname(env['fastconv_file'])}]" if env.get("fastconv_file") else ""),
        file=out,
    )
    print(
        f"  device        {args.device}"
        + (f": {env['gpu']}, CuPy {env['cupy']}" if args.device == "gpu" else ""),
        file=out,
    )
    print(f"  CPU           {env['cpu']}, {env['logical_cpus']} logical CPUs available", file=out)
    print(
        f"  threads       {nthreads} for every column (fastconv {env['fastconv_threads']}, "
        f"torch {env['torch_threads']}, NumPy BLAS limited by threadpoolctl)",
        file=out,
    )
    print(f"  SciPy BLAS    {describe_blas(scipy_blas)}   <- fastconv's GEMM", file=out)
    print(f"  NumPy BLAS    {describe_blas(numpy_blas)}   <- numpy baseline", file=out)
    if env["openmp"]:
        libs = "; ".join(
            f"{os.path.basename(e.get('filepath', ''))} ({e.get('num_threads')} threads)"
            for e in env["openmp"]
        )
        shared = "   (one runtime, shared by every column)" if len(env["openmp"]) == 1 else ""
        print(f"  OpenMP        {libs}{shared}", file=out)
    print(f"  OPENBLAS_CORETYPE = {coretype if coretype is not None else '(unset)'}", file=out)
    if coretype is not None:
        print(
            f"  WARNING: OPENBLAS_CORETYPE={coretype} forces OpenBLAS's kernels for that core (Haswell: AVX2, "
            "about half the\n           SGEMM speed of an AVX-512 CPU). Users do not have it set; headline "
            "figures are taken with\n           it unset:  env -u OPENBLAS_CORETYPE python "
            "benchmarks/bench_conv.py",
            file=out,
        )
    tv = env["torch"] or "(not installed)"
    if args.device == "gpu" and torch is not None:
        tv += (
            f", CUDA {env.get('torch_cuda')}, cuDNN {env.get('cudnn')}; 'torch' = strict fp32 "
            "(allow_tf32=False), 'torch-tf32' = torch's default"
        )
    print(f"  torch         {tv}", file=out)
    print(f"  NumPy {np.__version__}, SciPy {env.get('scipy')}, Python {env['python']}", file=out)
    print(
        f"  timing        {'CUDA events' if args.device == 'gpu' else 'perf_counter'}; median of {args.reps} "
        f"reps (baseline {min(args.reps, args.numpy_reps)}), implementations interleaved rep by rep; "
        f"{args.warmup} warm-up call(s), then {args.switch_warmup} untimed before each rep",
        file=out,
    )
    if env.get("fastconv_config"):
        print("  fastconv.show_config():", file=out)
        for line in env["fastconv_config"].rstrip().splitlines():
            print("    " + line, file=out)
    for n in notes:
        print(f"  note: {n}", file=out)
    print(file=out)

    names = [i.name for i in impls]
    table = Table(names, "fastconv/torch")
    print(table.header(), file=out, flush=True)

    records = []
    t_start = time.perf_counter()
    try:
        for case in suite:
            rec = run_case(case, impls, args, timers, torch)
            records.append(rec)
            print(table.row(rec), file=out, flush=True)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    elapsed = time.perf_counter() - t_start

    # ---------------------------------------------------------------- summary
    print("-" * len(table.header().splitlines()[-1]), file=out)
    geo = {}
    base_name = "cupy-im2col" if args.device == "gpu" else "numpy"
    keys = ["fastconv/torch", f"{base_name}/fastconv"] + (
        ["fastconv/torch-tf32"] + [f"fastconv-{m}/torch-tf32" for m in FASTCONV_GPU_PRECISIONS]
        if args.device == "gpu"
        else []
    )
    for phase in ("fwd", "bwd"):
        geo[phase] = {}
        for key in keys:
            vals = [r["ratios"][phase].get(key) for r in records]
            vals = [v for v in vals if v is not None]
            geo[phase][key] = {"geomean": geomean(vals), "cases": len(vals)}
    label = {"fwd": "forward ", "bwd": "backward"}
    for phase in ("fwd", "bwd"):
        parts = []
        for key in keys:
            g = geo[phase][key]
            if g["geomean"] is not None:
                parts.append(f"{key} = {g['geomean']:.3f} ({g['cases']} cases)")
        print(
            f"geomean {label[phase]}  time ratio  "
            + ("   ".join(parts) if parts else "(nothing to compare)"),
            file=out,
        )
    print(
        "  fastconv/torch < 1: fastconv faster than torch;  "
        f"{base_name}/fastconv > 1: fastconv faster than the baseline",
        file=out,
    )

    bad = [r for r in records if check_mark(r) not in ("ok", "n/a")]
    skipped = {
        (r["name"], k): v
        for r in records
        for k, v in r["skipped"].items()
        if not v.startswith("--")
    }
    if bad:
        print(
            "\nMISMATCHES (max |a - ref| / max |ref| per output; tolerance in brackets):", file=out
        )
        for r in bad:
            for name, err in r["errors"].items():
                if name in TF32_COLUMNS:
                    continue
                if any(e > r["tolerance"] for e in err["fwd"] + err["bwd"]):
                    print(
                        f"  {r['name']:22} {name:11} vs {r['reference']}: y {err['fwd'][0]:.2e}  "
                        + "  ".join(f"{k} {e:.2e}" for k, e in zip(("gx", "gw", "gb"), err["bwd"]))
                        + f"  [{r['tolerance']:.0e}]",
                        file=out,
                    )
    if skipped:
        print("\nSKIPPED (an implementation raised):", file=out)
        for (case, name), why in skipped.items():
            print(f"  {case:22} {name:11} {why[:200]}", file=out)
    noisy = [
        r["name"]
        for r in records
        if any(b is not None and b > args.busy_limit for b in r.get("busy", {}).values())
    ]
    if noisy:
        print(
            f"\nWARNING: other processes used more than {100 * args.busy_limit:.0f}% of the CPUs while timing "
            f"{', '.join(noisy)} (column busy%): those figures are unreliable; run again on a quiet machine",
            file=out,
        )
    n_base_skipped = sum(1 for r in records if "--numpy-skip-big" in r["skipped"].values())
    if n_base_skipped:
        print(
            f"\nnote: the {base_name} baseline was skipped on {n_base_skipped} big case(s) (--numpy-skip-big)",
            file=out,
        )
    print(f"\ntotal {elapsed:.1f} s", file=out)

    if args.json:
        result = {
            "environment": env,
            "config": {k: v for k, v in vars(args).items() if k != "json"}
            | {"implementations": names},
            "cases": records,
            "geomeans": geo,
            "elapsed_s": elapsed,
        }
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
        print(f"wrote {args.json}", file=out)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
