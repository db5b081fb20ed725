"""The GPU verification scripts, as far as they run without a GPU.

benchmarks/gpu_verify.sh is meant for a machine this repository has not had: its shell syntax,
the steps and files it names, and the Python parts it runs (bench_lenet_gpu.py's arguments,
data and JSON; bench_conv.py's --device gpu arguments) are checked here.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from load_script import load_script

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
VERIFY = BENCH / "gpu_verify.sh"


def _load(name):
    return load_script(BENCH / f"{name}.py", f"fastconv_bench_{name}")


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_verify_script_parses():
    subprocess.run(["bash", "-n", str(VERIFY)], check=True)


def test_verify_script_steps_exist_and_fit_ten_minutes():
    text = VERIFY.read_text()
    assert text.splitlines()[0] == "#!/usr/bin/env bash" and "set -euo pipefail" in text
    for path in re.findall(r"\b((?:benchmarks|tests)/[\w/]+\.py)\b", text):
        assert (ROOT / path).exists(), path
    limits = [int(s) for s in re.findall(r"^step \w+ (\d+) ", text, re.M)]
    assert len(limits) == 4 and sum(limits) < 600, limits
    assert "pip install" not in text.replace("pip install --no-build-isolation", "")


def test_bench_conv_accepts_the_gpu_arguments():
    bench_conv = _load("bench_conv")
    args = bench_conv.parse_args(["--device", "gpu", "--impls", "fastconv,torch", "--reps", "5"])
    assert args.device == "gpu" and args.reps == 5
    assert any(c.stride == 2 for c in bench_conv.build_suite(quick=False))


def test_bench_lenet_gpu_arguments():
    bench = _load("bench_lenet_gpu")
    args = bench.parse_args(["--images", "128", "--impls", "torch"])
    assert args.images == 128 and args.impls == ["torch"] and args.batch_size == 64
    for bad in (["--impls", "tensorflow"], ["--reps", "0"], ["--impls", ""]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_bench_lenet_gpu_data_and_json(tmp_path):
    bench = _load("bench_lenet_gpu")
    images, labels = bench.synthetic_mnist(10)
    assert images.shape == (10, 1, 32, 32) and images.dtype == np.float32
    assert labels.dtype == np.int64 and labels.min() >= 0 and labels.max() <= 9
    # the timing/JSON plumbing with a stand-in for the GPU epochs
    calls = []

    def maker(name):
        def make(images, labels, batch_size):
            def epoch():
                calls.append(name)
                return 2.3

            return epoch

        return make

    args = bench.parse_args(["--images", "10", "--reps", "2", "--json", str(tmp_path / "r.json")])
    results = bench.run(args, {"fastconv": maker("fastconv"), "torch": maker("torch")})
    assert calls == ["fastconv", "torch", "fastconv", "torch", "torch", "fastconv"]
    assert (
        set(results) == {"fastconv", "torch"} and results["torch"]["mean_loss_per_rep"] == [2.3] * 2
    )
    json.dumps(results)  # serialisable as written
