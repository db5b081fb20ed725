"""The CUDA kernels' logic, checked on machines without a GPU by emulating them on the CPU.

tests/test_gpu_backend.py compares the GPU backend with the CPU backend only where CuPy sees a
CUDA device, which CI does not have. Here the same comparison runs with a fake ``cupy``
(tests/gpu_emulation/fakecupy) whose ``RawModule`` compiles the very text fastconv._backend.gpu.ops hands
to NVRTC (the .cu files next to the *installed* package, found through ``fastconv.__file__``)
as C++ with g++ against tests/gpu_emulation/cuda_emu.h. So fastconv._backend.gpu.ops's real code paths
run unchanged: kernel selection, launch geometry, split reductions, argument marshalling (the
emulator checks every argument's C++ type), and each kernel's indexing and block-level
synchronisation logic. tests/gpu_emulation/run_cases.py holds the cases: tiny convolutions
(forward with/without bias and ReLU, grad_input, grad_weight, grad_bias; groups, depthwise,
C == 1, stride, asymmetric padding, dilation, several tiles, split reductions, NaN/inf; float32
and float64), max (dilated, adaptive) and average (divisor_override) pooling forward and
backward, linear, relu_backward and softmax cross-entropy, each against
fastconv._backend.cpu.ops within float tolerances; the public cross_entropy (torch's options, NaN
rows for class indices out of range) and unbatched conv2d / max_pool2d on device arrays against
the same calls on NumPy arrays; plus a self-check that the emulator catches a missing barrier, a
divergent barrier and a wrong argument type.

How it runs: one child process (PYTHONPATH = the fake cupy first, so this process's real CuPy
and fastconv state are untouched) builds the emulator and all kernel files (at most 2 g++ at a
time, cached in a per-session temporary folder, never in the repository), then runs every case
on a single OS thread: each CUDA thread is a fiber, blocks run one at a time. Builds use
-fsanitize=undefined when the toolchain supports it (integer overflow in index arithmetic
aborts). Arrays end at a guard page, so reading or writing past an array crashes the child;
the case it was running is reported as failed and the remaining cases run in a new child.

What passing proves, and what not (details in cuda_emu.h): the kernels compute the right
numbers for these launch configurations (including grid-stride loops going round and
gridDim.z smaller than the number of groups), no access runs past the end of an array, and
every thread of a block reaches the same barriers, under a schedule where each thread runs
alone to its next barrier (thread order alternating between barriers, blocks in reverse order):
a missing __syncthreads typically shows up as stale shared memory. There are no warps, blocks never
overlap, threads never interleave between barriers and atomics never contend, so nothing is
said about memory ordering between blocks, races inside a barrier interval, NVRTC accepting
the code (tests/test_gpu_compile.py) or speed.

Skipped when no C++17 g++ (with <ucontext.h>) can build the emulator; $FAKECUPY_CXX names
another compiler.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from load_script import load_script

import fastconv

EMU_DIR = Path(__file__).resolve().parent / "gpu_emulation"
DRIVER = EMU_DIR / "run_cases.py"
FAKE_CUPY_PATH = EMU_DIR / "fakecupy"
UBSAN = "-fsanitize=undefined -fno-sanitize-recover=undefined"
CHILD_TIMEOUT_S = 300


def _load_driver():
    # The case table lives in the child's script; load it by path (imports only numpy).
    return load_script(DRIVER, "fastconv_gpu_emulation_cases")


CASE_IDS = list(_load_driver().CASES)


def _child_env(cache, cxxflags):
    env = dict(os.environ)
    inherited = env.get("PYTHONPATH")
    env.update(
        PYTHONPATH=os.pathsep.join([str(FAKE_CUPY_PATH)] + ([inherited] if inherited else [])),
        PYTHONDONTWRITEBYTECODE="1",
        FAKECUPY_CACHE=str(cache),
        FAKECUPY_CXXFLAGS=cxxflags,
        FAKECUPY_JOBS=str(max(1, min(2, os.cpu_count() or 1))),
        FASTCONV_PACKAGE_DIR=str(Path(fastconv.__file__).resolve().parent),
        # the CPU reference in the child: one thread is plenty for these sizes
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    return env


def _run_child(case_ids, env, cwd):
    """Run the driver on case_ids; returns (parsed stdout records, returncode, stderr)."""
    try:
        proc = subprocess.run(
            [sys.executable, str(DRIVER), *case_ids],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        stdout, rc, stderr = out, "timeout", err + f"\n(child killed after {CHILD_TIMEOUT_S} s)"
    else:
        stdout, rc, stderr = proc.stdout, proc.returncode, proc.stderr
    records = []
    for line in stdout.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pass  # a stray print: not ours
    return records, rc, stderr


@pytest.fixture(scope="session")
def emulated_results(tmp_path_factory):
    """{case id: (passed, detail)} for all cases, from as few child processes as possible."""
    cxx = os.environ.get("FAKECUPY_CXX", "g++")
    if os.name != "posix":
        pytest.skip("the CUDA kernel emulator needs a POSIX system (ucontext, mmap guard pages)")
    if shutil.which(cxx) is None:
        pytest.skip(f"{cxx} not found: cannot build the CUDA kernel emulator")
    cache = tmp_path_factory.mktemp("gpu_emulation_cache")
    flag_choices = [UBSAN, ""]
    results, remaining = {}, list(CASE_IDS)
    while remaining:
        records, rc, stderr = _run_child(remaining, _child_env(cache, flag_choices[0]), cache)
        probe = next((r for r in records if "probe" in r), None)
        if probe is not None:
            if len(flag_choices) > 1:  # e.g. no libubsan: try again without the sanitizer
                flag_choices.pop(0)
                continue
            pytest.skip(f"{cxx} cannot build the CUDA kernel emulator:\n{probe['reason']}")
        fatal = next((r["fatal"] for r in records if "fatal" in r), None)
        if fatal is not None:
            pytest.fail(
                f"GPU kernel emulation cannot run:\n{fatal}\n{stderr[-3000:]}", pytrace=False
            )
        started = None
        for r in records:
            if r.get("event") == "start":
                started = r["case"]
            elif "status" in r:
                results[r["case"]] = (r["status"] == "ok", r["detail"])
                started = None
        if started is not None:  # the child died inside this case (crash, abort, timeout)
            died = f"the child process died in this case (exit {rc}); its stderr ends with:\n"
            results[started] = (False, died + stderr[-4000:])
        done_now = [c for c in remaining if c in results]
        if not done_now:  # died before any case started: report it everywhere
            msg = f"child process exited with {rc} before running a case:\n{stderr[-4000:]}"
            results.update({c: (False, msg) for c in remaining})
        remaining = [c for c in remaining if c not in results]
    return results


@pytest.mark.parametrize("case", CASE_IDS)
def test_emulated_gpu_kernels_match_cpu(case, emulated_results):
    passed, detail = emulated_results[case]
    if not passed:
        pytest.fail(f"{case}:\n{detail}", pytrace=False)
