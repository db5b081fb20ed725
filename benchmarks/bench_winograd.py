#!/usr/bin/env python
"""Winograd F(4x4, 3x3) against fastconv's other 3x3 path and PyTorch, interleaved, on the 3x3
stride-1 cases of bench_conv.py (ResNet layers and the dilated 3x3).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_winograd.py --threads 2
    ... --threads 1 --clock cpu      # CPU time: steadier on a machine shared with other work

Columns: forward (y with bias) and grad-input, each by
  winograd   fastconv._backend.cpu._winograd_forward / _winograd_grad_input
  fastconv   fastconv.conv2d / conv2d_grad_input forced to algorithm="gemm" (im2col + GEMM)
  torch      F.conv2d (inference mode) / the grad-input of aten.convolution_backward
Times are medians of --reps reps, the implementations interleaved rep by rep (the order rotates),
so machine noise hits all columns alike. Relative errors are against torch in float64.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_conv import build_suite, make_data  # noqa: E402

import fastconv  # noqa: E402
from fastconv._backend.cpu import ops as _cpu  # noqa: E402

CLOCK = time.perf_counter  # --clock cpu: time.process_time


def torch_backward(grad_y, x, weight, padding, dilation, mask):
    """torch's convolution_backward of a stride-1, one-group convolution without bias:
    (grad_input, grad_weight, grad_bias) for the True entries of `mask` (torch tensors)."""
    import torch

    return torch.ops.aten.convolution_backward(
        grad_y, x, weight, [weight.shape[0]], (1, 1), padding, dilation, False, [0, 0], 1, mask
    )


def timed(fn, calls):
    t0 = CLOCK()
    for _ in range(calls):
        fn()
    return (CLOCK() - t0) / calls


def interleaved(fns, reps, min_rep_s):
    """{name: median seconds per call}, the callables interleaved rep by rep."""
    calls = {}
    for name, fn in fns.items():
        fn()
        t = timed(fn, 1)
        calls[name] = max(1, int(min_rep_s / max(t, 1e-6)))
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(reps):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fns[name]()  # untimed: absorbs the switch from the other column
            times[name].append(timed(fns[name], calls[name]))
    return {name: statistics.median(v) for name, v in times.items()}


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--min-rep-s", type=float, default=0.05)
    ap.add_argument("--cases", default="", help="substring filter on case names")
    ap.add_argument("--batch", type=int, default=None, help="override N")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: the process's CPU time (all threads), which other processes' load "
        "disturbs much less than wall time; with --threads 1 it is the time",
    )
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter

    import torch

    torch.set_num_threads(args.threads)
    fastconv.set_num_threads(args.threads)
    cases = [
        c
        for c in build_suite(False)
        if c.K == (3, 3)
        and c.stride == 1
        and c.groups == 1
        and c.dtype == "float32"
        and args.cases in c.name
    ]
    print(
        f"threads {args.threads}, torch {torch.__version__}, OPENBLAS_CORETYPE="
        f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; {args.clock} clock, medians of "
        f"{args.reps} interleaved reps"
    )
    head = (
        f"{'case':16} {'pass':5} {'winograd ms':>11} {'fastconv ms':>11} {'torch ms':>9} "
        f"{'wino/torch':>10} {'fc/torch':>8} {'wino err':>9}"
    )
    print(head)
    print("-" * len(head))
    for case in cases:
        if args.batch:
            case.N = args.batch
        x, w, b, gy = make_data(case)
        p, d = case.padding, case.dilation
        pad, dil = (p, p), (d, d)
        OH, OW = case.out_hw
        y = np.empty((case.N, case.F, OH, OW), np.float32)
        gx = np.empty_like(x)
        tx, tw, tb, tg = (torch.from_numpy(a) for a in (x, w, b, gy))
        with torch.inference_mode():
            ref_y = torch.nn.functional.conv2d(
                tx.double(), tw.double(), tb.double(), 1, p, d
            ).numpy()
            ref_gx = torch_backward(
                tg.double(), tx.double(), tw.double(), pad, dil, [True, False, False]
            )[0].numpy()

        def t_fwd():
            with torch.inference_mode():
                return torch.nn.functional.conv2d(tx, tw, tb, 1, p, d)

        def t_gx():
            with torch.inference_mode():
                return torch_backward(tg, tx, tw, pad, dil, [True, False, False])

        passes = {
            "fwd": (
                {
                    "winograd": lambda: _cpu._winograd_forward(x, w, b, y, pad, dil, False),
                    "fastconv": lambda: fastconv.conv2d(x, w, b, 1, p, d, algorithm="gemm"),
                    "torch": t_fwd,
                },
                lambda: y,
                ref_y,
            ),
            "gx": (
                {
                    "winograd": lambda: _cpu._winograd_grad_input(gy, w, gx, pad, dil),
                    "fastconv": lambda: fastconv.conv2d_grad_input(
                        gy, w, x.shape, 1, p, d, algorithm="gemm"
                    ),
                    "torch": t_gx,
                },
                lambda: gx,
                ref_gx,
            ),
        }
        for name, (fns, out, ref) in passes.items():
            fns["winograd"]()
            err = np.abs(out() - ref).max() / np.abs(ref).max()
            med = interleaved(fns, args.reps, args.min_rep_s)
            wt, ft, tt = med["winograd"], med["fastconv"], med["torch"]
            print(
                f"{case.name:16} {name:5} {wt * 1e3:11.2f} {ft * 1e3:11.2f} {tt * 1e3:9.2f} "
                f"{wt / tt:10.2f} {ft / tt:8.2f} {err:9.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
