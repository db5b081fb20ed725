#!/usr/bin/env python
"""Benchmark the toolkit ops side by side with PyTorch: a transposed 4x4 stride-2 upsampling layer
and a long 1-D convolution, forward and backward, interleaved in one process (bench_conv.py's
timing, retry-when-busy and JSON conventions).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_toolkit.py --threads 2 \
        --json benchmarks/results/toolkit_cpu_2threads.json

Columns: ``fastconv`` (conv_transpose2d / conv1d and their backward), ``torch`` (F.conv_transpose2d
/ F.conv1d in inference mode; backward = aten.convolution_backward, what autograd runs), and for
the 1-D case ``fastconv-2d``: conv2d on the (N, C, 1, L) view, the work conv1d hands over, to show
the 1-D wrapper costs nothing.

``--cpu-time`` times with the process's CPU time (all its threads) instead of the wall clock: on a
shared machine other processes' load then inflates neither column, which makes it the fairer
measure of the work each implementation does (with ``--threads 1``: single-core efficiency).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from bench_conv import (  # noqa: E402
    Impl,
    LoadMeter,
    Timer,
    blas_info,
    cpu_model,
    describe_blas,
    logical_cpus,
    rel_err,
    time_phase,
)

TOLERANCE = 1e-4  # float32, relative to max |torch|


class CpuTimer(Timer):
    """bench_conv's CPU timer on time.process_time: CPU seconds of every thread of the process."""

    def __call__(self, fn, calls):
        out = None
        t0 = time.process_time()
        for _ in range(calls):
            out = fn()
        dt = time.process_time() - t0
        del out
        return dt / calls


def cases():
    """name -> (description, make(rng) -> arrays, {column: (fwd, bwd) builder})."""
    return {
        "convT4x4s2-c64-28-to-c32": dict(
            spec="8x64x28x28 -> 32x56x56, k4 s2 p1, bias",
            x=(8, 64, 28, 28),
            w=(64, 32, 4, 4),
            b=32,
            y=(8, 32, 56, 56),
            kind="transpose",
            stride=2,
            padding=1,
            macs=8 * 64 * 28 * 28 * 32 * 16,
        ),
        "conv1d-c64-l4096-k9-to-c64": dict(
            spec="32x64x4096 -> 64x4088, k9, bias",
            x=(32, 64, 4096),
            w=(64, 64, 9),
            b=64,
            y=(32, 64, 4088),
            kind="1d",
            stride=1,
            padding=0,
            macs=32 * 64 * 4088 * 64 * 9,
        ),
    }


def make_data(case, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case["x"], dtype=np.float32)
    fan_in = int(np.prod(case["w"][1:]))
    w = rng.standard_normal(case["w"], dtype=np.float32) / np.float32(np.sqrt(fan_in))
    b = rng.standard_normal(case["b"], dtype=np.float32)
    gy = rng.standard_normal(case["y"], dtype=np.float32)
    return x, w, b, gy


def fastconv_impls(fc, case):
    s, p = case["stride"], case["padding"]

    def prepare_main(x, w, b, gy):
        if case["kind"] == "transpose":
            return (
                lambda: fc.conv_transpose2d(x, w, b, s, p),
                lambda: fc.conv_transpose2d_backward(gy, x, w, s, p),
            )
        return (lambda: fc.conv1d(x, w, b, s, p), lambda: fc.conv1d_backward(gy, x, w, s, p))

    impls = [Impl("fastconv", prepare_main, np.asarray)]
    if case["kind"] == "1d":

        def prepare_2d(x, w, b, gy):
            x4, w4, gy4 = x[:, :, None, :], w[:, :, None, :], gy[:, :, None, :]
            return (
                lambda: fc.conv2d(x4, w4, b, (1, s), (0, p)).reshape(case["y"]),
                lambda: tuple(
                    g.reshape(a.shape) if g.ndim == 4 else g
                    for g, a in zip(fc.conv2d_backward(gy4, x4, w4, (1, s), (0, p)), (x, w, b))
                ),
            )

        impls.append(Impl("fastconv-2d", prepare_2d, np.asarray))
    return impls


def torch_impl(torch, case):
    bwd_op = torch.ops.aten.convolution_backward
    s, p = case["stride"], case["padding"]
    transposed = case["kind"] == "transpose"
    dims = 2 if transposed else 1

    def prepare(x, w, b, gy):
        x, w, b, gy = (torch.from_numpy(a) for a in (x, w, b, gy))
        F = case["b"]

        def fwd():
            with torch.inference_mode():
                if transposed:
                    return torch.nn.functional.conv_transpose2d(x, w, b, s, p)
                return torch.nn.functional.conv1d(x, w, b, s, p)

        def bwd():
            with torch.inference_mode():
                return bwd_op(
                    gy,
                    x,
                    w,
                    [F],
                    [s] * dims,
                    [p] * dims,
                    [1] * dims,
                    transposed,
                    [0] * dims,
                    1,
                    [True, True, True],
                )

        return fwd, bwd

    return Impl("torch", prepare, lambda t: t.detach().numpy())


def run_case(name, case, impls, args, timers):
    data = make_data(case)
    rec = dict(
        name=name, spec=case["spec"], dtype="float32", macs=case["macs"], errors={}, fwd={}, bwd={}
    )
    active = []
    for impl in impls:
        fwd, bwd = impl.prepare(*data)
        active.append((impl, fwd, bwd))
    # correctness: every column against torch (or fastconv when torch is missing)
    ref_impl = next((a for a in active if a[0].name == "torch"), active[0])
    ref_fwd = ref_impl[0].to_host(ref_impl[1]())
    ref_bwd = [ref_impl[0].to_host(g) for g in ref_impl[2]()]
    for impl, fwd, bwd in active:
        rec["errors"][impl.name] = {
            "fwd": [rel_err(impl.to_host(fwd()), ref_fwd)],
            "bwd": [rel_err(impl.to_host(g), r) for g, r in zip(bwd(), ref_bwd)],
        }
    for phase in ("fwd", "bwd"):
        for attempt in range(args.retries + 1):
            meter = LoadMeter()
            res = time_phase(phase, active, args, timers)
            busy = meter.other()
            if busy is None or busy <= args.busy_limit or attempt == args.retries:
                break
            print(
                f"  [{name} {phase}: other processes used {100 * busy:.0f}% of the CPUs; "
                f"timing again]",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(1.0 + attempt)
        rec.setdefault("busy", {})[phase] = busy
        flops = 2 * case["macs"] * (1 if phase == "fwd" else 2)
        for impl_name, (times, calls) in res.items():
            med = statistics.median(times)
            rec[phase][impl_name] = {
                "median_ms": med * 1e3,
                "times_ms": [t * 1e3 for t in times],
                "calls_per_rep": calls,
                "gflops": flops / med / 1e9,
            }
    rec["ratios"] = {
        phase: {
            f"{n}/torch": rec[phase][n]["median_ms"] / rec[phase]["torch"]["median_ms"]
            for n in rec[phase]
            if n != "torch" and "torch" in rec[phase]
        }
        for phase in ("fwd", "bwd")
    }
    rec["ok"] = {
        n: all(e <= TOLERANCE for e in err["fwd"] + err["bwd"]) for n, err in rec["errors"].items()
    }
    return rec


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--threads", type=int, default=None, help="threads for every column")
    p.add_argument("--reps", type=int, default=7, help="timed repetitions (medians)")
    p.add_argument("--retries", type=int, default=2, help="re-timings when the machine is busy")
    p.add_argument("--busy-limit", type=float, default=0.10)
    p.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with process CPU time instead of the wall clock (see above)",
    )
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args(argv)
    args.warmup, args.switch_warmup, args.min_rep_s, args.max_calls = 2, 2, 0.02, 50
    args.numpy_reps = args.reps

    numpy_blas, scipy_blas = blas_info()
    import fastconv as fc

    try:
        import torch
    except ImportError:
        torch = None
    nthreads = args.threads or logical_cpus()
    fc.set_num_threads(nthreads)
    limiter = None
    if torch is not None:
        torch.set_num_threads(nthreads)
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=nthreads, user_api="blas")
    except ImportError:
        pass
    env = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "fastconv": fc.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "threads": nthreads,
        "torch": getattr(torch, "__version__", None),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "scipy_blas": scipy_blas,
        "numpy_blas": numpy_blas,
    }
    print(
        f"fastconv toolkit benchmark: {env['cpu']}, {nthreads} threads, torch {env['torch']}, "
        f"OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE'] or '(unset)'}"
    )
    clock = "process CPU time" if args.cpu_time else "wall clock"
    env["clock"] = clock
    print(
        f"  SciPy BLAS {describe_blas(scipy_blas)}; median of {args.reps} interleaved reps, {clock}"
    )
    timers = {"cpu": CpuTimer("cpu") if args.cpu_time else Timer("cpu")}
    records = []
    try:
        for name, case in cases().items():
            impls = fastconv_impls(fc, case) + ([torch_impl(torch, case)] if torch else [])
            rec = run_case(name, case, impls, args, timers)
            records.append(rec)
            for phase in ("fwd", "bwd"):
                cols = "  ".join(f"{n} {v['median_ms']:8.2f} ms" for n, v in rec[phase].items())
                ratios = "  ".join(f"{k} {v:.2f}" for k, v in rec["ratios"][phase].items())
                print(
                    f"{name:24} {phase}  {cols}   {ratios}   busy "
                    f"{100 * (rec['busy'][phase] or 0):.0f}%  ok {rec['ok']}",
                    flush=True,
                )
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "cases": records}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
