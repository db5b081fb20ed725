"""Shared-memory bank conflicts of the implicit-GEMM tiles, lane by lane, without a GPU.

tests/gpu_emulation/bank_probe.cpp runs the kernels' own code (the convolution loaders' stores
through FmaTile's and MmaTile's store_a / store_b, and MmaTile's mma fragment loads) as C++
against the emulator's header, for every lane of every warp of each float tile, and prints the
shared-memory word each lane touches in each warp-wide access. Here those words are sorted into
the 32 banks of 4 bytes: an access takes as many passes as the most distinct words any one bank
holds (lanes reading the same word share it). Every one must take one pass.

The same probe, built with the layout the tensor-core tile had before (rows padded by 4, no
skew), must find the 2-way conflict of its fragment loads; with the pad of 8 alone, the 2-way
conflict of the loaders' stores that the skew of rows 4..7 removes: so this test can fail.
Skipped without g++ (or $FAKECUPY_CXX).
"""

import json
import os
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNEL_DIR = ROOT / "fastconv" / "_backend" / "gpu" / "cuda"
EMU_DIR = Path(__file__).resolve().parent / "gpu_emulation"
PROBE = EMU_DIR / "bank_probe.cpp"
CXX = os.environ.get("FAKECUPY_CXX", "g++")
BANKS = 32
ACCESSES = {
    "fp32": {"conv store A", "conv store B", "wgrad store A", "wgrad store B"},
    "tf32": {"conv store A", "conv store B", "wgrad store A", "wgrad store B"}
    | {"mma fragment A", "mma fragment B"},
}
ACCESSES["3xtf32"] = ACCESSES["tf32"]


def passes(words):
    """Passes a warp-wide 32-bit shared-memory access takes: the most distinct words in a bank."""
    banks = defaultdict(set)
    for w in words:
        banks[w % BANKS].add(w)
    return max(len(s) for s in banks.values())


def test_passes_counts_distinct_words_per_bank():
    assert passes(range(32)) == 1
    assert passes([0] * 32) == 1  # one word: a broadcast
    assert passes([0, 32] + list(range(1, 31))) == 2
    assert passes([32 * i for i in range(32)]) == 32
    # the pad-4 fragment load of the issue, by its formula: lane (g, t) reads t * 132 + g
    assert passes([(lane % 4) * 132 + lane // 4 for lane in range(32)]) == 2


def _layout_variant(tmp_path, pad, skew):
    """A copy of the kernel folder whose MmaTile has rows padded by `pad`, skewed by `skew`."""
    folder = tmp_path / f"cuda_pad{pad}_skew{skew}"
    shutil.copytree(KERNEL_DIR, folder)
    header = folder / "igemm_mma.cuh"
    text = header.read_text()
    text, n_pad = re.subn(r"MMA_PAD = \d+,", f"MMA_PAD = {pad},", text)
    text, n_skew = re.subn(r"MMA_SKEW = \d+,", f"MMA_SKEW = {skew},", text)
    assert n_pad == n_skew == 1, "igemm_mma.cuh no longer defines MMA_PAD / MMA_SKEW once"
    header.write_text(text)
    return folder


def _probe_all(tmp_path, kernel_dirs):
    """{kernel dir: [records]}: the probe built against each folder (in parallel) and run."""
    if shutil.which(CXX) is None:
        pytest.skip(f"{CXX} not found: cannot build the bank probe")
    builds = {}
    for i, folder in enumerate(kernel_dirs):
        exe = tmp_path / f"bank_probe_{i}"
        cmd = [CXX, "-std=c++17", "-O1", f"-I{folder}", f"-I{EMU_DIR}", str(PROBE), "-o", str(exe)]
        builds[folder] = (exe, subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True))
    out = {}
    for folder, (exe, proc) in builds.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"bank_probe.cpp does not build against {folder}:\n{err}"
        run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, check=True)
        out[folder] = [json.loads(line) for line in run.stdout.splitlines()]
    return out


def _worst(records):
    """{(tile, math, access): passes of its worst warp-wide access}, checking every group is a
    whole warp's."""
    worst = {}
    for r in records:
        groups = r["groups"]
        assert groups and all(len(g) == 32 and min(g) >= 0 for g in groups), r["access"]
        worst[(r["tile"], r["math"], r["access"])] = max(passes(g) for g in groups)
    return worst


def test_tiles_conflict_free(tmp_path):
    from fastconv._backend.gpu import plans as gpu_plans

    old = _layout_variant(tmp_path, 4, 0)  # the tensor-core tile's layout before
    pad_only = _layout_variant(tmp_path, 8, 0)
    found = _probe_all(tmp_path, [KERNEL_DIR, old, pad_only])
    worst = _worst(found[KERNEL_DIR])

    tiles = {f"{bm}x{bn}" for bm, bn in gpu_plans.tiles("f4")}
    expected = {(t, m, a) for t in tiles for m, accesses in ACCESSES.items() for a in accesses}
    assert set(worst) == expected
    conflicts = {key: n for key, n in worst.items() if n != 1}
    assert not conflicts, f"bank conflicts (passes per access): {conflicts}"

    # The probe sees what the layouts do: before, every fragment load took 2 passes (stores 1);
    # the pad of 8 alone fixes the loads but makes the A stores (and wgrad's B stores) take 2.
    before = _worst(found[old])
    for (tile, math, access), n in before.items():
        if math != "fp32":
            assert n == (2 if access.startswith("mma") else 1), (tile, math, access, n)
    unskewed = _worst(found[pad_only])
    for (tile, math, access), n in unskewed.items():
        if math != "fp32":
            stores_two = access in ("conv store A", "wgrad store A", "wgrad store B")
            assert n == (2 if stores_two else 1), (tile, math, access, n)
