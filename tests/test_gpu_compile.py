"""Compile every CUDA kernel file without a GPU, so kernel typos fail CI on any machine.

* nvcc (skipped when not on PATH): each fastconv/_backend/gpu/cuda/*.cu is #included into a small unit
  that takes the address of every ``template <typename T> __global__`` kernel for float and
  double (float only for conv_tc.cu, the tensor-core kernels), which forces the instantiations,
  compiled for sm_80 and sm_90 in one nvcc call.
* NVRTC (skipped when CuPy or libnvrtc is missing): the exact text and name expressions that
  fastconv._backend.gpu.ops hands to cupy.RawModule at run time, compiled for sm_80 and sm_90. This goes
  through CuPy's private ``_NVRTCProgram`` because RawModule asks a (missing) device for its
  architecture; NVRTC itself needs no device.
"""

import shutil
from pathlib import Path

import pytest
from load_script import load_script

KERNEL_DIR = Path(__file__).resolve().parents[1] / "fastconv" / "_backend" / "gpu" / "cuda"
CU_FILES = sorted(p.name for p in KERNEL_DIR.glob("*.cu"))
ARCHS = ("80", "90")


def _load_report():
    # benchmarks/ptxas_report.py holds the instantiation units and the ptxas log parser.
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "ptxas_report.py"
    return load_script(path, "fastconv_ptxas_report")


REPORT = _load_report()


def test_kernel_files_found():
    assert CU_FILES, f"no .cu files in {KERNEL_DIR}"
    for name in CU_FILES:
        assert REPORT.template_kernels((KERNEL_DIR / name).read_text()), f"{name} defines no kernel"


def test_report_tiles_match_plans():
    from fastconv._backend.gpu import plans as gpu_plans

    assert REPORT.TILES == {"float": gpu_plans.tiles("f4"), "double": gpu_plans.tiles("f8")}


def test_report_float_only_files_match_backend():
    from fastconv._backend.gpu import kernels as gpu_kernels

    assert REPORT.FLOAT_ONLY == gpu_kernels.FLOAT_ONLY
    unit = REPORT.instantiation_unit("conv_tc.cu")  # the tensor-core kernels: float only
    assert "conv_igemm_tf32<float, 64, 64>" in unit and "<double" not in unit


def test_parse_ptxas():
    log = (
        "ptxas info    : Compiling entry function '_Z1kIfEvPT_' for 'sm_90'\n"
        "ptxas info    : Function properties for _Z1kIfEvPT_\n"
        "    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
        "ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 380 bytes cmem[0]\n"
    )
    (row,) = REPORT.parse_ptxas(log)
    assert row == dict(
        function="_Z1kIfEvPT_", arch="90", spill_stores=4, spill_loads=12, registers=40, smem=2048
    )


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
@pytest.mark.parametrize("cu_file", CU_FILES)
def test_nvcc_compiles_without_spills(cu_file, tmp_path):
    """Every float/double (and tile) instantiation compiles for sm_80 and sm_90, and ptxas keeps
    every kernel in registers: a spill in the GEMM main loop costs more than the tiling wins."""
    rc, cmd, out = REPORT.compile_verbose(cu_file, ARCHS, tmp_path)
    assert rc == 0, f"nvcc failed on {cu_file}:\n{' '.join(cmd)}\n{out}"
    rows = REPORT.parse_ptxas(out)
    assert {r["arch"] for r in rows} == set(ARCHS), out
    spills = [r for r in rows if r["spill_stores"] or r["spill_loads"]]
    assert not spills, f"{cu_file}: register spills:\n" + "\n".join(map(str, spills))


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
    from fastconv._backend.gpu import ops as _gpu

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


def _nvrtc_library():
    """NVRTC through ctypes (benchmarks/nvrtc_check.py: $LIBNVRTC, else the system's), or skip."""
    check = load_script(
        Path(__file__).resolve().parents[1] / "benchmarks" / "nvrtc_check.py", "fastconv_nvrtc"
    )
    lib = check.load()
    if lib is None:
        pytest.skip("no NVRTC library (set LIBNVRTC, e.g. to the nvidia-cuda-nvrtc wheel's)")
    return check, lib


@pytest.mark.parametrize("cu_file", CU_FILES)
def test_nvrtc_ctypes_compiles_runtime_source(cu_file):
    """The same check without CuPy: NVRTC itself on the runtime text of every kernel file (the
    tensor-core conv_tc.cu included: inline PTX, no headers), sm_80 and sm_90; every name
    expression resolves. Last run: benchmarks/results/nvrtc_sm80_sm90.log."""
    check, lib = _nvrtc_library()
    for arch in ARCHS:
        ok, msg = check.compile_file(lib, cu_file, arch)
        assert ok, f"NVRTC {check.version(lib)} on {cu_file} for sm_{arch}: {msg}"
