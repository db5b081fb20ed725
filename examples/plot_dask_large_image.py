"""
An image larger than memory, through Dask
=========================================

Give :func:`fastconv.conv2d` a Dask array and it returns a lazy Dask array: each output tile is
computed from the input tile plus the *halo* of rows and columns its windows reach into the
neighbouring tiles, so the result equals the whole-image convolution exactly, while only the
tiles in flight are in memory. The input can live on disk (``.npy`` memory maps, Zarr, HDF5)
and the result can be written back tile by tile.

Here a 8192 x 8192 image (256 MiB) is read from a memory-mapped file on disk, run through two
Sobel kernels, and its edge magnitude written to another file; the same code runs unchanged on
an image larger than RAM (this one is kept small so that the page builds in seconds).
"""

import tempfile
import time
import tracemalloc
from pathlib import Path

import dask
import dask.array as da
import matplotlib.pyplot as plt
import numpy as np
from skimage import data

import fastconv

# %%
# An image on disk
# ----------------
# 16 x 16 copies of scikit-image's ``camera``, mirrored in turn (so that neighbours join without
# an edge), written as one ``.npy`` file block by block through a memory map: it is never whole
# in memory either.

workdir = Path(tempfile.mkdtemp(prefix="fastconv-dask-"))
tile = data.camera().astype(np.float32) / 255.0  # 512 x 512
S = 16 * 512
source = np.lib.format.open_memmap(workdir / "image.npy", mode="w+", dtype=np.float32, shape=(S, S))
for i in range(16):
    for j in range(16):
        block = tile[:: -1 if i % 2 else 1, :: -1 if j % 2 else 1]
        source[i * 512 : (i + 1) * 512, j * 512 : (j + 1) * 512] = block
source.flush()
del source
print(f"image.npy: {S} x {S} float32, {(workdir / 'image.npy').stat().st_size / 2**20:.0f} MiB")

# %%
# The lazy pipeline
# -----------------
# ``da.from_array`` over the memory map cuts the image into 1000 x 1000 chunks (4 MiB each);
# ``conv2d`` computes one output block per input chunk (with ``padding="same"`` the first block
# also takes the padding row, so its blocks are 1001, 1000, ...), and ``da.store`` writes each
# finished tile of the edge magnitude into the output file.

image = da.from_array(np.load(workdir / "image.npy", mmap_mode="r"), chunks=(1000, 1000))
x = image[None, None]  # (N, C, H, W) = (1, 1, 8192, 8192)
sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
w = np.stack([sobel, sobel.T])[:, None]  # (F, C, KH, KW) = (2, 1, 3, 3)
g = fastconv.conv2d(x, w, padding="same")  # lazy: (1, 2, 8192, 8192)
edges = da.hypot(g[0, 0], g[0, 1])
print(g)
print(edges)

out = np.lib.format.open_memmap(workdir / "edges.npy", mode="w+", dtype=np.float32, shape=(S, S))
tracemalloc.start()  # NumPy reports its buffers to tracemalloc: the peak of array memory
start = time.perf_counter()
with dask.config.set(scheduler="threads", num_workers=2):
    da.store(edges, out, lock=False)
seconds = time.perf_counter() - start
_, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
out.flush()
print(f"{S * S / 1e6:.0f} Mpixels in {seconds:.1f} s; peak array memory {peak / 2**20:.0f} MiB")

# %%
# Exact across tile borders
# -------------------------
# A window straddling four tiles, recomputed in one piece with NumPy arrays, matches the tiled
# result to the last bit: the halos give each tile what its border windows need.

r0, c0 = 6000 - 40, 8000 - 40  # around a corner shared by four input chunks
source = np.load(workdir / "image.npy", mmap_mode="r")
patch = np.ascontiguousarray(source[r0 - 1 : r0 + 81, c0 - 1 : c0 + 81])[None, None]
direct = fastconv.conv2d(patch, w)  # 'valid' over the patch and its one-pixel margin
direct_edges = np.hypot(direct[0, 0], direct[0, 1])
tiled = np.asarray(out[r0 : r0 + 80, c0 : c0 + 80])
print("max |tiled - whole| at a four-tile corner:", float(np.abs(tiled - direct_edges).max()))

fig, axes = plt.subplots(1, 3, figsize=(14, 4.8), layout="constrained")
step = 32  # thumbnails: every 32nd pixel
axes[0].imshow(source[::step, ::step], cmap="gray")
for k in range(1, S // 1000 + 1):
    axes[0].axhline(k * 1000 / step - 0.5, color="C1", lw=0.8)
    axes[0].axvline(k * 1000 / step - 0.5, color="C1", lw=0.8)
axes[0].set_title(f"input {S} x {S} (every {step}th pixel);\norange: the 1000 x 1000 chunks")
axes[1].imshow(np.asarray(out[::step, ::step]), cmap="magma", vmax=2)
axes[1].set_title("edge magnitude, written tile by tile")
axes[2].imshow(tiled, cmap="magma", vmax=2, extent=(c0, c0 + 80, r0 + 80, r0))
axes[2].axhline(6000, color="C1", lw=1, ls=":")
axes[2].axvline(8000, color="C1", lw=1, ls=":")
axes[2].set_title("full resolution at a corner of four chunks:\nno seam (orange: chunk borders)")
for ax in axes[:2]:
    ax.set_axis_off()
plt.show()

# %%
# Memory
# ------
# The peak of array memory during ``da.store`` against the sizes of the input and the output:
# the computation held a few tiles (and their halos and the two Sobel responses) per thread,
# never the image.

fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
sizes = {"input on disk": S * S * 4, "output on disk": S * S * 4, "peak array memory": peak}
ax.barh(list(sizes), [v / 2**20 for v in sizes.values()], color=["C0", "C0", "C2"])
for i, v in enumerate(sizes.values()):
    ax.text(v / 2**20 + 3, i, f"{v / 2**20:.0f} MiB", va="center")
ax.set_xlabel("MiB")
ax.set_xlim(0, S * S * 4 / 2**20 * 1.25)
plt.show()

del source, out
for f in workdir.iterdir():
    f.unlink()
workdir.rmdir()
