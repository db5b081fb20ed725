"""
im2col: a convolution as one matrix product
===========================================

The ``"gemm"`` algorithm turns a convolution into a matrix product: *im2col* copies every
window the kernel visits into one column of a matrix of ``C * KH * KW`` rows and ``OH * OW``
columns; the weights, reshaped to ``F x (C * KH * KW)``, then multiply it in a single GEMM
(SciPy's BLAS). fastconv never builds the matrix for the whole batch: it fills one cache-sized
tile of columns at a time, per thread, and multiplies each tile straight into the output.

Here is the unrolling of a small input, drawn, and checked against :func:`fastconv.conv2d`.
"""

import matplotlib.pyplot as plt
import numpy as np

import fastconv

# %%
# A small input: 2 channels of 4 x 5, a 3 x 3 kernel, stride 1, no padding, so the output is
# 2 x 3 and the column matrix has 2 * 3 * 3 = 18 rows and 2 * 3 = 6 columns.

C, H, W, KH, KW = 2, 4, 5, 3, 3
x = np.arange(C * H * W, dtype=np.float64).reshape(1, C, H, W)
rng = np.random.default_rng(0)
weight = rng.integers(-2, 3, size=(2, C, KH, KW)).astype(np.float64)  # F = 2 filters
OH, OW = H - KH + 1, W - KW + 1


def im2col(x, KH, KW):
    """(1, C, H, W) -> (C * KH * KW, OH * OW): column j holds output j's window."""
    _, C, H, W = x.shape
    OH, OW = H - KH + 1, W - KW + 1
    cols = np.empty((C, KH, KW, OH, OW), x.dtype)
    for i in range(KH):
        for j in range(KW):
            cols[:, i, j] = x[0, :, i : i + OH, j : j + OW]
    return cols.reshape(C * KH * KW, OH * OW)


cols = im2col(x, KH, KW)
y_gemm = (weight.reshape(2, -1) @ cols).reshape(1, 2, OH, OW)
y = fastconv.conv2d(x, weight, algorithm="gemm")
assert np.allclose(y, y_gemm)
print("columns:", cols.shape, " weights:", weight.reshape(2, -1).shape, " output:", y.shape)

# %%
# Drawing it
# ----------
# Left: the input's two channels, with the first output's window outlined. Middle: the column
# matrix; column 0 is that window, read channel by channel, row by row. Right: the weights as
# rows, and their product with the columns, which is the output.

fig = plt.figure(figsize=(11, 5.2), layout="constrained")
grid = fig.add_gridspec(2, 4, width_ratios=[1.2, 1.6, 1.6, 1.0])
for c in range(C):
    ax = fig.add_subplot(grid[c, 0])
    ax.imshow(x[0, c], cmap="Blues", vmin=-10, vmax=C * H * W + 5)
    for (i, j), v in np.ndenumerate(x[0, c]):
        ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8)
    ax.add_patch(plt.Rectangle((-0.5, -0.5), KW, KH, fill=False, ec="C3", lw=2.5))
    ax.set_title(f"input channel {c}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])

ax = fig.add_subplot(grid[:, 1])
ax.imshow(cols, cmap="Blues", vmin=-10, vmax=C * H * W + 5, aspect="auto")
for (i, j), v in np.ndenumerate(cols):
    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7)
ax.add_patch(plt.Rectangle((-0.5, -0.5), 1, C * KH * KW, fill=False, ec="C3", lw=2.5))
ax.axhline(KH * KW - 0.5, color="k", lw=1)
ax.set_title(f"im2col: ({C}*{KH}*{KW}) x ({OH}*{OW})", fontsize=9)
ax.set_xlabel("output pixel (row-major)")
ax.set_ylabel("channel, kernel row, kernel column")

ax = fig.add_subplot(grid[:, 2])
wmat = weight.reshape(2, -1)
ax.imshow(wmat.T, cmap="RdBu", vmin=-3, vmax=3, aspect="auto")
for (i, j), v in np.ndenumerate(wmat.T):
    ax.text(j, i, f"{v:+.0f}", ha="center", va="center", fontsize=7)
ax.set_title("weights (F x C*KH*KW), transposed", fontsize=9)
ax.set_xticks([0, 1], ["filter 0", "filter 1"])
ax.set_yticks([])

for f in range(2):
    ax = fig.add_subplot(grid[f, 3])
    ax.imshow(y[0, f], cmap="PuOr")
    for (i, j), v in np.ndenumerate(y[0, f]):
        ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8)
    ax.set_title(f"output, filter {f}\n= weights[{f}] @ columns", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()

# %%
# The same sum, every algorithm
# -----------------------------
# Whatever algorithm the planner picks (:func:`fastconv.conv2d_plan`), the result is this
# sum of products; the direct kernels and FFT compute it without the column matrix. All agree
# with the GEMM to rounding:

print("planner's choice:", dict(fastconv.conv2d_plan(x.shape, weight.shape, dtype=np.float64)))
for algorithm in fastconv.conv2d_algorithms(x.shape, weight.shape, dtype=np.float64)["forward"]:
    other = fastconv.conv2d(x, weight, algorithm=algorithm)
    print(f"{algorithm:>9}: max |difference| = {np.abs(other - y_gemm).max():.1e}")

# %%
# Memory: why tiles
# -----------------
# The column matrix is ``KH * KW`` times larger than the input (``C * KH * KW * OH * OW``
# elements per image). For a batch of 8 ResNet 3x3 layers of 64 channels at 56 x 56 that is
# 8 * 64 * 9 * 56 * 56 floats:

print(f"{8 * 64 * 9 * 56 * 56 * 4 / 2**20:.0f} MiB for the whole batch at once")
print(f"{128 * 1024 * 4 / 2**20:.1f} MiB for one of fastconv's tiles (about 128K elements)")
