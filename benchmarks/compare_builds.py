#!/usr/bin/env python
"""Time two builds of fastconv against each other on the conv suite, interleaved rep by rep.

    env -u OPENBLAS_CORETYPE python benchmarks/compare_builds.py BEFORE AFTER --threads 2 \\
        --log benchmarks/results/refactor.log

BEFORE and AFTER are folders that each hold a built `fastconv` package (a worktree built in
place, or a copy of its fastconv/ folder). Two builds of one package cannot share a process (the
package resolves its own modules by name at call time), so each runs in a worker process that
holds its data and callables; the driver asks them for one timed rep in turn, alternating which
goes first, so both see the same machine load. A waiting worker blocks on its pipe (no CPU).
The cases are benchmarks/bench_conv.py's suite plus EXTRA (paths that suite does not reach).
"""

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_conv  # noqa: E402  (the suite, its data and the timer)
from bench_toolkit import CpuTimer  # noqa: E402  (bench_conv's timer on process CPU time)

EXTRA = [
    # stride 2 along W: the scalar depthwise forward and the scatter grad-input (no SIMD flip)
    bench_conv.Case("dw3x3s2-c32-112", 8, 32, 112, 112, 32, (3, 3), stride=2, padding=1, groups=32),
    # a 1-D convolution (conv1d runs the 2-D kernels with H = 1), and a float64 im2col case
    bench_conv.Case("1d-k9-c64-4096", 32, 64, 1, 4096, 64, (1, 9), padding=0),
    bench_conv.Case(
        "3x3s2-c16-56-f64", 8, 16, 56, 56, 32, (3, 3), stride=2, padding=1, dtype="float64"
    ),
]


def _cases():
    return {c.name: c for c in bench_conv.build_suite(False) + EXTRA}


def worker(path, threads, cputime):
    """Serve requests on stdin: {"case"} -> prepare and warm up; {"case", "phase", "calls"} ->
    seconds per call of one rep; answers one JSON line each on stdout."""
    sys.path.insert(0, os.path.abspath(path))
    from threadpoolctl import threadpool_limits

    import fastconv as fc

    if not fc.__file__.startswith(os.path.abspath(path)):
        sys.exit(f"fastconv came from {fc.__file__}, not from {path}")
    fc.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")
    timer = CpuTimer("cpu") if cputime else bench_conv.Timer("cpu")
    cases, fns = _cases(), {}
    for line in sys.stdin:
        req = json.loads(line)
        if "phase" not in req:
            case = cases[req["case"]]
            fwd, bwd = bench_conv.fastconv_impl(fc, "cpu").prepare(
                case, *bench_conv.make_data(case)
            )
            fns = {"fwd": fwd, "bwd": bwd}
            reply = {p: min(timer(f, 1) for _ in range(3)) for p, f in fns.items()}
            reply["file"] = fc.__file__
        else:
            fn = fns[req["phase"]]
            for _ in range(2):  # untimed: absorbs what the other build left in the caches
                fn()
            gc.collect()
            gc.disable()
            reply = {"t": timer(fn, req["calls"])}
            gc.enable()
        print(json.dumps(reply), flush=True)


class Worker:
    def __init__(self, path, threads, cputime):
        flags = ["--cputime"] if cputime else []
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", path, "--threads", str(threads), *flags],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited ({self.proc.wait()})")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("before", nargs="?")
    p.add_argument("after", nargs="?")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--min-rep-ms", type=float, default=20.0)
    p.add_argument("--cases", default=None, metavar="REGEX")
    p.add_argument("--log", default=None, help="also write the table here")
    p.add_argument(
        "--cputime", action="store_true", help="time by CPU time (use with --threads 1), not wall"
    )
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.threads, args.cputime)
    if not (args.before and args.after):
        p.error("BEFORE and AFTER are required")
    names = [n for n in _cases() if not args.cases or __import__("re").search(args.cases, n)]
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    builds = {
        b: Worker(path, args.threads, args.cputime)
        for b, path in (("before", args.before), ("after", args.after))
    }
    clock = "CPU time" if args.cputime else "wall time"
    out(f"fastconv build comparison: {args.threads} threads, {clock}, median of {args.reps} reps,")
    out("builds")
    out(
        f"interleaved rep by rep (order alternating); OPENBLAS_CORETYPE="
        f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; CPU: {bench_conv.cpu_model()}"
    )
    ratios = {"fwd": [], "bwd": []}
    try:
        for name in names:
            cal = {b: w.ask(case=name) for b, w in builds.items()}
            if name == names[0]:
                for b in builds:
                    out(f"  {b:6}  {os.path.dirname(cal[b]['file'])}")
                out(
                    f"{'case':22} {'pass':4} {'before ms':>10} {'after ms':>10} {'after/before':>13}"
                )
            for phase in ("fwd", "bwd"):
                t = min(cal[b][phase] for b in builds)
                calls = max(1, min(50, math.ceil(args.min_rep_ms / 1e3 / max(t, 1e-9))))
                times = {b: [] for b in builds}
                for r in range(args.reps):
                    for b in ("before", "after") if r % 2 == 0 else ("after", "before"):
                        times[b].append(builds[b].ask(case=name, phase=phase, calls=calls)["t"])
                med = {b: statistics.median(v) * 1e3 for b, v in times.items()}
                ratio = med["after"] / med["before"]
                ratios[phase].append(ratio)
                out(f"{name:22} {phase:4} {med['before']:10.3f} {med['after']:10.3f} {ratio:13.3f}")
    finally:
        for w in builds.values():
            w.close()
    for phase, label in (("fwd", "forward"), ("bwd", "backward")):
        g = math.exp(sum(math.log(r) for r in ratios[phase]) / len(ratios[phase]))
        out(f"geomean after/before {label}: {g:.3f} over {len(ratios[phase])} cases")
    out(f"finished {time.strftime('%Y-%m-%d %H:%M:%S')}")
    if args.log:
        with open(args.log, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
