"""
LeNet-5 on MNIST: training curves, errors, filters and feature maps
===================================================================

LeNet-5 (LeCun et al., 1998), trained for a few passes over a subset of MNIST with the layers
of :mod:`fastconv.nn` and :class:`fastconv.optim.Adam`: a plain training loop, so every step
is visible. Then what it learned: the test-set confusion matrix, the six 5 x 5 filters of the
first layer, and the feature maps its first two convolutions make of one digit.

The example needs the MNIST files (the four ``*-idx?-ubyte.gz``). It looks in
``$FASTCONV_MNIST``, then ``../shared/data/mnist`` beside the repository, then fastconv's data
directory (where ``fastconv-lenet download`` puts them). When none has them, the documentation
build shows this page without running it. ``fastconv-lenet train`` trains the full model (99.2%
test accuracy in 10 epochs); this subset run takes a few seconds.
"""

import os
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import PowerNorm

from fastconv import nn, optim
from fastconv.datasets import mnist
from fastconv.lenet import LeNet5, evaluate
from fastconv.lenet.data import default_mnist_dir


def find_mnist():
    """The first directory holding the four MNIST files, or None."""
    here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
    candidates = [os.environ.get("FASTCONV_MNIST"), here.parent.parent / "shared/data/mnist"]
    candidates.append(default_mnist_dir())  # where `fastconv-lenet download` puts it
    for path in candidates:
        if path and all(
            (Path(path) / f"{name}-ubyte.gz").exists() or (Path(path) / f"{name}-ubyte").exists()
            for name in (
                "train-images-idx3",
                "train-labels-idx1",
                "t10k-images-idx3",
                "t10k-labels-idx1",
            )
        ):
            return Path(path)
    return None


root = find_mnist()
if root is None:
    sys.exit("MNIST not found: set FASTCONV_MNIST or run `fastconv-lenet download`")

# %%
# A subset of MNIST
# -----------------
# :func:`fastconv.datasets.mnist` reads the IDX files into float32 images padded to 32 x 32
# (LeNet-5's input size) and int64 labels. 6,000 training and 2,000 test images keep the run
# short.

data = mnist(root)
rng = np.random.default_rng(0)
train = rng.choice(len(data.train_labels), 6000, replace=False)
x_train, y_train = data.train_images[train], data.train_labels[train]
x_test, y_test = data.test_images[:2000], data.test_labels[:2000]
print("train", x_train.shape, x_train.dtype, " test", x_test.shape)

# %%
# The training loop
# -----------------
# Forward, loss, backward (which fills every ``Parameter.grad``), optimiser step: the same four
# lines as in PyTorch, with ``model.backward(loss_fn.backward())`` for ``loss.backward()``.

model = LeNet5(seed=0)
loss_fn = nn.SoftmaxCrossEntropy()
opt = optim.Adam(model.parameters(), lr=2e-3)
print(model.summary((1, 32, 32)))

batch, epochs = 64, 2
steps, losses, checks = [], [], []
start = time.perf_counter()
for epoch in range(epochs):
    order = rng.permutation(len(y_train))
    model.train()
    for b in range(0, len(order), batch):
        idx = order[b : b + batch]
        opt.zero_grad()
        loss = loss_fn(model(x_train[idx]), y_train[idx])
        model.backward(loss_fn.backward())
        opt.step()
        steps.append(epoch + b / len(order))
        losses.append(float(loss))
        if (b // batch) % 20 == 0:
            checks.append((steps[-1], evaluate(model, x_test[:500], y_test[:500]).accuracy))
seconds = time.perf_counter() - start
result = evaluate(model, x_test, y_test)
print(
    f"{epochs} epochs of {len(y_train)} images in {seconds:.1f} s; test accuracy {result.accuracy:.2%}"
)

# %%
# Curves and errors
# -----------------
# The loss of every batch (and its running mean), the accuracy on 500 test images every 20
# steps, and the confusion matrix on all 2,000 (rows: the true digit; colour on a power scale so
# that the few errors show).

fig, (ax_loss, ax_acc, ax_cm) = plt.subplots(
    1, 3, figsize=(13, 4), layout="constrained", gridspec_kw={"width_ratios": [1, 1, 1.1]}
)
ax_loss.plot(steps, losses, lw=0.6, alpha=0.5, label="batch")
smooth = np.convolve(losses, np.ones(20) / 20, mode="valid")
ax_loss.plot(steps[19:], smooth, label="running mean (20)")
ax_loss.set_yscale("log")
ax_loss.set_xlabel("epoch")
ax_loss.set_title("training loss")
ax_loss.legend()
at, acc = zip(*checks)
ax_acc.plot(at, np.array(acc) * 100, "o-", ms=3)
ax_acc.set_xlabel("epoch")
ax_acc.set_title("test accuracy (%, 500 images)")
ax_acc.grid(alpha=0.3)
cm = result.confusion
ax_cm.imshow(cm / cm.sum(axis=1, keepdims=True), cmap="Blues", norm=PowerNorm(0.35))
for (i, j), n in np.ndenumerate(cm):
    if n:
        ax_cm.text(j, i, str(n), ha="center", va="center", fontsize=7, color="w" if i == j else "k")
ax_cm.set_xticks(range(10))
ax_cm.set_yticks(range(10))
ax_cm.set_xlabel("predicted")
ax_cm.set_ylabel("true")
ax_cm.set_title(f"confusion matrix: {result.accuracy:.2%} of {len(y_test)}")
plt.show()

# %%
# What the first layers learned
# -----------------------------
# C1's six 5 x 5 filters, and the feature maps C1 (6 of 28 x 28, after ReLU) and C3 (16 of
# 10 x 10) make of one test digit. Running the named layers one by one exposes every
# intermediate output.

digit = x_test[:1]
maps = {}
h = digit
model.eval()
for name, layer in model.named_children().items():
    h = layer(h)
    maps[name] = h

fig = plt.figure(figsize=(12, 5.5), layout="constrained")
grid = fig.add_gridspec(3, 9)
ax = fig.add_subplot(grid[:2, :2])
ax.imshow(digit[0, 0], cmap="gray_r")
ax.set_title(f"test digit (label {y_test[0]})")
ax.set_axis_off()
w1 = model.c1.weight.data
lim = np.abs(w1).max()
for f in range(6):
    ax = fig.add_subplot(grid[0, 3 + f])
    ax.imshow(w1[f, 0], cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(f"C1 filter {f}", fontsize=8)
    ax.set_axis_off()
    ax = fig.add_subplot(grid[1, 3 + f])
    ax.imshow(maps["c1"][0, f], cmap="magma")
    ax.set_title(f"C1 map {f}", fontsize=8)
    ax.set_axis_off()
c3 = maps["c3"][0]
sub = grid[2, :].subgridspec(1, 16)
for f in range(16):
    ax = fig.add_subplot(sub[f])
    ax.imshow(c3[f], cmap="magma")
    ax.set_title(f"C3 {f}", fontsize=7)
    ax.set_axis_off()
plt.show()
