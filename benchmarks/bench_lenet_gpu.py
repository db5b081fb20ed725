#!/usr/bin/env python
"""One LeNet-5 training epoch on the GPU: fastconv (CuPy) against PyTorch (CUDA), interleaved.

    python benchmarks/bench_lenet_gpu.py --json gpu_results/lenet_gpu.json [--images 60000]

Needs no dataset and no network: MNIST-shaped synthetic data (random 32x32 images, labels in
0..9; the time of a training step does not depend on the pixel values), made on the host with
a fixed seed and copied to the device once. Both sides run the same loop: per batch, gather the
batch on the device, drop the gradients (zero_grad(set_to_none=True), as fastconv's trainer does
and torch does by default: backward then assigns them, no zeroing pass), forward, softmax
cross-entropy, backward, Adam step; the loss is summed on the device and read once at the end of
the epoch (so neither side is timed waiting for per-batch read-backs). Reps alternate fastconv /
torch (the order flips every rep); the figure is the median epoch time, taken around a device
synchronisation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=60000, help="images per epoch (default 60000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--impls", default="fastconv,torch", help="comma-separated subset")
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args(argv)
    for name in ("images", "batch_size", "reps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    args.impls = [s.strip() for s in args.impls.split(",") if s.strip()]
    unknown = set(args.impls) - {"fastconv", "torch"}
    if unknown or not args.impls:
        p.error(f"--impls: unknown {sorted(unknown)} (choose from fastconv, torch)")
    return args


def synthetic_mnist(n, seed=0):
    """(images (n, 1, 32, 32) float32, labels (n,) int64): MNIST's shapes, random content."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, 1, 32, 32), dtype=np.float32)
    labels = rng.integers(0, 10, n).astype(np.int64)
    return images, labels


def fastconv_epoch(images, labels, batch_size):
    """A callable running one epoch with fastconv on CuPy arrays; returns the mean loss."""
    import cupy

    from fastconv import nn, optim
    from fastconv.lenet import LeNet5

    model = LeNet5(seed=0).to("gpu")
    model.train()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.SoftmaxCrossEntropy()
    x_all, y_all = cupy.asarray(images), cupy.asarray(labels)
    n = len(labels)

    def epoch():
        total = cupy.zeros((), cupy.float32)
        for b in range(0, n, batch_size):
            x, y = x_all[b : b + batch_size], y_all[b : b + batch_size]
            opt.zero_grad(set_to_none=True)  # as the trainer: backward assigns the gradients
            loss = loss_fn.forward(model.forward(x), y)
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()
            total += loss * len(y)
        cupy.cuda.get_current_stream().synchronize()
        return float(total) / n

    return epoch


def torch_epoch(images, labels, batch_size):
    """The same epoch in PyTorch (benchmarks/lenet_torch.py's model) on CUDA."""
    import torch

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from lenet_torch import TorchLeNet5

    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = TorchLeNet5().to(dev)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x_all = torch.from_numpy(images).to(dev)
    y_all = torch.from_numpy(labels).to(dev)
    n = len(labels)

    def epoch():
        total = torch.zeros((), device=dev)
        for b in range(0, n, batch_size):
            x, y = x_all[b : b + batch_size], y_all[b : b + batch_size]
            opt.zero_grad(set_to_none=True)  # torch's default: no zeroing pass either
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total += loss.detach() * len(y)
        torch.cuda.synchronize()
        return float(total) / n

    return epoch


def run(args, makers):
    images, labels = synthetic_mnist(args.images)
    epochs = {name: makers[name](images, labels, args.batch_size) for name in args.impls}
    times = {name: [] for name in args.impls}
    losses = {name: [] for name in args.impls}
    for name, epoch in epochs.items():  # warm-up: compilation, plans, cuDNN autotuning
        epoch()
    for rep in range(args.reps):
        order = args.impls if rep % 2 == 0 else args.impls[::-1]
        for name in order:
            t0 = time.perf_counter()
            losses[name].append(epochs[name]())
            times[name].append(time.perf_counter() - t0)
    return {
        name: {
            "median_s": statistics.median(t),
            "best_s": min(t),
            "images_per_s": args.images / statistics.median(t),
            "times_s": t,
            "mean_loss_per_rep": losses[name],
        }
        for name, t in times.items()
    }


def main(argv=None):
    args = parse_args(argv)
    makers = {"fastconv": fastconv_epoch, "torch": torch_epoch}
    results = run(args, makers)
    for name, r in results.items():
        print(
            f"{name:9s} epoch {r['median_s']:.3f} s (best {r['best_s']:.3f})  "
            f"{r['images_per_s']:,.0f} img/s"
        )
    if "fastconv" in results and "torch" in results:
        ratio = results["torch"]["median_s"] / results["fastconv"]["median_s"]
        print(f"fastconv speed vs torch: {ratio:.2f}x (> 1: fastconv faster)")
    if args.json:
        record = {"args": {k: v for k, v in vars(args).items() if k != "json"}, "results": results}
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
