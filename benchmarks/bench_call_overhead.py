#!/usr/bin/env python
"""Per-call overhead of small calls, and one LeNet-5 training step, for one or two builds.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_call_overhead.py \\
        [BEFORE AFTER ...] [--threads 2] [--rounds 5] [--clock wall|cpu] [--quick] [--json out.json]

Times `conv2d` and `conv2d_backward` of a (1, 1, 8, 8) input with four 3x3 filters (float32:
what NumPy code embedding fastconv calls many times, where the Python side is most of the
time), and one LeNet-5 training step at batch 64 (forward, backward, SGD step). With two folders
(each holding a built `fastconv` package, e.g. a worktree built in place), each round runs one
process per build, alternating which goes first, and the table gives the medians over rounds.
--clock cpu times the process's CPU time instead of the wall clock: on a machine shared with
other work, time the process waits for a core then does not count (the small calls run on one
thread; the LeNet-5 step's CPU time adds up its threads'). --quick warms the LeNet-5 step up 20
times instead of 1000 and times 3 x 20 steps instead of 5 x 50: on a loaded machine, where two
OpenMP threads wait for cores, one process of the full run took ~12 minutes.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

_WORKER = r"""
import json, sys, time
import numpy as np
import fastconv
from fastconv import nn, optim
from fastconv.lenet import LeNet5

fastconv.set_num_threads(int(sys.argv[1]))
clock = time.process_time if sys.argv[2] == "cpu" else time.perf_counter
x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
w = np.random.default_rng(1).standard_normal((4, 1, 3, 3)).astype(np.float32)
g = np.ones((1, 4, 6, 6), np.float32)


def per_call(fn, n=20000, warm=1000, reps=5):
    for _ in range(warm):
        fn()
    best = []
    for _ in range(reps):
        t = clock()
        for _ in range(n):
            fn()
        best.append((clock() - t) / n)
    return min(best) * 1e6


model = LeNet5(rng=0)
loss_layer = nn.SoftmaxCrossEntropy()
opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
images = np.random.default_rng(2).standard_normal((64, 1, 32, 32)).astype(np.float32)
labels = np.random.default_rng(3).integers(0, 10, 64)


def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_layer.forward(model.forward(images), labels)
    model.backward(loss_layer.backward())
    opt.step()


out = {
    "conv2d_us": per_call(lambda: fastconv.conv2d(x, w)),
    "conv2d_backward_us": per_call(lambda: fastconv.conv2d_backward(g, x, w)),
    "lenet_step_ms": (
        per_call(step, n=20, warm=20, reps=3) if sys.argv[3] == "quick" else per_call(step, n=50)
    ) * 1e-3,
}
print(json.dumps(out))
"""


def run(folder, threads, clock, quick=False):
    env = dict(os.environ)
    if folder:
        env["PYTHONPATH"] = os.path.abspath(folder)
    cwd = os.path.abspath(folder) if folder else None
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, str(threads), clock, "quick" if quick else "full"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", help="BEFORE AFTER ... (each with a built fastconv/)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--quick", action="store_true", help="a short LeNet-5 timing (see above)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    builds = args.folders or [None]
    results = {b: [] for b in builds}
    for r in range(args.rounds):
        order = builds if r % 2 == 0 else builds[::-1]
        for b in order:
            results[b].append(run(b, args.threads, args.clock, args.quick))
    keys = ("conv2d_us", "conv2d_backward_us", "lenet_step_ms")
    names = [b or "this build" for b in builds]
    quick = ", LeNet-5 --quick: best of 3 x 20 steps" if args.quick else ""
    print(
        f"threads {args.threads}, {args.rounds} rounds, {args.clock} clock, medians (each round: "
        f"best of 5 reps{quick})"
    )
    print("| measure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    table = {}
    for k in keys:
        meds = [statistics.median(x[k] for x in results[b]) for b in builds]
        table[k] = dict(zip(names, meds))
        print(f"| {k} | " + " | ".join(f"{m:.2f}" for m in meds) + " |")
    if args.json:
        with open(args.json, "w") as f:
            out = {"threads": args.threads, "clock": args.clock, "quick": args.quick}
            out["medians"] = table
            json.dump({**out, "runs": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
