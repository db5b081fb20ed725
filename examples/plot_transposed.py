"""
Transposed convolution: upsampling
==================================

:func:`fastconv.conv_transpose2d` (PyTorch's ``conv_transpose2d``, "deconvolution") runs a
convolution backwards: every input pixel *stamps* a copy of the kernel, scaled by its value,
onto an output ``stride`` times larger, and overlapping stamps add up. It is exactly the
gradient of :func:`fastconv.conv2d` with respect to its input, which is how decoders and
segmentation networks upsample.
"""

import matplotlib.pyplot as plt
import numpy as np
from skimage import data
from skimage.transform import resize

import fastconv

# %%
# One pixel, one stamp
# --------------------
# An input with a single 1 gives the kernel itself, placed at ``stride`` times the pixel's
# position; two neighbours' stamps overlap where the kernel is wider than the stride.

kernel = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 16  # 4 x 4 bilinear
w = kernel[None, None]  # (C_in, C_out, KH, KW)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), layout="constrained")
for ax, pixels, title in zip(
    axes,
    [[(1, 1)], [(1, 1), (1, 2)], [(0, 0), (1, 2), (2, 1)]],
    ["one pixel", "two neighbours: stamps overlap", "three pixels"],
):
    x = np.zeros((1, 1, 3, 3), np.float32)
    for i, j in pixels:
        x[0, 0, i, j] = 1
    y = fastconv.conv_transpose2d(x, w, stride=2, padding=1)  # (1, 1, 6, 6)
    ax.imshow(y[0, 0], cmap="viridis", vmin=0, vmax=0.8)
    for (i, j), v in np.ndenumerate(y[0, 0]):
        ax.text(
            j,
            i,
            f"{v:.2f}".rstrip("0").rstrip("."),
            ha="center",
            va="center",
            fontsize=7,
            color="w",
        )
    ax.set_title(f"{title}\ninput 3x3 -> output {y.shape[2]}x{y.shape[3]}", fontsize=9)
    ax.set_axis_off()
plt.show()

# %%
# Upsampling an image x2
# ----------------------
# A 4 x 4 kernel with stride 2 and padding 1 doubles each side (``OH = (H - 1) * 2 - 2 + 4 =
# 2H``). With the bilinear kernel above it is bilinear interpolation; a random kernel of the
# same size gives the blocky texture an untrained decoder starts from; a 3 x 3 kernel with stride
# 2 covers the output unevenly (some outputs get 1 stamp, some 2, some 4): the *checkerboard
# artefact* (Odena et al., 2016).

small = resize(data.astronaut()[80:240, 150:310].mean(axis=2), (40, 40), anti_aliasing=True)
x = small.astype(np.float32)[None, None]  # (1, 1, 40, 40)
print("output shape:", fastconv.conv_transpose_output_shape(x.shape, w.shape, stride=2, padding=1))
up_bilinear = fastconv.conv_transpose2d(x, w, stride=2, padding=1)
rng = np.random.default_rng(1)
w_random = rng.random((1, 1, 4, 4), dtype=np.float32)
w_random /= w_random.sum() / 4  # the same total weight per output, on average
up_random = fastconv.conv_transpose2d(x, w_random, stride=2, padding=1)
w3 = np.full((1, 1, 3, 3), 4 / 9, np.float32)
up_uneven = fastconv.conv_transpose2d(x, w3, stride=2, padding=1, output_padding=1)
flat = fastconv.conv_transpose2d(np.ones_like(x), w3, stride=2, padding=1, output_padding=1)

fig, axes = plt.subplots(1, 5, figsize=(14, 3.4), layout="constrained")
panels = [
    (x, "input 40x40"),
    (up_bilinear, "4x4 bilinear kernel, stride 2"),
    (up_random, "4x4 random kernel, stride 2"),
    (up_uneven, "3x3 uniform kernel, stride 2"),
    (flat, "3x3, stride 2, on a constant input:\nstamps per output"),
]
for ax, (img, title) in zip(axes, panels):
    ax.imshow(img[0, 0], cmap="gray")
    ax.set_title(f"{title}\n{img.shape[2]}x{img.shape[3]}", fontsize=9)
    ax.set_axis_off()
plt.show()

# %%
# The gradient of a convolution
# -----------------------------
# For any ``x`` and ``y`` of matching shapes, ``<conv2d(x, w), y> = <x, conv_transpose2d(y, w)>``:
# the transposed convolution is the adjoint (the matrix transpose) of the strided convolution
# with the same weight, and :func:`fastconv.conv2d_grad_input` computes the same thing.

rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 16, 16))
w = rng.standard_normal((5, 3, 4, 4))  # conv2d: (F, C, KH, KW); transposed: (C_in=F, C_out=C, ...)
y = rng.standard_normal(fastconv.conv_output_shape(x.shape, w.shape, stride=2, padding=1))
lhs = np.vdot(fastconv.conv2d(x, w, stride=2, padding=1), y)
rhs = np.vdot(x, fastconv.conv_transpose2d(y, w, stride=2, padding=1))
print(f"<conv2d(x, w), y> = {lhs:.6f}   <x, conv_transpose2d(y, w)> = {rhs:.6f}")
same = fastconv.conv2d_grad_input(y, w, x.shape, stride=2, padding=1)
print(
    "conv2d_grad_input equals conv_transpose2d:",
    np.allclose(same, fastconv.conv_transpose2d(y, w, stride=2, padding=1)),
)
