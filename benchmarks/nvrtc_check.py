"""Compile every fastconv kernel file with NVRTC itself (through ctypes, no CuPy, no GPU).

    LIBNVRTC=/path/to/libnvrtc.so.13 python benchmarks/nvrtc_check.py [--out LOG] [FILE.cu ...]

Exactly what fastconv hands to cupy.RawModule at run time: the text of
fastconv._backend.gpu..kernel_source (headers pasted in), NVRTC_OPTIONS and every name
expression, compiled to a cubin for sm_80 and sm_90; each name expression must resolve. The
library is $LIBNVRTC, else whatever ctypes finds as "nvrtc" (e.g. from the
nvidia-cuda-nvrtc wheel's lib folder on LD_LIBRARY_PATH). tests/test_gpu_compile.py runs it
when a library is found.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("80", "90")


def load():
    """The NVRTC library, or None."""
    path = os.environ.get("LIBNVRTC") or ctypes.util.find_library("nvrtc")
    if not path:
        return None
    try:
        return ctypes.CDLL(path)
    except OSError:
        return None


def version(lib):
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def compile_file(lib, filename, arch):
    """(ok, message): NVRTC on kernels/<filename> for sm_<arch>; message is the log or error."""
    sys.path.insert(0, str(ROOT))
    from fastconv._backend.gpu import kernels as gk

    exprs = gk.name_expressions(filename)
    prog = ctypes.c_void_p()
    src = gk.kernel_source(filename).encode()
    if lib.nvrtcCreateProgram(ctypes.byref(prog), src, filename.encode(), 0, None, None):
        return False, "nvrtcCreateProgram failed"
    try:
        for e in exprs:
            lib.nvrtcAddNameExpression(prog, e.encode())
        opts = [o.encode() for o in (*gk.NVRTC_OPTIONS, f"-arch=sm_{arch}")]
        rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        text = log.value.decode(errors="replace").strip()
        if rc:
            return False, f"NVRTC error {rc}:\n{text}"
        missing = [
            e
            for e in exprs
            if lib.nvrtcGetLoweredName(prog, e.encode(), ctypes.byref(ctypes.c_char_p()))
        ]
        if missing:
            return False, f"name expressions not found: {missing}"
        lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
        return True, f"{len(exprs)} kernels, cubin {size.value} bytes" + (
            f"; {text}" if text else ""
        )
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    lib = load()
    if lib is None:
        print("no NVRTC library: set LIBNVRTC", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from fastconv._backend.gpu import kernels as gk

    lines, failed = [f"NVRTC {'.'.join(map(str, version(lib)))}"], False
    for f in args.files or list(gk.KERNELS):
        for arch in ARCHS:
            ok, msg = compile_file(lib, f, arch)
            failed |= not ok
            lines.append(f"{f:20s} sm_{arch}: {'ok' if ok else 'FAILED'}  {msg}")
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
