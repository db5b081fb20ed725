"""
Standard vs depthwise-separable convolutions
============================================

A standard 3 x 3 convolution from C to F channels has ``F * C * 9`` weights and as many
multiply-adds per output pixel. A depthwise-separable one (MobileNet, Xception) splits it into a
3 x 3 *depthwise* convolution (one filter per channel, ``groups = C``) and a 1 x 1 *pointwise*
one mixing the channels: ``C * 9 + F * C`` weights, about ``1/F + 1/9`` of the cost.

:func:`fastconv.nn.summary` reads the parameters, multiply-adds and receptive fields off the
layers' arguments, without running them; the timings below are measured when this page is built.
"""

import time

import matplotlib.pyplot as plt
import numpy as np

from fastconv import nn


def block(kind, C, F, stride=1):
    """One 3x3 stage of `kind` "standard" or "separable", with ReLU."""
    if kind == "standard":
        return nn.Conv2D(C, F, 3, stride=stride, padding=1, activation="relu", rng=0)
    return nn.SeparableConv2D(C, F, 3, stride=stride, padding=1, activation="relu", rng=0)


def network(kind):
    """A small image classifier: five 3x3 stages, widths 32 -> 256, then a linear head."""
    widths = [(3, 32, 2), (32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2)]
    layers = [nn.Conv2D(3, 32, 3, stride=1, padding=1, activation="relu", rng=0)]
    layers += [block(kind, C, F, s) for C, F, s in widths[1:]]
    layers += [nn.GlobalAvgPool2D(), nn.Flatten(), nn.Linear(256, 10, rng=0)]
    return nn.Sequential(*layers)


shape = (3, 64, 64)
summaries = {kind: nn.summary(network(kind), shape) for kind in ("standard", "separable")}
print(summaries["standard"])
print(summaries["separable"])

# %%
# Parameters and multiply-adds, layer by layer
# --------------------------------------------
# The first layer (3 input channels) is a standard convolution in both networks; the separable
# stages cost a fraction of the standard ones, and the fraction shrinks as the width grows.

fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
conv_rows = {
    kind: [r for r in s.rows if r["kind"] in ("Conv2D", "SeparableConv2D")]
    for kind, s in summaries.items()
}
idx = np.arange(len(conv_rows["standard"]))
for offset, (kind, rows) in zip((-0.2, 0.2), conv_rows.items()):
    axes[0].bar(idx + offset, [r["params"] for r in rows], 0.4, label=kind)
    axes[1].bar(idx + offset, [r["mult_adds"] / 1e6 for r in rows], 0.4, label=kind)
for ax, title in zip(axes[:2], ["parameters", "multiply-adds per sample (millions)"]):
    ax.set_xticks(idx, [f"stage {i}" for i in idx])
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
totals = {k: (s.total_params, s.total_mult_adds) for k, s in summaries.items()}
ratio_p = totals["separable"][0] / totals["standard"][0]
ratio_m = totals["separable"][1] / totals["standard"][1]
axes[2].bar(["parameters", "multiply-adds"], [ratio_p, ratio_m], color="C2")
axes[2].set_ylim(0, 1)
axes[2].set_title("separable / standard, whole network")
for i, v in enumerate([ratio_p, ratio_m]):
    axes[2].text(i, v + 0.02, f"{v:.2f}", ha="center")
plt.show()

# %%
# Receptive fields
# ----------------
# A separable stage sees exactly what the standard one sees (its depthwise 3 x 3 has the same
# window), so the receptive fields of the two networks match layer for layer:

for kind, s in summaries.items():
    print(f"{kind:>9}:", [r["rf_size"][0] for r in conv_rows[kind]])
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
for kind, marker in (("standard", "o-"), ("separable", "x--")):
    rows = conv_rows[kind]
    ax.plot(idx, [r["rf_size"][0] for r in rows], marker, label=kind)
ax.set_xticks(idx, [f"stage {i}" for i in idx])
ax.set_ylabel("receptive field (input pixels)")
ax.legend()
plt.show()

# %%
# Measured time
# -------------
# Fewer multiply-adds do not mean proportionally less time: the depthwise and 1 x 1 parts do
# little arithmetic per byte they read (they are bound by memory, not by the multipliers), and
# the standard network's stride-1 stage of 128 channels runs on Winograd, with 2.25 multiplies
# per output instead of 9. Forward and backward of each network on a batch of 8, timed when this
# page was built (the median of 3 runs, fastconv's default thread count; on a shared machine
# the figures move from run to run).

x = np.random.default_rng(0).random((8, *shape), dtype=np.float32)
times = {}
for kind in ("standard", "separable"):
    model = network(kind)
    loss_fn = nn.SoftmaxCrossEntropy()
    labels = np.arange(8) % 10
    runs = []
    for rep in range(4):
        start = time.perf_counter()
        loss = loss_fn(model(x), labels)
        model.backward(loss_fn.backward())
        runs.append(time.perf_counter() - start)
    times[kind] = 1e3 * float(np.median(runs[1:]))  # the first run warms the caches
    print(f"{kind:>9}: {times[kind]:.1f} ms per forward + backward")

fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
ax.bar(list(times), list(times.values()), color=["C0", "C1"])
ax.set_ylabel("ms per forward + backward, batch 8")
ax.set_title(f"measured: separable / standard = {times['separable'] / times['standard']:.2f}")
plt.show()
