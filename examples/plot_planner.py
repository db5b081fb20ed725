"""
How the planner chooses: Winograd, FFT, GEMM and direct, timed
==============================================================

For each pass of a convolution the planner picks one of fastconv's algorithms from the shapes
(:doc:`/guide/algorithms`); ``algorithm=`` forces one. Here every algorithm that can run two
families of convolutions is timed, on the machine that built this page, while the size grows:

* a ResNet-style 3 x 3 layer, 64 -> 64 channels, as the image grows: Winograd needs enough
  4 x 4 output tiles to pay for its transforms;
* one image plane through one large kernel, as the kernel grows: FFT pays off beyond a measured
  kernel size.

The planner's thresholds were measured on an AVX2 EPYC; on another CPU the crossovers move
(``fastconv.show_config()`` names this one's SIMD level). The figures are forward passes, best
of up to 25 single calls, on one thread.
"""

import time

import matplotlib.pyplot as plt
import numpy as np

import fastconv

COLORS = {"gemm": "C0", "winograd": "C1", "fft": "C2", "direct": "C3", "matmul": "C4"}


def best_time(fn, budget=0.15, max_calls=25):
    """Seconds of the fastest of up to `max_calls` single calls (at least 3; at most about
    `budget` seconds after the first): the minimum is what the algorithm costs, the rest is
    noise from other processes."""
    fn()  # warm-up: workspaces, caches
    times = []
    total = 0.0
    while len(times) < 3 or (len(times) < max_calls and total < budget):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        total += times[-1]
    return min(times)


def sweep(shapes, padding):
    """{algorithm: [ms or nan]} and the planner's choices over (x shape, weight shape) pairs."""
    rng = np.random.default_rng(0)
    times, chosen = {}, []
    for x_shape, w_shape in shapes:
        x = rng.random(x_shape, dtype=np.float32)
        w = rng.random(w_shape, dtype=np.float32)
        runnable = fastconv.conv2d_algorithms(x_shape, w_shape, padding=padding)["forward"]
        chosen.append(fastconv.conv2d_plan(x_shape, w_shape, padding=padding)["forward"])
        for algorithm in ("gemm", "winograd", "fft", "direct"):
            ms = np.nan
            if algorithm in runnable:
                ms = 1e3 * best_time(
                    lambda: fastconv.conv2d(x, w, padding=padding, algorithm=algorithm)
                )
            times.setdefault(algorithm, []).append(ms)
    return times, chosen


def draw(ax, xs, times, chosen, xlabel, title):
    for algorithm, ms in times.items():
        if not np.all(np.isnan(ms)):
            ax.plot(xs, ms, "o-", color=COLORS[algorithm], label=algorithm, ms=4)
    # The planner's pick at each size: a ring around that algorithm's point.
    for x, algorithm in zip(xs, chosen):
        ax.plot(x, times[algorithm][xs.index(x)], "o", ms=12, mfc="none", mec="k")
    ax.plot([], [], "o", ms=10, mfc="none", mec="k", label="planner's choice")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ms per forward call")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


# One thread: the planner's choice does not depend on the thread count, and one thread keeps the
# timings steady on a machine that other work shares (an OpenMP team waits for its slowest).
threads = fastconv.get_num_threads()
fastconv.set_num_threads(1)

# %%
# A 3 x 3 layer as the image grows
# --------------------------------

sizes = [6, 8, 12, 16, 24, 32, 48]
shapes = [((2, 64, n, n), (64, 64, 3, 3)) for n in sizes]
times_3x3, chosen_3x3 = sweep(shapes, padding=1)
for n, pick in zip(sizes, chosen_3x3):
    row = "  ".join(f"{a} {times_3x3[a][sizes.index(n)]:7.2f}" for a in times_3x3)
    print(f"{n:3d}x{n:<3d} planner: {pick:9s} ms: {row}")

# %%
# One plane through a growing kernel
# ----------------------------------

kernels = [3, 5, 7, 9, 13, 17, 25, 33]
shapes = [((1, 1, 256, 256), (1, 1, k, k)) for k in kernels]
times_big, chosen_big = sweep(shapes, padding="same")
for k, pick in zip(kernels, chosen_big):
    row = "  ".join(f"{a} {times_big[a][kernels.index(k)]:7.2f}" for a in times_big)
    print(f"kernel {k:2d}: planner: {pick:9s} ms: {row}")

fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
draw(
    axes[0],
    sizes,
    times_3x3,
    chosen_3x3,
    "image side (H = W)",
    "3x3, 64 -> 64 channels, batch 2, padding 1",
)
draw(
    axes[1],
    kernels,
    times_big,
    chosen_big,
    "kernel side (KH = KW)",
    "1 x 256 x 256 plane, 1 filter, padding 'same'",
)
plt.show()

# %%
# Reading the figure
# ------------------
# Where a ring sits on the lowest curve the planner picked the fastest algorithm on this
# machine; elsewhere ``algorithm=`` would win here (timings on a shared machine also move by
# 10-40% from run to run, so close calls can flip). ``fastconv.conv2d_plan`` tells the choice
# without running anything, for each of the three passes. The sizes where another algorithm
# measured more than 1.2x faster than the planner's pick on this machine:

for label, xs, times, chosen in (
    ("3x3 layer, image side", sizes, times_3x3, chosen_3x3),
    ("one plane, kernel side", kernels, times_big, chosen_big),
):
    for k, (x, pick) in enumerate(zip(xs, chosen)):
        best = min(times, key=lambda a: np.nan_to_num(times[a][k], nan=np.inf))
        if times[pick][k] > 1.2 * times[best][k]:
            print(
                f"{label} {x}: planner {pick} {times[pick][k]:.2f} ms, {best} {times[best][k]:.2f} ms"
            )


print(fastconv.conv2d_plan((2, 64, 32, 32), (64, 64, 3, 3), padding=1))
print(fastconv.conv2d_plan((1, 1, 256, 256), (1, 1, 25, 25), padding="same"))
fastconv.set_num_threads(threads)
