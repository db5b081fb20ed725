#!/usr/bin/env bash
# Verify fastconv's GPU backend on a machine with an NVIDIA GPU, CuPy and PyTorch installed and
# no package index: build in place, run the GPU tests, benchmark the conv suite against
# torch/cuDNN (strict fp32 and TF32; fastconv in fp32 and with its opt-in TF32 / 3xTF32 tensor-core
# kernels) and a LeNet epoch against PyTorch's. Under 10 minutes.
#
#   bash benchmarks/gpu_verify.sh [OUT]        (OUT defaults to $OUT, else ./gpu_results)
#
# Writes to OUT: env.json (GPU, driver, CuPy, torch, cuDNN), build.log, tests.log,
# conv_gpu.{log,json}, lenet_gpu.{log,json}, summary.txt. Every step runs even if an earlier
# one fails; the exit status is non-zero if any did (summary.txt lists them). Commit OUT's files
# under benchmarks/results/ (e.g. benchmarks/results/gpu_<name>/).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-./gpu_results}}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the in-place build, not an installed copy
failed=()

step() {  # step NAME TIMEOUT_S COMMAND...: run with a time limit, log to OUT/NAME.log
    local name="$1" limit="$2"
    shift 2
    echo "== $name (limit ${limit}s)"
    local start=$SECONDS rc=0
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1 || rc=$?
    echo "   exit $rc after $((SECONDS - start)) s; log: $OUT/$name.log"
    tail -n 5 "$OUT/$name.log" | sed 's/^/   | /'
    if [ "$rc" -ne 0 ]; then failed+=("$name (exit $rc)"); fi
}

"$PY" - "$OUT/env.json" <<'PYEOF' || failed+=("env")
import json, platform, sys
env = {"python": platform.python_version(), "machine": platform.node()}
try:
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    env.update(
        gpu=name.decode() if isinstance(name, bytes) else str(name),
        sm_count=props["multiProcessorCount"],
        compute_capability=f"{props['major']}.{props['minor']}", cupy=cupy.__version__,
        cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
        driver=cupy.cuda.runtime.driverGetVersion(),
    )
except Exception as exc:
    env["cupy_error"] = f"{type(exc).__name__}: {exc}"
try:
    import torch
    env.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
               cudnn=torch.backends.cudnn.version())
except Exception as exc:
    env["torch_error"] = f"{type(exc).__name__}: {exc}"
json.dump(env, open(sys.argv[1], "w"), indent=1)
print(json.dumps(env, indent=1))
PYEOF

step build 150 "$PY" setup.py build_ext --inplace -j 4
# The GPU tests: every op against the CPU backend on CuPy arrays (this compiles the kernels for
# this GPU; CuPy caches them on disk for the steps below), plans, scripts. The nvcc/NVRTC
# cross-compile tests ran where the code was written (benchmarks/results/ptxas_sm80_sm90.log).
step tests 150 "$PY" -m pytest -q -x -p no:cacheprovider tests/test_gpu_backend.py \
    tests/test_gpu_plans.py tests/test_gpu_scripts.py
# Columns: fastconv (fp32), fastconv-tf32, fastconv-3xtf32 (fastconv.gpu_precision), torch
# (allow_tf32=False), torch-tf32 (cuDNN's default).
step conv_gpu 180 "$PY" benchmarks/bench_conv.py --device gpu \
    --impls fastconv,fastconv-tf32,fastconv-3xtf32,torch --reps 5 --json "$OUT/conv_gpu.json"
step lenet_gpu 100 "$PY" benchmarks/bench_lenet_gpu.py --reps 3 --json "$OUT/lenet_gpu.json"

{
    echo "fastconv GPU verification, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    cat "$OUT/env.json" 2>/dev/null || true
    if [ "${#failed[@]}" -eq 0 ]; then echo "all steps passed"; else printf 'FAILED: %s\n' "${failed[@]}"; fi
} | tee "$OUT/summary.txt"
[ "${#failed[@]}" -eq 0 ]
