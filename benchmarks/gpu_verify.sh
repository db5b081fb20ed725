#!/usr/bin/env bash
# Verify fastconv's GPU backend in one call on a bare machine with an NVIDIA GPU, CuPy and no
# package index: pre-check, build in place, GPU tests, compute-sanitizer memcheck / racecheck on a
# subset, the conv suite against torch/cuDNN (strict fp32 and TF32; fastconv in fp32 and with its
# opt-in TF32 / 3xTF32 tensor-core kernels) and a LeNet epoch against PyTorch's.
#
#   bash benchmarks/gpu_verify.sh [OUT]        (OUT defaults to $OUT, else ./gpu_results)
#   PYTHON=/path/to/python3 bash benchmarks/gpu_verify.sh   (default: `python3` on the PATH)
#
# Steps, their time limits, and ESTIMATED times on one H100 with 16 CPU cores (estimates, not
# measurements: the script has not run on a GPU yet). CPU figures were measured on this
# project's 2-core VM (Xeon 2.8 GHz; an H100 host's cores are as fast or faster), as CPU
# seconds since the VM is shared; the GPU parts are reasoned from launch counts and sizes:
#   step       limit  estimate  what
#   precheck     30 s    ~10 s  one line naming what is missing (numpy, scipy, Cython, pytest,
#                               threadpoolctl, tqdm, CuPy with a visible CUDA device, a C compiler,
#                               Python's headers; torch optional: without it, no torch columns);
#                               stops here when anything required is missing. Imports 2 s of
#                               CPU here (CPU torch; CUDA torch from a cold disk 3-5 s), CUDA
#                               initialisation 2-4 s
#   build        90 s    ~25 s  benchmarks/build_inplace.py: setup.py's extensions, built without
#                               pyproject's metadata (its PEP 639 fields need setuptools >= 77).
#                               Measured here, one module at a time: 80 CPU-s in all, the longest
#                               src/direct.pyx 13.6 s and src/conv.pyx 13.1 s (Cython + gcc -O3);
#                               with 16 jobs the wall time is about the longest module's
#   tests        80 s    ~40 s  the GPU tests (NVRTC compiles the 8 .cu files, 58 kernels, for
#                               this GPU: 15 CPU-s for sm_90 with NVRTC 13.0 here, conv_tc.cu 6.7
#                               of it; CuPy caches the binaries on disk for the steps below); 131
#                               GPU tests on tiny shapes (N <= 4, C <= 20: tens of ms each); the
#                               39 others 5 CPU-s here (the pre-check rehearsal the most)
#   memcheck     50 s    ~25 s  compute-sanitizer memcheck on 14 GPU tests (CuPy's pool off, so
#                               every array is its own allocation); skipped without the tool.
#                               About 10 s to start Python and the sanitizer and instrument the
#                               cached modules, then a few launches per test, each 10-100x slower
#   racecheck    50 s    ~25 s  compute-sanitizer racecheck on 5 tests of the shared-memory
#                               kernels: the same start; every shared-memory access is checked
#   conv_gpu    100 s    ~50 s  bench_conv.py --device gpu: 14 cases, fastconv fp32 / tf32 /
#                               3xtf32, torch with TF32 off and on, forward and backward, 5 reps.
#                               Per case and phase, each of the 5 columns: 2 warm-ups, then 5 reps
#                               of at most 50 calls or ~20 ms, and 2 untimed calls each: <= 0.15 s,
#                               <= 21 s in all; the host's data and float64 reference 2.6 CPU-s
#                               (measured); first calls, error checks, cuDNN's loading ~15 s
#   lenet_gpu    50 s    ~20 s  bench_lenet_gpu.py: LeNet-5 epochs of 60000 synthetic images,
#                               fastconv and torch interleaved, median of 3 (a warm-up epoch
#                               each: 8 epochs of 938 steps). fastconv's Python per step 1.2 CPU-ms
#                               here with launches stubbed (27 launches, 12 CuPy ops), about 1.6
#                               ms with CuPy's own cost: ~1.5 s an epoch (the GPU's ~0.25 ms of
#                               tiny kernels per step is hidden); torch's eager step ~0.7 ms
#   total       450 s (each step killed 2 s after its limit: at most 464 s, under 8 minutes);
#               about 3.5 minutes expected. The limits leave each step 2x its estimate or more
#               (conv_gpu 1.8x: cuDNN's first call per shape is the least known part).
#
# Every step's output is teed to the console, to OUT/verify.log and to
# benchmarks/results/gpu_<GPU name>/<step>.log (the GPU name sanitised, e.g.
# gpu_NVIDIA_H100_80GB_HBM3), next to env.json, conv_gpu.json, lenet_gpu.json and summary.txt:
# that folder is the record to commit. OUT gets verify.log, env.json, summary.txt and
# gpu_<GPU name>.tar.gz (the folder, refreshed after every step; unpack it in benchmarks/results/):
# four files, few enough for a runner that brings back only a handful. After the pre-check,
# every step runs even if an earlier one failed (only a failed build stops the rest);
# summary.txt says which passed. Exit status: 0 all passed (a missing compute-sanitizer is a
# skip, not a failure), 1 a step failed, 2 the pre-check failed (nothing built, nothing written
# under benchmarks/).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-./gpu_results}}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" # the in-place build, not an installed copy
export PYTHONUNBUFFERED=1
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
LOGDIR="$SCRATCH" # the step logs' folder: benchmarks/results/gpu_<name>/ once the GPU is known
RES=""
TARBALL=""
: >"$OUT/verify.log"
rm -f "$OUT/summary.txt" "$OUT/env.json" "$OUT"/gpu_*.tar.gz
STEPS=(precheck build tests memcheck racecheck conv_gpu lenet_gpu)
declare -A RESULT SECS
failed=0
started=$SECONDS

say() { printf '%s\n' "$*" | tee -a "$OUT/verify.log"; }

pack() { # refresh OUT's copy of the results folder
    if [ -n "$RES" ]; then
        tar -czf "$OUT/$TARBALL" -C "$(dirname "$RES")" "$(basename "$RES")" || true
    fi
}

record() { # record NAME EXIT_STATUS SECONDS LIMIT_S
    local status
    case "$2" in
        0) status="passed" ;;
        124 | 137) status="TIMED OUT (limit $4 s)" ;;
        *) status="FAILED (exit $2)" ;;
    esac
    RESULT[$1]="$status"
    SECS[$1]="$3"
    if [ "$2" -ne 0 ]; then failed=1; fi
    say "   $1: $status after $3 s"
    pack
}

step() { # step NAME LIMIT_S COMMAND...: time-limited, output teed to the console and two logs
    local name="$1" limit="$2" start=$SECONDS rc
    shift 2
    local log="$LOGDIR/$name.log"
    : >"$log"
    say "== $name (limit $limit s): $*"
    set +e
    if [ -n "$HAVE_TIMEOUT" ]; then # without it only the pre-check runs, and it fails
        timeout -k 2 "$limit" "$@" </dev/null 2>&1 | tee -a "$log" "$OUT/verify.log"
    else
        "$@" </dev/null 2>&1 | tee -a "$log" "$OUT/verify.log"
    fi
    rc=${PIPESTATUS[0]}
    set -e
    record "$name" "$rc" $((SECONDS - start)) "$limit"
    return 0
}

skip() { # skip NAME SHORT_REASON DETAIL
    RESULT[$1]="skipped ($2)"
    say "== $1 skipped: $3"
}

# pytest's last line, the sanitizers' summaries, the benchmarks' ratios, the build's last line
KEY_LINES='[0-9]+ (passed|failed|errors?)\b.* in [0-9.]+s|^built [0-9]+ modules|ERROR SUMMARY|'
KEY_LINES+='RACECHECK SUMMARY|^geomean|speed vs torch|img/s'
summary() {
    local s line
    {
        echo "fastconv GPU verification, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit" \
            "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
        grep -m1 '^precheck:' "$OUT/verify.log" || echo "precheck: no line (see verify.log)"
        printf '%-10s %-36s %s\n' step result seconds
        for s in "${STEPS[@]}"; do
            printf '%-10s %-36s %s\n' "$s" "${RESULT[$s]:-not run}" "${SECS[$s]:--}"
        done
        echo "total $((SECONDS - started)) s"
        if [ -n "$RES" ]; then
            echo "results: $RES/ (and $OUT/$TARBALL)"
        else
            echo "results: none written under benchmarks/results/ (the pre-check did not pass)"
        fi
        echo "key lines (each step's summary lines, else its last line):"
        for s in "${STEPS[@]:1}"; do # the pre-check's line is above
            [ -s "$LOGDIR/$s.log" ] || continue
            {
                grep -E "$KEY_LINES" "$LOGDIR/$s.log" || grep -v '^[[:space:]]*$' "$LOGDIR/$s.log"
            } | tail -n 3 | while IFS= read -r line; do
                printf '  %-9s | %s\n' "$s" "${line:0:150}"
            done || true
        done
    } >"$SCRATCH/summary.txt"
    cp "$SCRATCH/summary.txt" "$OUT/summary.txt"
    if [ -n "$RES" ]; then cp "$SCRATCH/summary.txt" "$RES/summary.txt"; fi
    pack
    echo
    tee -a "$OUT/verify.log" <"$SCRATCH/summary.txt"
}

# ------------------------------------------------------------------------------ pre-check
# What the shell needs, then what Python needs, reported together in one line.
shell_missing=()
HAVE_TIMEOUT=1
if ! command -v timeout >/dev/null 2>&1; then
    shell_missing+=("timeout (GNU coreutils)")
    HAVE_TIMEOUT=""
fi
if ! command -v "$PY" >/dev/null 2>&1; then
    shell_missing+=("$PY (not on the PATH: install Python 3 or set PYTHON)")
    printf -v joined '%s; ' "${shell_missing[@]}"
    say "precheck: MISSING ${joined%; } -- stopping"
    RESULT[precheck]="FAILED (missing: see the precheck line)"
    summary
    exit 2
fi
cat >"$SCRATCH/precheck.py" <<'PYEOF'
"""Print one line naming what is missing (or what was found); write env.json; exit 3 if a
required piece is missing. argv: env.json's path, then what the shell found missing."""
import importlib
import json
import os
import platform
import shutil
import sys
import sysconfig

missing, optional, found = list(sys.argv[2:]), [], []
env = {"python": platform.python_version(), "executable": sys.executable,
       "machine": platform.node()}


def short(exc):
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text if len(text) <= 90 else text[:87] + "..."


def need(name):
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # a broken install can raise anything
        missing.append(f"{name} ({short(exc)})")
        return None
    env[name] = getattr(module, "__version__", "?")
    found.append(f"{name} {env[name]}")
    return module


for name in ("numpy", "scipy", "Cython", "setuptools", "pytest", "threadpoolctl", "tqdm"):
    need(name)
cupy = need("cupy")
if cupy is not None:
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        why = "0 devices"
    except Exception as exc:
        count, why = 0, short(exc)
    if count < 1:
        missing.append(f"a CUDA device visible to CuPy ({why})")
    else:
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        env.update(
            gpu=name.decode() if isinstance(name, bytes) else str(name), gpu_count=count,
            sm_count=props["multiProcessorCount"],
            compute_capability=f"{props['major']}.{props['minor']}",
            cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
            driver=cupy.cuda.runtime.driverGetVersion(),
        )
        found[-1] += f" on {env['gpu']} (sm_{props['major']}{props['minor']})"
try:
    import torch
except Exception as exc:
    optional.append(f"torch ({short(exc)})")
else:
    env.update(torch=torch.__version__, torch_cuda=torch.version.cuda)
    if torch.cuda.is_available():
        env["cudnn"] = torch.backends.cudnn.version()
        found.append(f"torch {torch.__version__}")
    else:
        optional.append(f"torch {torch.__version__} without CUDA")
env["torch_gpu"] = "cudnn" in env
cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
if shutil.which(cc) is None:
    missing.append(f"a C compiler ({cc!r}, the one setuptools would use, is not on the PATH)")
else:
    env["cc"] = shutil.which(cc)
    found.append(os.path.basename(cc))
include = sysconfig.get_paths()["include"]
if not os.path.exists(os.path.join(include, "Python.h")):
    missing.append(f"Python's headers (no Python.h in {include})")
env["precheck_missing"], env["precheck_optional_missing"] = missing, optional
with open(sys.argv[1], "w") as fh:
    json.dump(env, fh, indent=1)
extra = f"; optional, missing: {', '.join(optional)}: no torch columns" if optional else ""
if missing:
    print(f"precheck: MISSING {'; '.join(missing)}{extra} -- stopping (Python: {sys.executable})")
    sys.exit(3)
print(f"precheck: ok: {', '.join(found)}{extra}")
PYEOF
step precheck 30 "$PY" "$SCRATCH/precheck.py" "$OUT/env.json" "${shell_missing[@]}"
if [ "${RESULT[precheck]}" != "passed" ]; then
    grep -q '^precheck:' "$OUT/verify.log" ||
        say "precheck: did not finish (${RESULT[precheck]}): see $OUT/verify.log"
    summary
    exit 2
fi

read_env() { "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' \
    "$OUT/env.json" "$1"; }
GPU_NAME="$(read_env gpu)"
SAFE_NAME="$(printf '%s' "$GPU_NAME" | tr -c 'A-Za-z0-9._-' '_' | tr -s '_' | sed 's/^_//; s/_$//')"
RES="$PWD/benchmarks/results/gpu_${SAFE_NAME:-unknown}"
TARBALL="gpu_${SAFE_NAME:-unknown}.tar.gz"
rm -rf "$RES"
mkdir -p "$RES"
cp "$SCRATCH/precheck.log" "$OUT/env.json" "$RES/"
LOGDIR="$RES"
TORCH_GPU="$(read_env torch_gpu)"
JOBS="$(nproc 2>/dev/null || echo 4)"

# ------------------------------------------------------------------------------ build, tests
step build 90 "$PY" benchmarks/build_inplace.py -j "$JOBS"
if [ "${RESULT[build]}" != "passed" ]; then
    summary
    exit 1
fi
# Every GPU op against the CPU backend on CuPy arrays (this compiles the kernels for this GPU;
# CuPy caches them on disk for the steps below), plans, the precision switch, these scripts.
# The nvcc/NVRTC cross-compile tests ran where the code was written
# (benchmarks/results/ptxas_sm80_sm90.log, nvrtc_sm80_sm90.log).
step tests 80 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu_backend.py \
    tests/test_gpu_plans.py tests/test_gpu_precision.py tests/test_gpu_scripts.py

# ------------------------------------------------------------------------------ sanitizers
# Short subsets (the sanitizers slow every launch down 10-100x). CuPy's memory pool is turned
# off so that each array is its own cudaMalloc and memcheck sees an access past its end.
B=tests/test_gpu_backend.py
MEMCHECK_TESTS=(
    "$B::test_conv2d_forward[True-True-stride_asym_pad_dil-float32]"
    "$B::test_conv2d_forward[True-True-many_tiles-float32]"
    "$B::test_conv2d_forward[True-False-pointwise_groups-float32]"
    "$B::test_conv2d_forward[False-False-depthwise_x2-float64]"
    "$B::test_conv2d_backward[split_reduction-float32]"
    "$B::test_conv2d_backward[groups3_stride_dil-float64]"
    "$B::test_conv2d_backward[depthwise_x1-float32]"
    "$B::test_conv2d_grad_weight_bias_fused[pointwise_groups-float32]"
    "$B::test_conv2d_tensor_core_precision_within_bounds[split_reduction-tf32]"
    "$B::test_conv2d_tensor_core_precision_within_bounds[many_tiles-3xtf32]"
    "$B::test_max_pool2d[case0-float32]"
    "$B::test_avg_pool2d[False-case1-float64]"
    "$B::test_linear[True-True-float32]"
    "$B::test_softmax_cross_entropy[3-700-float32]"
)
RACECHECK_TESTS=(
    "$B::test_conv2d_forward[True-True-many_tiles-float32]"
    "$B::test_conv2d_backward[split_reduction-float64]"
    "$B::test_conv2d_grad_weight_bias_fused[split_reduction-float32]"
    "$B::test_conv2d_tensor_core_precision_within_bounds[many_tiles-tf32]"
    "$B::test_softmax_cross_entropy[3-700-float32]"
)
NO_POOL='import sys, cupy, pytest; cupy.cuda.set_allocator(None); '
NO_POOL+='sys.exit(pytest.main(sys.argv[1:]))'
CUDA_BIN="${CUDA_HOME:-/usr/local/cuda}/bin"
SANITIZER="$(command -v compute-sanitizer || true)"
if [ -z "$SANITIZER" ] && [ -x "$CUDA_BIN/compute-sanitizer" ]; then
    SANITIZER="$CUDA_BIN/compute-sanitizer"
fi
if [ -n "$SANITIZER" ]; then
    step memcheck 50 "$SANITIZER" --tool memcheck --error-exitcode 9 --print-limit 20 \
        "$PY" -c "$NO_POOL" -q -p no:cacheprovider "${MEMCHECK_TESTS[@]}"
    step racecheck 50 "$SANITIZER" --tool racecheck --error-exitcode 9 --print-limit 20 \
        "$PY" -c "$NO_POOL" -q -p no:cacheprovider "${RACECHECK_TESTS[@]}"
else
    skip memcheck "no compute-sanitizer" "compute-sanitizer is not on the PATH nor in $CUDA_BIN"
    skip racecheck "no compute-sanitizer" "compute-sanitizer is not on the PATH nor in $CUDA_BIN"
fi

# ------------------------------------------------------------------------------ benchmarks
# Columns: fastconv (fp32), fastconv-tf32, fastconv-3xtf32 (fastconv.gpu_precision); with torch
# on CUDA also torch (allow_tf32=False) and torch-tf32 (cuDNN's default).
CONV_IMPLS=fastconv,fastconv-tf32,fastconv-3xtf32
LENET_IMPLS=fastconv
if [ "$TORCH_GPU" = "True" ]; then
    CONV_IMPLS="$CONV_IMPLS,torch"
    LENET_IMPLS="$LENET_IMPLS,torch"
fi
step conv_gpu 100 "$PY" benchmarks/bench_conv.py --device gpu --impls "$CONV_IMPLS" --reps 5 \
    --json "$RES/conv_gpu.json"
step lenet_gpu 50 "$PY" benchmarks/bench_lenet_gpu.py --impls "$LENET_IMPLS" --reps 3 \
    --json "$RES/lenet_gpu.json"

summary
exit "$failed"
