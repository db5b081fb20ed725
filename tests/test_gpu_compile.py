"""Compile every CUDA kernel file without a GPU, so kernel typos fail CI on any machine.

* nvcc (skipped when not on PATH): each fastconv/kernels/*.cu is #included into a small unit
  that takes the address of every ``template <typename T> __global__`` kernel for float and
  double (which forces both instantiations), compiled for sm_80 and sm_90 in one nvcc call.
* NVRTC (skipped when CuPy or libnvrtc is missing): the exact text and name expressions that
  fastconv._backend.gpu hands to cupy.RawModule at run time, compiled for sm_80 and sm_90. This goes
  through CuPy's private ``_NVRTCProgram`` because RawModule asks a (missing) device for its
  architecture; NVRTC itself needs no device.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

KERNEL_DIR = Path(__file__).resolve().parents[1] / "fastconv" / "kernels"
CU_FILES = sorted(p.name for p in KERNEL_DIR.glob("*.cu"))
ARCHS = ("80", "90")

# `template <typename T> __global__ void [__launch_bounds__(...)] name(`
_TEMPLATE_KERNEL = re.compile(
    r"template\s*<\s*typename\s+T\s*>\s*__global__\s+void\s+"
    r"(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\("
)


def template_kernels(text):
    """Names of the float/double template kernels defined in a .cu text, in order."""
    return _TEMPLATE_KERNEL.findall(text)


def test_kernel_files_found():
    assert CU_FILES, f"no .cu files in {KERNEL_DIR}"
    for name in CU_FILES:
        assert template_kernels((KERNEL_DIR / name).read_text()), f"{name} defines no kernel"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
@pytest.mark.parametrize("cu_file", CU_FILES)
def test_nvcc_compiles_float_and_double(cu_file, tmp_path):
    names = template_kernels((KERNEL_DIR / cu_file).read_text())
    refs = "".join(f"    (void*)&{n}<float>, (void*)&{n}<double>,\n" for n in names)
    unit = tmp_path / f"instantiate_{Path(cu_file).stem}.cu"
    unit.write_text(f'#include "{cu_file}"\n\nvoid* fastconv_kernels[] = {{\n{refs}}};\n')
    cmd = ["nvcc", "-std=c++17", f"-I{KERNEL_DIR}"]
    for arch in ARCHS:
        cmd += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    cmd += ["-c", str(unit), "-o", str(tmp_path / "unit.o")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"nvcc failed on {cu_file}:\n{' '.join(cmd)}\n{result.stdout}\n{result.stderr}"
    )


def _nvrtc_program():
    """CuPy's NVRTC wrapper class, or skip the test when NVRTC cannot be used here."""
    try:
        from cupy.cuda import compiler
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()  # loads libnvrtc: fails when the CUDA runtime libraries are absent
        return compiler._NVRTCProgram
    except Exception as exc:  # ImportError, a missing library, a changed private API
        pytest.skip(f"NVRTC through CuPy not usable here: {type(exc).__name__}: {exc}")


@pytest.mark.parametrize("cu_file", CU_FILES)
def test_nvrtc_compiles_runtime_source(cu_file):
    program = _nvrtc_program()
    from fastconv._backend import gpu as _gpu

    assert cu_file in _gpu.KERNELS, f"{cu_file} is not listed in fastconv._backend.gpu.KERNELS"
    source = _gpu.kernel_source(cu_file)
    exprs = _gpu.name_expressions(cu_file)
    for arch in ARCHS:
        prog = program(source, cu_file, name_expressions=exprs, method="cubin")
        try:
            _, mapping = prog.compile(tuple(_gpu.NVRTC_OPTIONS) + (f"-arch=sm_{arch}",))
        except Exception as exc:  # CompileException: str() is the NVRTC log
            pytest.fail(f"NVRTC failed on {cu_file} for sm_{arch}:\n{exc}")
        assert sorted(mapping) == sorted(exprs)
