"""
1-D convolution: a matched filter, and a filter learned by gradient descent
===========================================================================

:func:`fastconv.conv1d` runs the 2-D kernels on ``(N, C, 1, L)`` views of ``(N, C, L)``
signals. Two uses: finding a known pulse in noise by correlating with it (a *matched filter*),
and learning a denoising filter from examples with :func:`fastconv.conv1d_backward`.
"""

import matplotlib.pyplot as plt
import numpy as np

import fastconv

rng = np.random.default_rng(0)
L = 4000
t = np.arange(64)
pulse = (np.sin(2 * np.pi * t * (0.02 + 0.004 * t)) * np.hanning(64)).astype(np.float32)  # a chirp

# %%
# A matched filter
# ----------------
# Hide five copies of the chirp at random places in a noisy signal, where the eye cannot find
# them. Correlating with the chirp itself (which is what ``conv1d`` computes: no kernel flip)
# peaks where the copies start.

starts = np.sort(rng.choice(L - 64, 5, replace=False))
signal = rng.standard_normal(L).astype(np.float32)
for s in starts:
    signal[s : s + 64] += 1.5 * pulse
score = fastconv.conv1d(signal[None, None], pulse[None, None] / np.linalg.norm(pulse))[0, 0]
found, masked = [], score.copy()
for _ in range(5):  # the 5 highest peaks, each at least a pulse length from the others
    peak = int(np.argmax(masked))
    found.append(peak)
    masked[max(peak - 64, 0) : peak + 64] = -np.inf
print("hidden at:", starts)
print("5 highest peaks:", sorted(found))

fig, axes = plt.subplots(3, 1, figsize=(11, 6), layout="constrained", sharex=True)
axes[0].plot(np.arange(64), pulse, color="C1")
axes[0].set_title("the pulse (a chirp, 64 samples)")
axes[1].plot(signal, lw=0.5)
for s in starts:
    axes[1].axvspan(s, s + 64, color="C1", alpha=0.3)
axes[1].set_title("signal: noise with five pulses at 1.5x the noise's standard deviation (orange)")
axes[2].plot(score, lw=0.7, color="C2")
axes[2].plot(starts, score[starts], "v", color="C1", ms=8)
axes[2].set_title("conv1d(signal, pulse): the matched filter's output")
plt.show()

# %%
# Learning a filter
# -----------------
# A batch of smooth random signals, and the same signals with noise added: find the 31-tap
# filter ``w`` minimising ``mean((conv1d(noisy, w) - clean)**2)`` by gradient descent (Adam,
# written out). ``conv1d_backward(..., needs=("weight",))`` gives the gradient with respect to
# the filter only.

N, K = 32, 31
freqs = rng.uniform(0.002, 0.02, size=(N, 1, 3))
phase = rng.uniform(0, 2 * np.pi, size=(N, 1, 3))
grid = np.arange(1024)
clean = (
    np.sin(2 * np.pi * freqs[..., None] * grid + phase[..., None]).sum(axis=2).astype(np.float32)
)
noisy = clean + 0.7 * rng.standard_normal(clean.shape).astype(np.float32)

w = np.zeros((1, 1, K), np.float32)
m, v = np.zeros_like(w), np.zeros_like(w)
losses = []
for step in range(1, 151):
    y = fastconv.conv1d(noisy, w, padding="same")
    residual = y - clean
    losses.append(float(np.mean(residual**2)))
    _, grad_w, _ = fastconv.conv1d_backward(
        2 * residual / residual.size, noisy, w, padding="same", needs=("weight",)
    )
    m = 0.9 * m + 0.1 * grad_w
    v = 0.999 * v + 0.001 * grad_w**2
    w -= 0.01 * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
denoised = fastconv.conv1d(noisy, w, padding="same")
print(f"mean squared error: noisy {np.mean((noisy - clean) ** 2):.3f} -> filtered {losses[-1]:.3f}")

fig = plt.figure(figsize=(11, 6), layout="constrained")
grid_spec = fig.add_gridspec(2, 3)
ax = fig.add_subplot(grid_spec[0, :])
ax.plot(noisy[0, 0, :400], lw=0.6, color="0.6", label="noisy")
ax.plot(clean[0, 0, :400], lw=1.5, label="clean")
ax.plot(denoised[0, 0, :400], lw=1.2, label="learned filter's output")
ax.legend(ncol=3)
ax.set_title("one signal of the batch (first 400 samples)")
ax = fig.add_subplot(grid_spec[1, 0])
ax.plot(losses)
ax.set_yscale("log")
ax.set_xlabel("step")
ax.set_title("training loss")
ax = fig.add_subplot(grid_spec[1, 1])
ax.stem(np.arange(K) - K // 2, w[0, 0])
ax.set_title("the learned 31 taps")
ax = fig.add_subplot(grid_spec[1, 2])
f = np.fft.rfftfreq(1024)
hist = ax.twinx()
hist.hist(freqs.ravel(), bins=20, color="C1", alpha=0.3)
hist.set_yticks([])
ax.plot(f, np.abs(np.fft.rfft(w[0, 0], 1024)), label="learned filter's gain")
ax.plot([], [], "s", color="C1", alpha=0.3, label="the signals' frequencies")
ax.set_xlim(0, 0.1)
ax.set_xlabel("frequency (cycles per sample)")
ax.set_title("its frequency response: a low-pass")
ax.legend(fontsize=8)
plt.show()
