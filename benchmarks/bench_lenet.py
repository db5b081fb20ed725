#!/usr/bin/env python
"""LeNet-5 MNIST training epochs: fastconv.lenet.fit against the same trainer in PyTorch.

    env -u OPENBLAS_CORETYPE python benchmarks/bench_lenet.py --data DATA/mnist --threads 2
    env -u OPENBLAS_CORETYPE python benchmarks/bench_lenet.py --data DATA/mnist --batches 300 --reps 5 --json out.json

One process, alternating: rep r trains one (partial) epoch with fastconv, then one with torch
(the order flips every rep so that machine noise hits both alike). fastconv runs
``fastconv.lenet.fit(model, data, epochs=1, ...)`` itself: the timed figure is fit's training
time, without its end-of-epoch test evaluation and with augment="none" (as torch); torch runs benchmarks/lenet_torch.py's loop
(same model, batch size, optimiser, thread count, batch gathering, per-batch loss read-back).
``--batches N`` makes a partial epoch of the first N*batch_size training images; every rep
continues training the same models. Reported: the median over reps, as seconds per rep and
extrapolated to a 60,000-image epoch, and images/s; the best rep is shown too (on a shared
machine the fastest rep is the one least disturbed by other work).
"""

import argparse
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

import fastconv  # noqa: E402
from fastconv.datasets import MNIST, mnist  # noqa: E402
from fastconv.lenet import LeNet5, fit  # noqa: E402
from fastconv.lenet.train import keep_freed_memory  # noqa: E402

FULL_EPOCH = 60000


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="MNIST directory (the four IDX files)")
    p.add_argument("--threads", type=int, default=2, help="threads for both (default 2)")
    p.add_argument(
        "--batches", type=int, default=None, help="batches per rep (default: a full epoch, 938)"
    )
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--impls", default="fastconv,torch", help="comma-separated subset")
    p.add_argument("--json", metavar="PATH", help="write the records and the environment here")
    p.add_argument(
        "--profile",
        action="store_true",
        help="after the reps, one more fastconv rep with every backend op timed",
    )
    args = p.parse_args(argv)
    args.impls = [s for s in args.impls.split(",") if s]
    unknown = set(args.impls) - {"fastconv", "torch"}
    if unknown or args.reps < 1 or args.threads < 1 or (args.batches or 1) < 1:
        p.error(f"bad --impls {sorted(unknown)}" if unknown else "counts must be >= 1")
    return args


def _fastconv_runner(data, args):
    model = LeNet5(seed=0)

    def run():
        history = fit(
            model,
            data,
            epochs=1,
            batch_size=args.batch_size,
            optimizer=args.optimizer,
            augment="none",  # the torch loop trains on the images as they are
            threads=args.threads,
            progress=False,
            log=lambda line: None,
        )
        return history[-1]["seconds"]

    return run


def _torch_runner(data, args):
    from lenet_torch import TorchTrainer

    trainer = TorchTrainer(
        data.train_images,
        data.train_labels,
        args.batch_size,
        args.optimizer,
        threads=args.threads,
        lr_decay=1.0,
    )
    return lambda: trainer.train_epoch()[0]


def _profile(data, args):
    """One fastconv rep with a timer around every CPU backend op and the optimiser's calls.

    The functional layer looks its backend ops up on the module at each call, so wrapping the
    module attributes times exactly the kernels; what is left is Python: layers, argument
    checks, batch gathering, bookkeeping."""
    from fastconv import _dispatch, optim
    from fastconv._backend.cpu import ops as _cpu

    spent, calls = {}, {}

    def timed(name, fn):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
                calls[name] = calls.get(name, 0) + 1

        return wrapper

    # (the optimiser's own ops run inside optimizer.step, which is timed as a whole)
    inside_step = ("adam_update", "sgd_update")
    originals = {name: getattr(_cpu, name) for name in _cpu.OPS if name not in inside_step}
    opt_cls = optim.Adam if args.optimizer == "adam" else optim.SGD
    opt_originals = {name: getattr(opt_cls, name) for name in ("step", "zero_grad")}
    run = _fastconv_runner(data, args)
    run()  # warm-up
    # conv2d_backward runs its passes as one call prepared per signature, which the CPU backend
    # looked up once (Eager._backward_prepared): timed there
    eager = _dispatch.backend(x=np.empty(0))
    prepared = eager._backward_prepared
    try:
        for name, fn in originals.items():
            setattr(_cpu, name, timed(name, fn))
        for name, fn in opt_originals.items():
            setattr(opt_cls, name, timed(f"optimizer.{name}", fn))
        if prepared is not None:
            eager._backward_prepared = timed("conv2d_backward (prepared)", prepared)
        total = run()
    finally:
        eager._backward_prepared = prepared
        for name, fn in originals.items():
            setattr(_cpu, name, fn)
        for name, fn in opt_originals.items():
            setattr(opt_cls, name, fn)
    batches = -(-len(data.train_labels) // args.batch_size)
    print(
        f"\nfastconv profile: {total:.3f} s for {batches} batches = "
        f"{1e3 * total / batches:.3f} ms/batch"
    )
    print(f"  {'op':<32} {'calls/batch':>11} {'ms/batch':>9} {'share':>6}")
    for name, t in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(
            f"  {name:<32} {calls[name] / batches:11.0f} {1e3 * t / batches:9.3f} "
            f"{100 * t / total:5.1f}%"
        )
    rest = total - sum(spent.values())
    print(
        f"  {'rest (Python: layers, checks, batching)':<32} {'':>11} "
        f"{1e3 * rest / batches:9.3f} {100 * rest / total:5.1f}%"
    )
    return {
        "seconds": total,
        "batches": batches,
        "ms_per_batch": {k: 1e3 * v / batches for k, v in spent.items()},
        "rest_ms_per_batch": 1e3 * rest / batches,
    }


def _environment():
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fastconv.show_config()
    env = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "fastconv": fastconv.__version__,
        "platform": platform.platform(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "fastconv_config": buf.getvalue(),
    }
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:
        env["torch"] = None
    return env


def main(argv=None):
    args = _parse(argv)
    # fit sets this on its first call; set before any rep so that torch runs with the same
    # allocator settings from the start.
    malloc_tuned = keep_freed_memory()
    full = mnist(args.data, padding=2)
    n = FULL_EPOCH if args.batches is None else min(FULL_EPOCH, args.batches * args.batch_size)
    # fit evaluates on the test set after every epoch (not timed): a small one keeps reps short.
    data = MNIST(
        full.train_images[:n],
        full.train_labels[:n],
        full.test_images[:1000],
        full.test_labels[:1000],
    )
    runners = {}
    for impl in args.impls:
        if impl == "torch":
            try:
                runners[impl] = _torch_runner(data, args)
            except ImportError:
                print("torch is not installed: its column is left out", file=sys.stderr)
        else:
            runners[impl] = _fastconv_runner(data, args)
    batches = -(-n // args.batch_size)
    print(
        f"LeNet-5 training on MNIST: {n} images = {batches} batches of {args.batch_size} per "
        f"rep, {args.optimizer}, {args.threads} threads, {args.reps} reps (alternating), "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
        f"malloc keeps freed memory: {malloc_tuned}"
    )
    times = {impl: [] for impl in runners}
    order = list(runners)
    for rep in range(args.reps):
        for impl in order if rep % 2 == 0 else order[::-1]:
            seconds = runners[impl]()
            times[impl].append(seconds)
            print(f"  rep {rep + 1}: {impl:<8} {seconds:7.3f} s", flush=True)
    records = {}
    print(
        f"\n{'impl':<9} {'median s/rep':>12} {'s/epoch (60k)':>14} {'img/s':>9} "
        f"{'best s/epoch':>13}  all reps (s)"
    )
    for impl, ts in times.items():
        median = statistics.median(ts)
        records[impl] = {
            "reps_seconds": ts,
            "median_seconds": median,
            "seconds_per_60k_epoch": median * FULL_EPOCH / n,
            "best_seconds_per_60k_epoch": min(ts) * FULL_EPOCH / n,
            "images_per_second": n / median,
        }
        print(
            f"{impl:<9} {median:12.3f} {median * FULL_EPOCH / n:14.2f} {n / median:9,.0f} "
            f"{min(ts) * FULL_EPOCH / n:13.2f}  " + " ".join(f"{t:.3f}" for t in ts)
        )
    if "fastconv" in records and "torch" in records:
        ratio = records["fastconv"]["median_seconds"] / records["torch"]["median_seconds"]
        records["fastconv_over_torch"] = ratio
        print(
            f"fastconv / torch time: {ratio:.3f} ({1 / ratio:.2f}x "
            f"{'faster' if ratio < 1 else 'slower'})"
        )
    if args.profile and "fastconv" in runners:
        records["fastconv_profile"] = _profile(data, args)
    if args.json:
        out = {
            "config": {
                "images_per_rep": n,
                "batches_per_rep": batches,
                "batch_size": args.batch_size,
                "optimizer": args.optimizer,
                "threads": args.threads,
                "reps": args.reps,
                "malloc_keeps_freed_memory": malloc_tuned,
            },
            "results": records,
            "environment": _environment(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
