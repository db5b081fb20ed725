"""Registers, spills and shared memory of every CUDA kernel, from nvcc's ``-Xptxas -v``.

    python benchmarks/ptxas_report.py [--archs 80,90] [--out benchmarks/results/ptxas.log]

Each fastconv/_backend/gpu/cuda/*.cu is #included into a small unit that takes the address of every
float/double instantiation the GPU backend compiles at run time (the tiled kernels for each
tile shape of gpu_plans.tiles(dtype)), compiled for each architecture. No GPU needed. The test
tests/test_gpu_compile.py uses these functions and asserts zero spill bytes.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNEL_DIR = ROOT / "fastconv" / "_backend" / "gpu" / "cuda"
# gpu_plans.tiles(dtype) (tests/test_gpu_compile.py checks they agree)
TILES = {"float": ((128, 128), (64, 128), (64, 64)), "double": ((64, 128), (64, 64))}
# Files whose kernels exist for float only (tensor cores; gpu_kernels.FLOAT_ONLY, checked by the
# same test).
FLOAT_ONLY = frozenset({"conv_tc.cu"})

# `template <typename T[, int BM, int BN]> __global__ void [__launch_bounds__(...)] name(`
_TEMPLATE_KERNEL = re.compile(
    r"template\s*<\s*typename\s+T\s*(,\s*int\s+BM\s*,\s*int\s+BN\s*)?>\s*__global__\s+void\s+"
    r"(?:__launch_bounds__\s*\((?:[^()]|\([^()]*\))*\)\s*)?(\w+)\s*\("
)
_FUNCTION = re.compile(r"Function properties for (\S+)")
_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


def template_kernels(text):
    """[(name, tiled)] of the float/double template kernels defined in a .cu text, in order."""
    return [(name, bool(tiled)) for tiled, name in _TEMPLATE_KERNEL.findall(text)]


def instantiation_unit(cu_file):
    """C++ text that forces every instantiation of the kernels in cu_file."""
    refs = []
    ctypes = ("float",) if cu_file in FLOAT_ONLY else ("float", "double")
    for name, tiled in template_kernels((KERNEL_DIR / cu_file).read_text()):
        for ctype in ctypes:
            args = [f"{ctype}, {bm}, {bn}" for bm, bn in TILES[ctype]] if tiled else [ctype]
            refs += [f"    (void*)&{name}<{a}>,\n" for a in args]
    return f'#include "{cu_file}"\n\nvoid* fastconv_kernels[] = {{\n{"".join(refs)}}};\n'


def compile_verbose(cu_file, archs, workdir):
    """Run nvcc -Xptxas -v on cu_file's unit; returns (returncode, command, combined output)."""
    unit = Path(workdir) / f"instantiate_{Path(cu_file).stem}.cu"
    unit.write_text(instantiation_unit(cu_file))
    cmd = ["nvcc", "-std=c++17", f"-I{KERNEL_DIR}", "-Xptxas", "-v"]
    for arch in archs:
        cmd += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    cmd += ["-c", str(unit), "-o", str(Path(workdir) / "unit.o")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    return r.returncode, cmd, r.stdout + r.stderr


def parse_ptxas(text):
    """[{function, arch, registers, smem, spill_stores, spill_loads}] from ptxas -v output."""
    rows, current, arch = [], None, None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for 'sm_(\d+)'", line)
        if m:
            current, arch = m.group(1), m.group(2)
            continue
        s = _SPILL.search(line)
        if s and current:
            rows.append(
                dict(function=current, arch=arch, spill_stores=int(s[1]), spill_loads=int(s[2]))
            )
            continue
        u = _USED.search(line)
        if u and rows and rows[-1]["function"] == current and "registers" not in rows[-1]:
            rows[-1].update(registers=int(u[1]), smem=int(u[2] or 0))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", default="80,90")
    p.add_argument("--out", default=None, help="write the table and raw log here")
    args = p.parse_args(argv)
    archs = args.archs.split(",")
    lines, raw = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for cu in sorted(q.name for q in KERNEL_DIR.glob("*.cu")):
            rc, cmd, out = compile_verbose(cu, archs, tmp)
            raw += [f"$ {' '.join(cmd)}", out]
            if rc != 0:
                print(out, file=sys.stderr)
                return 1
            for r in parse_ptxas(out):
                lines.append(
                    f"{cu:22s} sm_{r['arch']}  regs {r.get('registers', '?'):>3}  "
                    f"smem {r.get('smem', '?'):>6}  spill st/ld {r['spill_stores']}/"
                    f"{r['spill_loads']}  {r['function']}"
                )
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n\n# raw nvcc -Xptxas -v output\n" + "\n".join(raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
