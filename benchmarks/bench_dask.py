#!/usr/bin/env python
"""fastconv on Dask: a stack of images larger than one would load at once, and one huge image.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_dask.py \
        --json benchmarks/results/dask_cpu.json

(a) an on-disk .npy stack (one file per block) of `--blocks` blocks of (8, 64, HW, HW) float32,
    3x3 64 -> 64 'same' convolution, written back to disk (one process: into an np.memmap; Dask:
    da.to_npy_stack): one process looping over the
    blocks (fastconv on all threads) against a `dask.distributed` LocalCluster of 1 and 2 worker
    processes (one thread each; fastconv's threads per task follow the worker's share). Reports
    throughput and each worker's peak resident memory, which must stay near a few blocks.
(b) one `--side` x `--side` single-channel image, 3x3 and 15x15 kernels, 2048 x 2048 chunks:
    fastconv on the Dask array (threaded scheduler) against `dask_image.ndfilters.correlate`
    where installed.
Timings are medians of `--reps` runs; the machine's CPU is recorded.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

import numpy as np

import fastconv
import fastconv._config

try:
    import dask
    import dask.array as da
    import distributed
except ImportError:  # pragma: no cover
    sys.exit("bench_dask.py needs dask[array] and distributed: pip install 'fastconv[dask]'")


def median_time(fn, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _peak_rss_mib():
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries that across
    fork and exec, so a worker started by a parent holding 1 GiB would report 1 GiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stack_case(args, tmp):
    shape = (args.blocks * 8, 64, args.hw, args.hw)
    gb = np.prod(shape) * 4 / 2**30
    # An .npy stack on disk, one file per block: Dask tasks read their own block by path (a
    # memmap handed to from_array would be pickled whole into the graph).
    rng = np.random.default_rng(0)
    src_dir = os.path.join(tmp, "x")
    os.makedirs(src_dir)
    for i in range(args.blocks):
        np.save(
            os.path.join(src_dir, f"{i}.npy"),
            rng.standard_normal((8,) + shape[1:], dtype=np.float32),
        )
    with open(os.path.join(src_dir, "info"), "wb") as f:
        import pickle

        pickle.dump(
            {
                "chunks": ((8,) * args.blocks, (64,), (args.hw,), (args.hw,)),
                "dtype": np.dtype(np.float32),
                "axis": 0,
            },
            f,
        )
    w = (rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32)
    dst = np.lib.format.open_memmap(os.path.join(tmp, "y.npy"), "w+", np.float32, shape)

    def one_process():
        for i in range(args.blocks):
            block = np.load(os.path.join(src_dir, f"{i}.npy"), mmap_mode="r")
            dst[8 * i : 8 * i + 8] = fastconv.conv2d(block, w, padding="same")
        dst.flush()

    results = {"case": "stack", "shape": shape, "gib": round(gb, 2)}
    results["one_process_s"] = median_time(one_process, args.reps)
    for workers in (1, 2):
        with (
            distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            # mmap_mode=None: each task reads its block (mapped file pages would count in RSS)
            x = da.from_npy_stack(src_dir, mmap_mode=None)

            def run():
                y = fastconv.conv2d(x, w, padding="same")
                da.to_npy_stack(os.path.join(tmp, f"out{workers}"), y, axis=0)

            results[f"dask_{workers}w_s"] = median_time(run, args.reps)
            peaks = client.run(_peak_rss_mib)
            results[f"dask_{workers}w_peak_mib_per_worker"] = round(max(peaks.values()), 1)
    block_mib = 8 * 64 * args.hw * args.hw * 4 / 2**20
    results["block_mib"] = block_mib
    for key in ("one_process_s", "dask_1w_s", "dask_2w_s"):
        results[key.replace("_s", "_gib_per_s")] = round(gb / results[key], 3)
    return results


def image_case(args):
    rng = np.random.default_rng(1)
    img = da.from_array(rng.standard_normal((args.side, args.side), dtype=np.float32), chunks=2048)
    out = []
    for k in (3, 15):
        w = rng.standard_normal((1, 1, k, k)).astype(np.float32)
        x4 = img[None, None]
        row = {"case": f"image {args.side}^2 k{k}", "chunks": 2048}
        with dask.config.set(scheduler="threads"):
            row["fastconv_s"] = median_time(
                lambda: fastconv.conv2d(x4, w, padding="same").compute(), args.reps
            )
            try:
                from dask_image import ndfilters

                row["dask_image_s"] = median_time(
                    lambda: ndfilters.correlate(img, w[0, 0], mode="constant").compute(), args.reps
                )
            except ImportError:
                row["dask_image_s"] = None
        out.append(row)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocks", type=int, default=8, help="(8, 64, HW, HW) blocks in (a)")
    ap.add_argument("--hw", type=int, default=224, help="the blocks' height and width in (a)")
    ap.add_argument("--side", type=int, default=8192, help="image side in (b)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    config = fastconv._config.config()  # CPU model and SIMD level, as show_config() gives
    meta = {
        "cpu": config["cpu"],
        "simd": config["simd"],
        "openblas_coretype_env": config["openblas_coretype_env"],
        "cores": os.cpu_count(),
        "fastconv_threads": fastconv.get_num_threads(),
        "dask": dask.__version__,
        "date": time.strftime("%F"),
    }
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        stack = stack_case(args, tmp)
    images = image_case(args)
    print(f"# {meta}")
    print(
        f"(a) {stack['gib']} GiB stack {stack['shape']}, 3x3 64->64 'same', blocks of "
        f"{stack['block_mib']:.0f} MiB"
    )
    print(f"{'run':<22}{'time s':>9}{'GiB/s':>8}{'peak MiB/worker':>17}")
    print(f"{'one process':<22}{stack['one_process_s']:9.2f}{stack['one_process_gib_per_s']:8.3f}")
    for w in (1, 2):
        print(
            f"{f'LocalCluster {w} worker':<22}{stack[f'dask_{w}w_s']:9.2f}"
            f"{stack[f'dask_{w}w_gib_per_s']:8.3f}{stack[f'dask_{w}w_peak_mib_per_worker']:17.0f}"
        )
    print("(b) one image, 2048^2 chunks, threaded scheduler")
    for row in images:
        di = row["dask_image_s"]
        print(
            f"{row['case']:<22}fastconv {row['fastconv_s']:.2f} s   dask_image "
            f"{'not installed' if di is None else f'{di:.2f} s'}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "stack": stack, "image": images}, f, indent=1)


if __name__ == "__main__":
    main()
