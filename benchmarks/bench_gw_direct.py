#!/usr/bin/env python
"""The direct grad-weight against im2col + GEMM's past the filter counts the direct kernels were
first measured on: the sweep behind the planner's AVX-512 rule (planner._direct_grad_weight_wide).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_gw_direct.py --threads 2
    ... --json benchmarks/results/gw_direct_sweep_2threads.json

Cases: batch 8, float32, F filters in (32, 64, 128, 256) of 1x1 over 64 or 256 channels (stride
1) or 3x3 over 64, 128 or 256 channels ('same' padding, stride 1 and 2), outputs 14x14, 28x28
and 56x56. Each case runs fastconv.conv2d_grad_weight with algorithm="gemm" and "direct",
interleaved rep by rep; the figure is the median of --reps reps, and the ratio direct / GEMM
(< 1: direct faster). The last columns say what the planner picks ("auto") and whether the
case lies in the rule's domain (taps >= 256, F <= 128, N*OH*OW >= 4*taps).
"""

import argparse
import datetime
import itertools
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
from bench_conv import cpu_model  # noqa: E402

import fastconv  # noqa: E402
from fastconv._backend.cpu import planner as _planner  # noqa: E402

BATCH = 8


def cases():
    """(F, C, K, output side, stride) of the sweep."""
    for F, (C, K), side, stride in itertools.product(
        (32, 64, 128, 256),
        ((64, 1), (256, 1), (64, 3), (128, 3), (256, 3)),
        (14, 28, 56),
        (1, 2),
    ):
        if not (K == 1 and stride == 2):
            yield F, C, K, side, stride


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    fastconv.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"# direct vs GEMM grad-weight; {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(
        f"# {cpu_model()}; {args.threads} threads; batch {BATCH}, float32; medians of "
        f"{args.reps} interleaved reps; OPENBLAS_CORETYPE="
        f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; fastconv {fastconv.__version__}; "
        f"python {platform.python_version()}; numpy {np.__version__}"
    )
    print(
        "| F | C | K | out | stride | taps | N*OH*OW | gemm ms | direct ms | direct/gemm | auto |"
        " in rule |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for F, C, K, side, stride in cases():
        x = rng.standard_normal((BATCH, C, side * stride, side * stride), dtype=np.float32)
        w_shape = (F, C, K, K)
        geometry = dict(stride=stride, padding=K // 2)
        grad_y = rng.standard_normal((BATCH, F, side, side), dtype=np.float32)
        times = {"gemm": [], "direct": []}
        for name in times:  # warm-up: workspaces, first-call costs
            fastconv.conv2d_grad_weight(grad_y, x, w_shape, algorithm=name, **geometry)
        for _ in range(args.reps):
            for name, done in times.items():
                t0 = time.perf_counter()
                fastconv.conv2d_grad_weight(grad_y, x, w_shape, algorithm=name, **geometry)
                done.append(1e3 * (time.perf_counter() - t0))
        gemm, direct = (statistics.median(times[n]) for n in ("gemm", "direct"))
        taps, pixels = C * K * K, BATCH * side * side
        auto = fastconv.conv2d_plan(x.shape, w_shape, **geometry)["grad_weight"]
        in_rule = (
            taps >= _planner._DIRECT_GW_MIN_TAPS
            and F <= _planner._DIRECT_GW_MAX_FILTERS
            and pixels >= _planner._DIRECT_GW_PRODUCTS_PER_TAP * taps
        )
        row = dict(
            F=F,
            C=C,
            K=K,
            out=side,
            stride=stride,
            taps=taps,
            pixels=pixels,
            gemm_ms=gemm,
            direct_ms=direct,
            ratio=direct / gemm,
            auto=auto,
            in_rule=in_rule,
        )
        rows.append(row)
        print(
            f"| {F} | {C} | {K} | {side} | {stride} | {taps} | {pixels} | {gemm:.2f} | "
            f"{direct:.2f} | {direct / gemm:.2f} | {auto} | {'yes' if in_rule else ''} |",
            flush=True,
        )
    ruled = [r["ratio"] for r in rows if r["in_rule"] and r["F"] > 32]
    print(
        f"# in the rule, F > 32 (new to direct): {len(ruled)} cases, direct/gemm "
        f"{min(ruled):.2f}-{max(ruled):.2f}"
    )
    if args.json:
        env = dict(
            cpu=cpu_model(),
            threads=args.threads,
            batch=BATCH,
            reps=args.reps,
            fastconv=fastconv.__version__,
            numpy=np.__version__,
            date=datetime.datetime.now().isoformat(timespec="seconds"),
        )
        with open(args.json, "w") as f:
            json.dump({"environment": env, "rows": rows}, f, indent=1)
        print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
