#!/usr/bin/env python
"""Large-kernel convolution: fastconv's FFT path against its current path, scipy.signal's FFT
convolutions doing the same work, and PyTorch; and the kernel size at which FFT starts to win.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_fft.py --threads 2 \
        --json benchmarks/results/fft.json
    python benchmarks/bench_fft.py --part crossover --reps 3      # only the crossover table

Part "cases" (issue 8): one 1024x1024 plane with a 21x21 and a 41x41 kernel (N=C=F=1), and 8 RGB
256x256 images with 16 filters of 15x15; 'same' padding everywhere. Columns:
  fft        fastconv._backend.cpu.fft (backend call, output preallocated like the public layer does)
  current    fastconv._backend.cpu.ops on the planner's choice among the non-FFT algorithms
  fftconv    scipy.signal.fftconvolve over (N, F, C) broadcast, summed over C (forward; backward:
             grad-input summed over F, grad-weight 'valid' correlation summed over N), with
             scipy.fft.set_workers(threads)
  oaconv     the same with scipy.signal.oaconvolve
  torch      F.conv2d / aten.convolution_backward, torch.set_num_threads(threads)
Backward = grad-input + grad-weight (+ grad-bias, a sum, for fastconv and torch).

Part "crossover": for a few (N, C, F, H=W) shapes and odd kernel sizes with 'same' padding, the
median time of the FFT and the current path per pass (forward, grad-input, grad-weight); the
smallest kernel size from which FFT is faster.

Every comparison is interleaved rep by rep (A, B, C, A, B, C, ...), medians reported.
"""

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time

import numpy as np


def rel_err(a, ref):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-300))


CLOCK = time.perf_counter  # --cpu-time: time.process_time (one thread: immune to other load)


def interleaved(fns, reps, min_rep_s=0.02, max_calls=20, slow_s=1.0):
    """{name: median seconds per call}: every callable timed once per rep, the order rotated.

    A callable slower than `slow_s` per call (torch's and the direct path's large kernels take
    seconds) is timed in one rep only, without its untimed switch call."""
    names = list(fns)
    calls, slow, first = {}, {}, {}
    for n in names:
        t0 = CLOCK()
        first[n] = fns[n]()  # warm-up; its result is the one checked
        t = CLOCK() - t0
        slow[n] = t > slow_s
        if not slow[n]:
            t0 = CLOCK()
            fns[n]()
            t = CLOCK() - t0
        calls[n] = max(1, min(max_calls, int(min_rep_s / max(t, 1e-9)) + 1))
    times = {n: [] for n in names}
    gc.collect()
    gc.disable()
    try:
        for r in range(reps):
            k = r % len(names)
            for n in names[k:] + names[:k]:
                if slow[n] and times[n]:
                    continue
                if not slow[n]:
                    fns[n]()  # untimed: absorbs the switch from another column
                t0 = CLOCK()
                for _ in range(calls[n]):
                    fns[n]()
                times[n].append((CLOCK() - t0) / calls[n])
    finally:
        gc.enable()
    return {n: statistics.median(v) for n, v in times.items()}, times, first


class Setup:
    """Inputs of one convolution (float32, 'same' padding, odd kernel) and the backend arguments."""

    def __init__(self, N, C, F, H, K, seed=0):
        rng = np.random.default_rng(seed)
        self.N, self.C, self.F, self.H, self.K = N, C, F, H, K
        self.p = (K - 1) // 2
        self.x = rng.standard_normal((N, C, H, H), dtype=np.float32)
        self.w = rng.standard_normal((F, C, K, K), dtype=np.float32) / np.float32(
            np.sqrt(C * K * K)
        )
        self.b = rng.standard_normal(F, dtype=np.float32)
        self.gy = rng.standard_normal((N, F, H, H), dtype=np.float32)
        self.args = ((1, 1), (self.p, self.p), (1, 1), 1)

    @property
    def spec(self):
        return f"{self.N}x{self.C}x{self.H}x{self.H}>{self.F} k{self.K} p{self.p}"

    def _extra(self, be, pass_):
        """The CPU backend's ops take an algorithm: the planner's choice among the algorithms
        other than FFT ("current"); fastconv._backend.cpu.fft's take none."""
        from fastconv._backend.cpu import ops as cpu
        from fastconv._backend.cpu import planner

        if be is not cpu:
            return ()
        conv = cpu._problem(self.x.shape, self.w.shape, self.gy.shape, *self.args, np.float32)
        return (planner.choose(pass_, conv, cpu._level(), transforms=False),)

    # --- one pass of a backend module (fastconv._backend.cpu.ops or .fft), output allocated
    def forward(self, be):
        y = np.empty((self.N, self.F, self.H, self.H), np.float32)
        be.conv2d_forward(self.x, self.w, self.b, y, *self.args, False, *self._extra(be, "forward"))
        return y

    def grad_input(self, be):
        gx = np.empty_like(self.x)
        be.conv2d_grad_input(self.gy, self.w, gx, *self.args, *self._extra(be, "grad_input"))
        return gx

    def grad_weight(self, be):
        gw = np.empty_like(self.w)
        be.conv2d_grad_weight(self.gy, self.x, gw, *self.args, *self._extra(be, "grad_weight"))
        return gw

    def backward(self, be, grad_bias):
        gb = np.empty(self.F, np.float32)
        grad_bias(self.gy, gb)
        return self.grad_input(be), self.grad_weight(be), gb


def scipy_impls(s, threads):
    """scipy.signal's FFT convolutions doing the same sums (channels, filters, batch)."""
    import scipy.fft
    import scipy.signal

    # mode="same" would crop the broadcast (N, F, C) axes to in1's shape too: "full", then crop
    # the 'same' window (odd K: rows p .. p + H - 1 of the full result).
    same = (Ellipsis, slice(s.p, s.p + s.H), slice(s.p, s.p + s.H))

    def make(conv):
        def fwd():
            with scipy.fft.set_workers(threads):
                # correlation = convolution with the flipped kernel; (N,1,C) x (1,F,C) -> sum C
                z = conv(s.x[:, None], s.w[None, :, :, ::-1, ::-1], mode="full", axes=(-2, -1))
            return z[same].sum(axis=2) + s.b[None, :, None, None]

        def bwd():
            with scipy.fft.set_workers(threads):
                gx = conv(s.gy[:, :, None], s.w[None], mode="full", axes=(-2, -1))[same].sum(axis=1)
                xp = np.pad(s.x, ((0, 0), (0, 0), (s.p, s.p), (s.p, s.p)))
                gw = conv(
                    xp[:, None], s.gy[:, :, None, ::-1, ::-1], mode="valid", axes=(-2, -1)
                ).sum(axis=0)
            return gx, gw, s.gy.sum(axis=(0, 2, 3))

        return fwd, bwd

    return {"fftconv": make(scipy.signal.fftconvolve), "oaconv": make(scipy.signal.oaconvolve)}


def torch_impl(torch, s):
    t = [torch.from_numpy(a) for a in (s.x, s.w, s.b, s.gy)]
    bwd_op = torch.ops.aten.convolution_backward

    def fwd():
        with torch.inference_mode():
            return torch.nn.functional.conv2d(t[0], t[1], t[2], 1, s.p).numpy()

    def bwd():
        with torch.inference_mode():
            r = bwd_op(
                t[3],
                t[0],
                t[1],
                [s.F],
                (1, 1),
                (s.p, s.p),
                (1, 1),
                False,
                [0, 0],
                1,
                [True, True, True],
            )
        return tuple(a.numpy() for a in r)

    return fwd, bwd


CASES = [  # name, N, C, F, H, K
    ("plane1024-k21", 1, 1, 1, 1024, 21),
    ("plane1024-k41", 1, 1, 1, 1024, 41),
    ("rgb8-256-f16-k15", 8, 3, 16, 256, 15),
]


def run_cases(args, torch, out):
    from fastconv._backend.cpu import fft as _fft_conv
    from fastconv._backend.cpu import ops as _cpu

    records = []
    hdr = (
        f"{'case':18} {'shape':26} {'pass':4} "
        + " ".join(f"{n:>9}" for n in ("fft", "current", "fftconv", "oaconv", "torch"))
        + "   fft/scipy-best  fft/torch  err(fft)"
    )
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for name, N, C, F, H, K in CASES:
        if args.cases and name not in args.cases.split(","):
            continue
        s = Setup(N, C, F, H, K)
        sp = scipy_impls(s, args.threads)
        fwd = {
            "fft": lambda: s.forward(_fft_conv),
            "current": lambda: s.forward(_cpu),
            "fftconv": sp["fftconv"][0],
            "oaconv": sp["oaconv"][0],
        }
        bwd = {
            "fft": lambda: s.backward(_fft_conv, _cpu.conv2d_grad_bias),
            "current": lambda: s.backward(_cpu, _cpu.conv2d_grad_bias),
            "fftconv": sp["fftconv"][1],
            "oaconv": sp["oaconv"][1],
        }
        if torch is not None:
            fwd["torch"], bwd["torch"] = torch_impl(torch, s)
        # accuracy against float64 (scipy's fftconvolve on float64 inputs)
        ref_y = scipy_impls(_as64(s), 1)["fftconv"][0]()
        ref_b = scipy_impls(_as64(s), 1)["fftconv"][1]()
        errs = {}
        rec = {"name": name, "spec": s.spec, "errors": errs}
        for phase, fns in (("fwd", fwd), ("bwd", bwd)):
            med, times, first = interleaved(fns, args.reps)
            if phase == "fwd":
                errs[phase] = {n: rel_err(o, ref_y) for n, o in first.items()}
            else:
                errs[phase] = {
                    n: max(rel_err(a, r) for a, r in zip(o, ref_b)) for n, o in first.items()
                }
            del first
            rec[phase] = {
                n: {"median_ms": v * 1e3, "times_ms": [t * 1e3 for t in times[n]]}
                for n, v in med.items()
            }
            best_scipy = min(med["fftconv"], med["oaconv"])
            ratio_t = med["fft"] / med["torch"] if "torch" in med else None
            cols = " ".join(
                f"{med[n] * 1e3:9.2f}" if n in med else f"{'-':>9}"
                for n in ("fft", "current", "fftconv", "oaconv", "torch")
            )
            print(
                f"{name:18} {s.spec:26} {phase:4} {cols}   {med['fft'] / best_scipy:14.2f}"
                f"  {ratio_t if ratio_t is None else f'{ratio_t:9.2f}'}  {errs[phase]['fft']:.1e}",
                file=out,
                flush=True,
            )
        records.append(rec)
    return records


def _as64(s):
    c = Setup.__new__(Setup)
    c.__dict__.update(s.__dict__)
    for k in ("x", "w", "b", "gy"):
        setattr(c, k, getattr(s, k).astype(np.float64))
    return c


CROSSOVER_SHAPES = [  # N, C, F, H
    (1, 1, 1, 256),
    (8, 3, 16, 128),
    (8, 16, 16, 64),
    (8, 32, 32, 56),
    (8, 64, 64, 28),
]
PASSES = ("forward", "grad_input", "grad_weight")


def run_crossover(args, out):
    from fastconv._backend.cpu import fft as _fft_conv
    from fastconv._backend.cpu import ops as _cpu

    kernels = [int(k) for k in args.kernels.split(",")]
    table = []
    print(f"\n{'shape':20} {'K':>3} " + " ".join(f"{p + ' fft/cur':>20}" for p in PASSES), file=out)
    for N, C, F, H in CROSSOVER_SHAPES:
        first = {p: None for p in PASSES}
        wins = {p: 0 for p in PASSES}
        rows = []
        for K in kernels:
            if K > H:
                break
            s = Setup(N, C, F, H, K)
            ratios = {}
            for p in PASSES:
                if wins[p] >= 2:  # FFT won twice in a row: larger kernels only widen the gap
                    continue
                fns = {
                    "fft": (lambda p=p: getattr(s, p)(_fft_conv)),
                    "current": (lambda p=p: getattr(s, p)(_cpu)),
                }
                med, _, _ = interleaved(fns, args.reps, max_calls=10)
                ratios[p] = med["fft"] / med["current"]
                rows.append(
                    {
                        "K": K,
                        "pass": p,
                        "fft_ms": med["fft"] * 1e3,
                        "current_ms": med["current"] * 1e3,
                    }
                )
                if ratios[p] < 1:
                    wins[p] += 1
                    if first[p] is None:
                        first[p] = K
                else:
                    wins[p], first[p] = 0, None
            cols = " ".join(
                f"{ratios[p]:20.2f}" if p in ratios else f"{'(fft wins)':>20}" for p in PASSES
            )
            print(f"{f'{N}x{C}x{H}x{H}>{F}':20} {K:3d} {cols}", file=out, flush=True)
            if all(w >= 2 for w in wins.values()):
                break
        table.append({"shape": [N, C, F, H], "first_fft_win_K": first, "rows": rows})
    print(
        f"\ncrossover (smallest K from which FFT was faster, 'same' padding, float32, "
        f"{args.threads} threads):",
        file=out,
    )
    print(f"{'N x C x H x W > F':20} " + " ".join(f"{p:>12}" for p in PASSES), file=out)
    for t in table:
        N, C, F, H = t["shape"]
        print(
            f"{f'{N}x{C}x{H}x{H}>{F}':20} "
            + " ".join(
                f"{str(t['first_fft_win_K'][p] or '>' + str(kernels[-1])):>12}" for p in PASSES
            ),
            file=out,
        )
    return table


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--part", choices=("all", "cases", "crossover"), default="all")
    ap.add_argument("--cases", default=None, help="comma-separated case names")
    ap.add_argument("--kernels", default="3,5,7,9,11,13,15,19,23,31")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with process_time (needs --threads 1): on a loaded machine, wall "
        "times of OpenMP code are inflated by threads waiting for a time slice",
    )
    args = ap.parse_args(argv)
    if args.cpu_time:
        if args.threads != 1:
            ap.error("--cpu-time needs --threads 1")
        global CLOCK
        CLOCK = time.process_time

    from threadpoolctl import threadpool_limits

    import fastconv

    fastconv.set_num_threads(args.threads)
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    out = sys.stdout
    env = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "threads": args.threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": getattr(torch, "__version__", None),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "load_before": os.getloadavg(),
        "clock": "process_time" if args.cpu_time else "perf_counter",
    }
    import scipy

    env["scipy"] = scipy.__version__
    print(
        f"bench_fft: {env['cpu']}, {args.threads} threads, scipy {env['scipy']}, torch "
        f"{env['torch']}, OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}, load {env['load_before']}",
        file=out,
    )
    result = {"environment": env}
    with threadpool_limits(limits=args.threads, user_api="blas"):
        if args.part in ("all", "cases"):
            result["cases"] = run_cases(args, torch, out)
        if args.part in ("all", "crossover"):
            result["crossover"] = run_crossover(args, out)
    env["load_after"] = os.getloadavg()
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}", file=out)


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    flags = open("/proc/cpuinfo").read()
                    isa = "avx512f" if "avx512f" in flags else ("avx2" if "avx2" in flags else "")
                    return line.split(":", 1)[1].strip() + (f" ({isa})" if isa else "")
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
