#!/usr/bin/env python
"""Digests of fastconv's outputs over many calls, to show that a refactor changes no bit.

    python tools/output_digests.py --out before.json      # on the old code
    python tools/output_digests.py --out after.json       # on the new code
    python tools/output_digests.py --compare before.json after.json

Each entry is the SHA-256 of every output array's bytes (and dtype and shape) of one call: the
fuzzer's valid convolutions (tests/fuzz.py) with every algorithm conv2d_algorithms lists forced
for each pass, at every SIMD level the CPU has, at 1, 2 and 3 threads; the transposed and 1-D
convolutions, pooling, the dense ops, the activations and one optimiser step of each kind.
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import fuzz  # noqa: E402

import fastconv  # noqa: E402
from fastconv._kernels import direct as _direct  # noqa: E402
from fastconv._kernels import pool as _pool  # noqa: E402
from fastconv._kernels import winograd as _winograd  # noqa: E402
from fastconv.parameter import Parameter  # noqa: E402


def _digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"None")
            continue
        a = np.asarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _conv_calls(seed):
    x, w, b, kwargs, activation = fuzz.valid_conv_case(seed)
    out = {"auto": _digest(fastconv.conv2d(x, w, b, activation=activation, **kwargs))}
    x = np.ascontiguousarray(x, np.float32 if x.dtype == np.float32 else np.float64)
    w = np.ascontiguousarray(w, x.dtype)
    y = fastconv.conv2d(x, w, **kwargs)
    g = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(x.dtype)
    out["backward"] = _digest(*fastconv.conv2d_backward(g, x, w, **kwargs))
    algorithms = fastconv.conv2d_algorithms(x.shape, w.shape, dtype=x.dtype, **kwargs)
    for name in algorithms["forward"]:
        out[f"forward-{name}"] = _digest(fastconv.conv2d(x, w, b, algorithm=name, **kwargs))
    for name in algorithms["grad_input"]:
        gx = fastconv.conv2d_grad_input(g, w, x.shape, algorithm=name, **kwargs)
        out[f"grad_input-{name}"] = _digest(gx)
    for name in algorithms["grad_weight"]:
        gw = fastconv.conv2d_grad_weight(g, x, w.shape, algorithm=name, **kwargs)
        out[f"grad_weight-{name}"] = _digest(gw)
    return out


def _other_calls(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    y, idx = fastconv.max_pool2d(x, 3, 2, 1, return_indices=True)
    a = fastconv.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    out = {
        "max_pool": _digest(y, idx, fastconv.max_pool2d_backward(y, idx, x.shape)),
        "avg_pool": _digest(a, fastconv.avg_pool2d_backward(a, x.shape, 3, 2, 1)),
        "adaptive": _digest(fastconv.adaptive_avg_pool2d(x, (4, 3))),
        "activations": _digest(
            fastconv.relu(x), fastconv.sigmoid(x), fastconv.tanh(x), fastconv.relu_backward(x, x)
        ),
    }
    xl, wl = rng.standard_normal((5, 7)), rng.standard_normal((4, 7))
    yl = fastconv.linear(xl, wl, np.ones(4), activation="relu")
    loss, logp = fastconv.softmax_cross_entropy(yl, rng.integers(0, 4, 5))
    out["dense"] = _digest(yl, *fastconv.linear_backward(yl, xl, wl), loss, logp)
    wt = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    yt = fastconv.conv_transpose2d(x, wt, None, 2, 1, 1)
    out["transpose"] = _digest(yt, *fastconv.conv_transpose2d_backward(yt, x, wt, 2, 1, 1))
    x1, w1 = x[:, :, 0], rng.standard_normal((4, 3, 3)).astype(np.float32)
    y1 = fastconv.conv1d(x1, w1, None, 2, 1)
    out["conv1d"] = _digest(y1, *fastconv.conv1d_backward(y1, x1, w1, 2, 1))
    for name in ("SGD", "Adam"):
        p = Parameter(rng.standard_normal((4, 5)).astype(np.float32))
        opt = getattr(fastconv.optim, name)([p], lr=0.1)
        for _ in range(2):
            p.grad = rng.standard_normal((4, 5)).astype(np.float32)
            opt.step()
        out[name] = _digest(p.data)
    return out


def collect(cases):
    import fastconv.nn  # noqa: F401
    import fastconv.optim  # noqa: F401

    results = {}
    modules = (_direct, _winograd, _pool)
    for level in range(_direct.detected_level() + 1):
        saved = [m.set_level(min(level, m.detected_level())) for m in modules]
        for threads in (1, 2, 3):
            previous = fastconv.set_num_threads(threads)
            for seed in range(cases):
                key = f"L{level}-t{threads}-s{seed}"
                results[key + "-conv"] = _conv_calls(seed)
                if seed < 20:
                    results[key + "-other"] = _other_calls(seed)
            fastconv.set_num_threads(previous)
        for m, s in zip(modules, saved):
            m.set_level(s)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--compare", nargs=2)
    args = ap.parse_args()
    if args.compare:
        a, b = (json.load(open(p)) for p in args.compare)
        diff = [k for k in a if a[k] != b.get(k)]
        calls = sum(len(v) for v in a.values())
        print(f"{calls} calls in {len(a)} groups compared: {len(diff)} groups differ")
        for k in diff[:20]:
            print(
                " ",
                k,
                {
                    n: (a[k].get(n), b.get(k, {}).get(n))
                    for n in a[k]
                    if a[k].get(n) != b.get(k, {}).get(n)
                },
            )
        return 1 if diff or set(a) != set(b) else 0
    with open(args.out, "w") as f:
        json.dump(collect(args.cases), f, indent=0, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
