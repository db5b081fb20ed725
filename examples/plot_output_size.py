"""
Output size from padding, stride and dilation
=============================================

How many outputs does a convolution produce along one axis? With input length ``H``, kernel
``K``, stride ``s``, dilation ``d`` and padding ``p_before + p_after``::

    OH = (H + p_before + p_after - d * (K - 1) - 1) // s + 1

:func:`fastconv.arith.conv_output_size` computes it for one axis and
:func:`fastconv.conv_output_shape` for a whole convolution; both are the same rule
:func:`fastconv.conv2d` uses. Below, each row of boxes is an input of 7 cells (grey cells:
padding) and each bracket one output's window, drawn from that rule.
"""

import matplotlib.pyplot as plt
import numpy as np

import fastconv
from fastconv.arith import conv_output_size

# %%
# The windows of each output
# --------------------------
# ``padding="same"`` keeps ``OH = ceil(H / stride)`` for any stride (TensorFlow's rule); when
# the total padding is odd, the extra cell goes after the input (bottom/right).


def same_padding(size, kernel, stride, dilation):
    """(before, after) of 'same' padding: what makes OH = ceil(size / stride)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


H = 7
cases = [
    ("kernel 3", dict(kernel=3)),
    ("kernel 3, padding 1", dict(kernel=3, padding=1)),
    ("kernel 3, stride 2", dict(kernel=3, stride=2)),
    ("kernel 3, stride 2, padding 'same'", dict(kernel=3, stride=2, padding="same")),
    ("kernel 3, dilation 2", dict(kernel=3, dilation=2)),
    ("kernel 2, stride 2, padding 'same'", dict(kernel=2, stride=2, padding="same")),
]

fig, axes = plt.subplots(len(cases), 1, figsize=(8, 1.45 * len(cases)), layout="constrained")
for ax, (title, kw) in zip(axes, cases):
    K, s, d = kw["kernel"], kw.get("stride", 1), kw.get("dilation", 1)
    padding = kw.get("padding", 0)
    if padding == "same":
        before, after = same_padding(H, K, s, d)
    else:
        before = after = padding
    OH = conv_output_size(H, K, s, padding, d)
    # The same number from a real convolution of a (1, 1, 1, H) input:
    y = fastconv.conv2d(
        np.ones((1, 1, 1, H)),
        np.ones((1, 1, 1, K)),
        stride=(1, s),
        padding=((0, 0), (before, after)),
        dilation=(1, d),
    )
    assert y.shape[-1] == OH

    cells = np.arange(-before, H + after)
    for c in cells:
        pad = c < 0 or c >= H
        ax.add_patch(
            plt.Rectangle(
                (c, 0),
                0.92,
                0.92,
                fc="0.85" if pad else "#9ecae1",
                ec="0.4",
                hatch="//" if pad else None,
            )
        )
        if not pad:
            ax.text(c + 0.46, 0.46, str(c), ha="center", va="center", fontsize=8)
    for o in range(OH):
        start = o * s - before  # the first input cell of output o
        taps = start + d * np.arange(K)
        level = -0.35 - 0.32 * o
        ax.plot([taps[0] + 0.46, taps[-1] + 0.46], [level, level], color=f"C{o}", lw=1.5)
        ax.plot(taps + 0.46, np.full(K, level), "o", color=f"C{o}", ms=4)
    ax.set_xlim(-3.2, H + 3.2)
    ax.set_ylim(-0.45 - 0.32 * OH, 1.05)
    ax.set_axis_off()
    pads = f"padding ({before}, {after})"
    ax.set_title(f"{title}: {pads}, OH = {OH}", fontsize=9, loc="left")
fig.suptitle(f"Windows of each output over an input of H = {H} (dots: the kernel's taps)")
plt.show()

# %%
# Output size against input size
# -------------------------------
# Strides divide the output size (rounding down without padding, up with ``'same'``); dilation
# and larger kernels shrink it by ``d * (K - 1)`` before the division.

sizes = np.arange(1, 41)
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
settings = [
    dict(kernel=3),
    dict(kernel=3, padding="same"),
    dict(kernel=3, stride=2),
    dict(kernel=3, stride=2, padding="same"),
    dict(kernel=3, dilation=3),
    dict(kernel=7, stride=2, padding=3),
]
for kw in settings:
    out = [conv_output_size(int(n), **kw) for n in sizes]
    valid = np.array(out) >= 1
    label = ", ".join(f"{k} {v!r}" if isinstance(v, str) else f"{k} {v}" for k, v in kw.items())
    ax.step(sizes[valid], np.array(out)[valid], where="mid", label=label)
ax.set_xlabel("input size H")
ax.set_ylabel("output size OH")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.show()

# %%
# The whole shape at once
# -----------------------
# :func:`fastconv.conv_output_shape` takes the 4-D shapes and the same arguments as
# :func:`fastconv.conv2d`, and raises a ``ValueError`` naming the argument when the output
# would be empty:

print(fastconv.conv_output_shape((8, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3))
print(fastconv.conv_output_shape((1, 16, 9, 9), (16, 1, 3, 3), stride=2, padding="same", groups=16))
try:
    fastconv.conv_output_shape((1, 1, 4, 4), (1, 1, 3, 3), dilation=2)
except ValueError as err:
    print("ValueError:", err)
