#!/usr/bin/env python
"""Winograd grad-weight F(3x3, 4x4) against fastconv's GEMM grad-weight and PyTorch, interleaved,
on the 3x3 stride-1 cases of bench_conv.py (ResNet layers and the dilated 3x3), and the whole
backward before and after the planner chose it.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_wgrad.py --threads 2
    ... --threads 1 --clock cpu --json out.json   # CPU time: steadier on a shared machine
    ... --sweep --threads 1 --clock cpu --json sweep.json   # the planner's threshold (below)

Columns, grad-weight (gw) and the whole backward (bw: grad-input, grad-weight, grad-bias):
  before   gw: fastconv.conv2d_grad_weight(algorithm="gemm"); bw: fastconv.conv2d_backward with
           the planner's choices of before (grad-weight never Winograd)
  after    gw: fastconv.conv2d_grad_weight(algorithm="winograd"); bw: fastconv.conv2d_backward
           ("auto", the planner's choices now)
  torch    aten.convolution_backward with the weight gradient only (gw) or all three (bw)
Times are medians of --reps reps, the columns interleaved rep by rep (the order rotates), so
machine noise hits all columns alike; busy% is the CPU share other processes took meanwhile (as
bench_conv.py measures it). err: max |gw - ref| / max |ref|, ref in float64.

--sweep: grad-weight only, Winograd forced against the algorithm the planner chose before it
(direct or GEMM), batch 8, padding 1, (C, F) from 3 to 512 and sizes 7 to 112 (the planner's
threshold cites this).
"""

import argparse
import contextlib
import json
import os
import platform
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_winograd  # noqa: E402
from bench_conv import LoadMeter, build_suite, make_data  # noqa: E402

import fastconv  # noqa: E402
from fastconv._backend.cpu import planner as _planner  # noqa: E402


@contextlib.contextmanager
def grad_weight_without_winograd():
    """The planner as before this change: grad-weight never chooses Winograd."""
    pays = _planner.winograd_pays
    _planner.winograd_pays = lambda pass_, conv, level=1: (
        pass_ != "grad_weight" and pays(pass_, conv, level)
    )
    for cached in (_planner.choose, _planner.resolve, _planner.fuses):
        cached.cache_clear()
    try:
        yield
    finally:
        _planner.winograd_pays = pays
        for cached in (_planner.choose, _planner.resolve, _planner.fuses):
            cached.cache_clear()


SWEEP_CHANNELS = [(8, 8), (16, 16), (32, 32), (64, 64), (128, 128), (256, 256), (512, 512)]
SWEEP_CHANNELS += [(3, 64), (16, 64), (64, 16), (32, 128), (128, 32), (64, 256), (256, 64)]


def sweep(args):
    """Winograd grad-weight against the choice before it over SWEEP_CHANNELS x sizes."""
    rng = np.random.default_rng(0)
    records = []
    most = 8 * 256 * 56 * 56 if args.dtype == "float32" else 8 * 128 * 56 * 56
    for C, F in SWEEP_CHANNELS:
        for HW in (7, 14, 28, 56, 112):
            N = args.batch or 8
            if N * max(C, F) * HW * HW > most:
                continue
            x = rng.standard_normal((N, C, HW, HW)).astype(args.dtype)
            gy = rng.standard_normal((N, F, HW, HW)).astype(args.dtype)
            w_shape = (F, C, 3, 3)
            with grad_weight_without_winograd():
                before = fastconv.conv2d_plan(x.shape, w_shape, 1, 1, dtype=args.dtype)
            fns = {
                name: lambda name=name: fastconv.conv2d_grad_weight(
                    gy, x, w_shape, 1, 1, algorithm=name
                )
                for name in (before["grad_weight"], "winograd")
            }
            med = bench_winograd.interleaved(fns, args.reps, args.min_rep_s)
            b, wt = med[before["grad_weight"]] * 1e3, med["winograd"] * 1e3
            records.append(
                dict(
                    N=N,
                    C=C,
                    F=F,
                    HW=HW,
                    before=before["grad_weight"],
                    before_ms=b,
                    winograd_ms=wt,
                    ratio=wt / b,
                )
            )
            print(
                f"{N}x{C}x{HW}x{HW}>{F:<4} {before['grad_weight']:7} {b:9.3f} ms  winograd "
                f"{wt:9.3f} ms  ratio {wt / b:5.2f}",
                flush=True,
            )
    return records


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--min-rep-s", type=float, default=0.05)
    ap.add_argument("--cases", default="", help="substring filter on case names")
    ap.add_argument("--batch", type=int, default=None, help="override N")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--passes", default="gw,bw", help="gw, bw or both")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--json", default=None, help="write the records here")
    ap.add_argument("--sweep", action="store_true", help="the threshold sweep (see above)")
    args = ap.parse_args()
    bench_winograd.CLOCK = (
        bench_winograd.time.process_time
        if args.clock == "cpu"
        else bench_winograd.time.perf_counter
    )

    fastconv.set_num_threads(args.threads)
    if args.sweep:
        records = sweep(args)
        if args.json:
            env = dict(threads=args.threads, clock=args.clock, reps=args.reps, dtype=args.dtype)
            with open(args.json, "w") as f:
                json.dump({"environment": env, "records": records}, f, indent=1)
        return

    import torch

    torch.set_num_threads(args.threads)
    cases = [
        c
        for c in build_suite(False)
        if c.K == (3, 3) and c.stride == 1 and c.groups == 1 and args.cases in c.name
    ]
    header = (
        f"threads {args.threads}, {args.dtype}, torch {torch.__version__}, OPENBLAS_CORETYPE="
        f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; {args.clock} clock, medians of "
        f"{args.reps} interleaved reps; {platform.processor() or platform.machine()}"
    )
    print(header)
    head = (
        f"{'case':16} {'pass':4} {'before ms':>9} {'after ms':>9} {'torch ms':>9} "
        f"{'before/t':>8} {'after/t':>8} {'speedup':>7} {'busy%':>5} {'err':>8}"
    )
    print(head)
    print("-" * len(head))
    records = []
    for case in cases:
        case.dtype = args.dtype
        if args.batch:
            case.N = args.batch
        x, w, b, gy = make_data(case)
        p, d = case.padding, case.dilation
        pad, dil = (p, p), (d, d)
        tx, tw, tg = (torch.from_numpy(a) for a in (x, w, gy))
        ref = bench_winograd.torch_backward(
            tg.double(), tx.double(), tw.double(), pad, dil, [False, True, False]
        )[1].numpy()

        def torch_pass(mask):
            def run():
                with torch.inference_mode():
                    return bench_winograd.torch_backward(tg, tx, tw, pad, dil, mask)

            return run

        def before_bw():
            with grad_weight_without_winograd():
                return fastconv.conv2d_backward(gy, x, w, 1, p, d)

        passes = {
            "gw": {
                "before": lambda: fastconv.conv2d_grad_weight(
                    gy, x, w.shape, 1, p, d, algorithm="gemm"
                ),
                "after": lambda: fastconv.conv2d_grad_weight(
                    gy, x, w.shape, 1, p, d, algorithm="winograd"
                ),
                "torch": torch_pass([False, True, False]),
            },
            "bw": {
                "before": before_bw,
                "after": lambda: fastconv.conv2d_backward(gy, x, w, 1, p, d),
                "torch": torch_pass([True, True, True]),
            },
        }
        plan = fastconv.conv2d_plan(x.shape, w.shape, 1, p, d, dtype=args.dtype)
        for name in args.passes.split(","):
            fns = passes[name]
            got = fns["after"]()
            got = got[1] if name == "bw" else got
            err = float(np.abs(got - ref).max() / np.abs(ref).max())
            meter = LoadMeter()
            med = bench_winograd.interleaved(fns, args.reps, args.min_rep_s)
            busy = meter.other()
            bt, at, tt = med["before"], med["after"], med["torch"]
            print(
                f"{case.name:16} {name:4} {bt * 1e3:9.2f} {at * 1e3:9.2f} {tt * 1e3:9.2f} "
                f"{bt / tt:8.2f} {at / tt:8.2f} {bt / at:7.2f} "
                f"{'-' if busy is None else f'{100 * busy:.0f}':>5} {err:8.1e}",
                flush=True,
            )
            records.append(
                {
                    "case": case.name,
                    "spec": case.spec,
                    "pass": name,
                    "plan": plan,
                    "before_ms": bt * 1e3,
                    "after_ms": at * 1e3,
                    "torch_ms": tt * 1e3,
                    "before_over_torch": bt / tt,
                    "after_over_torch": at / tt,
                    "busy": busy,
                    "err": err,
                }
            )
    if args.json:
        env = {
            "header": header,
            "threads": args.threads,
            "clock": args.clock,
            "reps": args.reps,
            "dtype": args.dtype,
            "cpus": os.cpu_count(),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "torch": torch.__version__,
            "numpy": np.__version__,
        }
        with open(args.json, "w") as f:
            json.dump({"environment": env, "records": records}, f, indent=1)


if __name__ == "__main__":
    main()
