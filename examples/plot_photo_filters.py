"""
A photograph through edge and blur kernels, forward and backward
================================================================

The classic image-processing kernels are convolutions with fixed weights. Here scikit-image's
``camera`` photograph goes through a bank of four of them in one :func:`fastconv.conv2d` call
(F = 4 filters over one channel), and :func:`fastconv.conv2d_backward` gives the gradients:
which input pixels an edge energy depends on, and how to undo a blur by gradient descent.

.. note::
   fastconv computes cross-correlation, like every deep-learning library: the kernel is not
   flipped. For the symmetric kernels below it makes no difference; the Sobel kernels change
   sign.
"""

import matplotlib.pyplot as plt
import numpy as np
from skimage import data

import fastconv

image = data.camera().astype(np.float32) / 255.0  # (512, 512) grey levels in [0, 1]
x = image[None, None]  # (N, C, H, W) = (1, 1, 512, 512)

# %%
# A bank of kernels
# -----------------
# Sobel x and y (horizontal and vertical gradients), the Laplacian, and a 9 x 9 Gaussian blur,
# stacked into one (F, C, KH, KW) weight. Kernels of different sizes are zero-padded to 9 x 9:
# the centre stays the centre, so ``padding="same"`` keeps every output 512 x 512.


def centred(kernel, size=9):
    out = np.zeros((size, size), np.float32)
    k = kernel.shape[0]
    start = (size - k) // 2
    out[start : start + k, start : start + k] = kernel
    return out


sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
g = np.exp(-0.5 * (np.arange(9) - 4) ** 2 / 2.0**2)
gaussian = np.outer(g, g) / np.outer(g, g).sum()
names = ["Sobel x", "Sobel y", "Laplacian", "Gaussian blur (sigma 2)"]
weight = np.stack([centred(k) for k in (sobel_x, sobel_x.T, laplacian, gaussian)])[:, None]
print(
    "weight:",
    weight.shape,
    " planner:",
    dict(fastconv.conv2d_plan(x.shape, weight.shape, padding="same")),
)

y = fastconv.conv2d(x, weight, padding="same")  # (1, 4, 512, 512)

fig, axes = plt.subplots(2, 3, figsize=(11, 7.4), layout="constrained")
axes[0, 0].imshow(image, cmap="gray")
axes[0, 0].set_title("input (skimage.data.camera)")
for ax, f, cmap in zip(axes.flat[1:], range(4), ["RdBu", "RdBu", "RdBu", "gray"]):
    lim = np.quantile(np.abs(y[0, f]), 0.995) if cmap == "RdBu" else None
    ax.imshow(y[0, f], cmap=cmap, vmin=-lim if lim else None, vmax=lim)
    ax.set_title(names[f])
edges = np.hypot(y[0, 0], y[0, 1])
axes[1, 2].imshow(edges, cmap="magma", vmax=np.quantile(edges, 0.995))
axes[1, 2].set_title("edge magnitude: hypot(Sobel x, Sobel y)")
for ax in axes.flat:
    ax.set_axis_off()
plt.show()

# %%
# The gradient of an edge energy
# ------------------------------
# Take ``L = 0.5 * sum(sobel_x(x)**2 + sobel_y(x)**2)``, the image's total edge energy. Its
# gradient with respect to the input is the transposed convolution of ``dL/dy = y`` with the
# same kernels, which is what ``conv2d_backward`` computes (``needs=("input",)`` skips the
# weight and bias gradients). It is large along the edges and changes sign across them:
# moving a pixel against it smooths the image.

sobel = weight[:2]
ys = fastconv.conv2d(x, sobel, padding="same")
grad_x, _, _ = fastconv.conv2d_backward(ys, x, sobel, padding="same", needs=("input",))

# Check one entry against a central difference of L.
i, j, eps = 200, 300, 1e-2


def energy(img):
    return 0.5 * float((fastconv.conv2d(img, sobel, padding="same").astype(np.float64) ** 2).sum())


bump = np.zeros_like(x)
bump[0, 0, i, j] = eps
numeric = (energy(x + bump) - energy(x - bump)) / (2 * eps)
print(f"dL/dx[{i}, {j}]: backward {grad_x[0, 0, i, j]:.4f}, central difference {numeric:.4f}")

fig, axes = plt.subplots(1, 2, figsize=(10, 5), layout="constrained")
crop = (slice(60, 260), slice(180, 380))
axes[0].imshow(image[crop], cmap="gray")
axes[0].set_title("input (detail)")
lim = np.quantile(np.abs(grad_x), 0.995)
axes[1].imshow(grad_x[0, 0][crop], cmap="RdBu", vmin=-lim, vmax=lim)
axes[1].set_title("dL/dx of the edge energy (conv2d_backward)")
for ax in axes:
    ax.set_axis_off()
plt.show()

# %%
# Undoing a blur by gradient descent
# ----------------------------------
# Given only the blurred image ``b = k * x`` and the kernel ``k``, find ``z`` minimising
# ``0.5 * ||k * z - b||**2``. The gradient is ``k^T * (k * z - b)``,
# :func:`fastconv.conv2d_grad_input` of the residual. Plain gradient descent (with Nesterov
# momentum) brings back much of the detail the blur removed. ``padding="same"`` zero-pads the
# borders of both, so the problem is consistent there too.

k = weight[3:4]  # the Gaussian, (1, 1, 9, 9)
b = fastconv.conv2d(x, k, padding="same")
z = b.copy()
velocity = np.zeros_like(z)
errors = []
for step in range(60):
    look_ahead = z + 0.9 * velocity
    residual = fastconv.conv2d(look_ahead, k, padding="same") - b
    grad = fastconv.conv2d_grad_input(residual, k, x.shape, padding="same")
    velocity = 0.9 * velocity - 1.0 * grad
    z = z + velocity
    errors.append(float(np.sqrt(np.mean((z - x) ** 2))))

fig = plt.figure(figsize=(11, 4.2), layout="constrained")
grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 1, 1.1])
crop = (slice(90, 230), slice(200, 340))
for n, (img, title) in enumerate(
    [(x, "original"), (b, "blurred (the data)"), (z, "recovered, 60 steps")]
):
    ax = fig.add_subplot(grid[n])
    ax.imshow(np.clip(img[0, 0][crop], 0, 1), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_axis_off()
ax = fig.add_subplot(grid[3])
ax.plot(np.arange(1, 61), errors, label="recovered")
ax.axhline(np.sqrt(np.mean((b - x) ** 2)), color="C1", ls="--", label="blurred")
ax.set_xlabel("gradient step")
ax.set_ylabel("RMS error against the original")
ax.legend()
plt.show()
