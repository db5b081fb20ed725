"""Per-call Python overhead of fastconv's GPU ops, measured without a GPU.

The fake ``cupy`` of tests/gpu_emulation stands in for CuPy and every kernel launch is replaced
by a no-op that only records it, so what is timed is fastconv._backend.gpu.ops's own work per call
(argument marshalling, launch geometry, plan look-up, workspace handling) and not CuPy's launch
cost (roughly 3-6 us more per launch on a real GPU) nor the kernels. LeNet-sized shapes (batch
256, float32). Each figure is the best of 15 rounds (the machine may be shared). Operations the
fake cupy runs with NumPy (fill, matmul) cost CPU time here that they do not cost on a GPU.

    python benchmarks/gpu_overhead.py [--repeat 2000] [--package PATH_TO_fastconv] [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = os.path.join(ROOT, "tests", "gpu_emulation", "fakecupy")


def _import_fastconv(package):
    sys.path.insert(0, FAKE)
    if package:
        spec = importlib.util.spec_from_file_location(
            "fastconv", os.path.join(package, "__init__.py"), submodule_search_locations=[package]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["fastconv"] = module
        spec.loader.exec_module(module)
    import cupy

    assert getattr(cupy, "IS_FASTCONV_EMULATOR", False), "the fake cupy must be first on the path"
    from fastconv._backend.gpu import ops as gpu

    return cupy, gpu


ROUNDS = 15


class _NoOpKernel:
    launches = 0

    def __call__(self, grid, block, args, shared_mem=0):
        _NoOpKernel.launches += 1


def cases(cupy, np):
    """(name, op, args) for LeNet's convolution C3 (6->16, 5x5 on 14x14, batch 256) and the rest
    of a LeNet step's op kinds."""
    f = np.float32
    x = cupy.zeros((256, 6, 14, 14), f)
    w = cupy.zeros((16, 6, 5, 5), f)
    b = cupy.zeros(16, f)
    y = cupy.zeros((256, 16, 10, 10), f)
    geom = ((1, 1), (0, 0), (1, 1), 1)
    p = cupy.zeros((256, 16, 5, 5), f)
    idx = cupy.zeros((256, 16, 5, 5), np.int64)
    h = cupy.zeros((256, 84), f)
    lw = cupy.zeros((84, 120), f)
    lx = cupy.zeros((256, 120), f)
    lb = cupy.zeros(84, f)
    shapes = [(6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (120, 16, 5, 5), (120,), (84, 120)]
    shapes += [(84,), (10, 84), (10,)]  # LeNet-5's parameters
    adam = [[cupy.zeros(s, f) for s in shapes] for _ in range(4)]
    return [
        ("conv2d_forward", "conv2d_forward", (x, w, b, y, *geom, True, "auto")),
        ("conv2d_grad_input", "conv2d_grad_input", (y, w, x, *geom, "auto")),
        ("conv2d_grad_weight", "conv2d_grad_weight", (y, x, w, *geom, "auto")),
        ("conv2d_grad_bias", "conv2d_grad_bias", (y, b)),
        ("max_pool2d_forward", "max_pool2d_forward", (y, p, idx, (2, 2), (2, 2), (0, 0), (1, 1))),
        ("max_pool2d_backward", "max_pool2d_backward", (p, idx, y)),
        ("relu_backward", "relu_backward", (y, y, y)),
        # (linear_forward's figure is mostly NumPy's matmul standing in for cuBLAS)
        ("linear_forward", "linear_forward", (lx, lw, lb, h, True)),
        # one Adam step over LeNet-5's 10 parameters (the optimiser's backend op)
        ("adam_update_lenet", "adam_update", (*adam, [2] * 10, 1e-3, 0.9, 0.999, 1e-8, 0.0)),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument(
        "--package",
        default=os.path.join(ROOT, "fastconv"),
        help="the fastconv package folder to measure (default: this checkout's)",
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    cupy, gpu = _import_fastconv(args.package)
    print(f"fastconv from {os.path.dirname(sys.modules['fastconv'].__file__)}")
    import numpy as np

    noop = _NoOpKernel()
    from fastconv._backend.gpu import kernels as gk

    # The one place kernels are looked up (compiled): answer every name with the no-op.
    gk._kernel = lambda *a, **k: noop
    gpu._kernel = gk._kernel
    try:
        from fastconv._backend.gpu import conv as gpu_conv

        gpu_conv._kernel = gk._kernel
    except ImportError:  # before the plans (the package measured may be an older one)
        pass
    results = {}
    for name, op, call_args in cases(cupy, np):
        fn = getattr(gpu, op)
        fn(*call_args)  # warm: plans, device info
        _NoOpKernel.launches = 0
        per_round = max(1, args.repeat // ROUNDS)
        best = float("inf")
        for _ in range(ROUNDS):  # the least disturbed round (the machine may be shared)
            t0 = time.perf_counter()
            for _ in range(per_round):
                fn(*call_args)
            best = min(best, (time.perf_counter() - t0) / per_round)
        us = best * 1e6
        calls = per_round * ROUNDS
        results[name] = {
            "us_per_call": round(us, 2),
            "launches": _NoOpKernel.launches / calls,
        }
        print(f"{name:22s} {us:8.2f} us/call  {results[name]['launches']:.0f} launches")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
