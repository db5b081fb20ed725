"""The GPU verification scripts, as far as they run without a GPU.

benchmarks/gpu_verify.sh is meant for a machine this repository has not had: its shell syntax,
the steps, limits and files it names, the tests its sanitizer steps pick, a rehearsal of its
pre-check (the script run with a `python3` that cannot import CuPy: it must stop there, in one
line naming what is missing, before building anything), the build it uses (setup.py's extension
list, not the project metadata), and the Python parts it runs (bench_lenet_gpu.py's arguments,
data and JSON; bench_conv.py's --device gpu arguments) are checked here.
"""

import ast
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time
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


STEPS = ["precheck", "build", "tests", "memcheck", "racecheck", "conv_gpu", "lenet_gpu"]


def _step_commands(text):
    """{step name: (limit_s, its command with continuation lines joined)} from `step` calls."""
    joined = text.replace("\\\n", " ")
    return {
        name: (int(limit), command)
        for name, limit, command in re.findall(r"^\s*step (\w+) (\d+) (.*)$", joined, re.M)
    }


def test_verify_script_steps_exist_and_fit_eight_minutes():
    text = VERIFY.read_text()
    assert text.splitlines()[0] == "#!/usr/bin/env bash" and "set -euo pipefail" in text
    for path in re.findall(r"\b((?:benchmarks|tests)/[\w/]+\.py)\b", text):
        assert (ROOT / path).exists(), path
    steps = _step_commands(text)
    assert list(steps) == STEPS and f"STEPS=({' '.join(STEPS)})" in text
    (grace,) = re.findall(r'timeout -k (\d+) "\$limit"', text)
    limits = [limit for limit, _ in steps.values()]
    assert sum(limits) + len(limits) * int(grace) < 480, limits
    # the header's table: each step's limit as in its call, and an estimate below it
    for name, (limit, _) in steps.items():
        row = re.search(rf"^#\s+{name}\s+(\d+) s\s+~(\d+) s\s+\S", text, re.M)
        assert row and int(row.group(1)) == limit and int(row.group(2)) < limit, name
    assert "pip install" not in text
    # python3 (a bare machine has no `python`), overridable; no step stops the tests at the first
    # failure
    assert 'PY="${PYTHON:-python3}"' in text
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if re.search(r"(^|[\s\"'])python\s", line)]
    assert "pytest" in steps["tests"][1] and not re.search(r"\s-x\b", steps["tests"][1])
    assert "setup.py" not in steps["build"][1]  # it would read pyproject's metadata


def test_verify_script_sanitizer_tests_exist(tmp_path):
    """The memcheck / racecheck subsets name tests that exist (a renamed test or case would
    make pytest report "not found" on the GPU machine)."""
    text = VERIFY.read_text()
    picked = set(re.findall(r'"\$B::(test_\w+\[[^\]]+\])"', text))
    assert len(picked) >= 15
    # run outside the checkout: `python -m` from its root would import the unbuilt fastconv/
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
         str(ROOT / "tests" / "test_gpu_backend.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
    ids = {line.split("::", 1)[1] for line in collected.stdout.splitlines() if "::" in line}
    assert picked <= ids, sorted(picked - ids)


def _no_cuda_python(tmp_path):
    """A PATH folder whose `python3` is this Python with CuPy unimportable, and whose `python`
    fails loudly (the script must not call it)."""
    blocked = tmp_path / "blocked" / "cupy"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text('raise ImportError("cupy hidden by the rehearsal")\n')
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "python3").write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH="{blocked.parent}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"\n'
    )
    (shims / "python").write_text('#!/bin/sh\necho "plain python called" >&2\nexit 97\n')
    for shim in shims.iterdir():
        shim.chmod(0o755)
    return shims


def _run_verify(tmp_path, **env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "OUT", "PYTHONPATH")}
    env.update(env_changes)
    out = tmp_path / "out"
    results_before = sorted(p.name for p in (BENCH / "results").iterdir())
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", str(VERIFY), str(out)], env=env, capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - start
    assert sorted(p.name for p in (BENCH / "results").iterdir()) == results_before
    return proc, out, elapsed


def _stopped_at_precheck(proc, out):
    """The one pre-check line, after checking that nothing else ran and the summary says so."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "plain python called" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("precheck:")]
    assert lines and all(line == lines[0] for line in lines)  # the summary repeats it
    assert lines[0].startswith("precheck: MISSING ") and "stopping" in lines[0]
    # stopped there: the summary, the console and the log, nothing built or benchmarked
    assert sorted(p.name for p in out.iterdir()) in (
        ["env.json", "summary.txt", "verify.log"],
        ["summary.txt", "verify.log"],
    )
    summary = (out / "summary.txt").read_text()
    assert lines[0] in summary.splitlines()
    assert re.search(r"^precheck\s+FAILED", summary, re.M)
    for name in STEPS[1:]:
        assert re.search(rf"^{name}\s+not run\s", summary, re.M), name
        assert f"== {name}" not in (out / "verify.log").read_text()
    assert "none written under benchmarks/results/" in summary
    return lines[0]


@pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("timeout") is None, reason="no bash / timeout"
)
def test_verify_script_stops_at_the_precheck_without_cuda(tmp_path):
    """Rehearsal on a machine without CUDA: `python3` on the PATH cannot import CuPy. The
    script must stop at its pre-check with one line naming CuPy, exit non-zero, write its
    summary, and neither build nor run anything else (quick: nothing is compiled)."""
    shims = _no_cuda_python(tmp_path)
    proc, out, elapsed = _run_verify(tmp_path, PATH=f"{shims}{os.pathsep}{os.environ['PATH']}")
    line = _stopped_at_precheck(proc, out)
    assert "cupy (ImportError: cupy hidden by the rehearsal)" in line
    env = json.loads((out / "env.json").read_text())
    assert "gpu" not in env and any(m.startswith("cupy ") for m in env["precheck_missing"])
    assert elapsed < 20


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_verify_script_stops_without_its_python(tmp_path):
    proc, out, _ = _run_verify(tmp_path, PYTHON=str(tmp_path / "no-such-python3"))
    line = _stopped_at_precheck(proc, out)
    assert "no-such-python3 (not on the PATH" in line


def test_setup_py_builds_only_when_run():
    """benchmarks/build_inplace.py imports setup.py for its extension list and BuildExt: the
    module must define them and call setup() only under `if __name__ == "__main__"` (how pip and
    `python -m build` run it: setuptools' build_meta sets that name)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert {"ext_modules", "BuildExt"} <= defined
    calls = [
        (node, parent)
        for parent in tree.body
        for node in ast.walk(parent)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup"
    ]
    assert len(calls) == 1
    guard = calls[0][1]
    assert isinstance(guard, ast.If) and ast.unparse(guard.test) == "__name__ == '__main__'"


def test_build_inplace_reads_the_extension_list():
    pytest.importorskip("Cython")
    setup_py = _load("build_inplace").load_setup_py()
    assert sorted(setup_py.KERNELS) == sorted(p.stem for p in (ROOT / "src").glob("*.pyx"))
    with pytest.raises(SystemExit):
        _load("build_inplace").main(["no_such_kernel"])


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


def test_bench_lenet_gpu_drops_gradients_like_the_trainer():
    """zero_grad(set_to_none=True) on both sides, as fastconv/lenet/train.py does."""
    bench = _load("bench_lenet_gpu")
    trainer = (ROOT / "fastconv" / "lenet" / "train.py").read_text()
    assert "opt.zero_grad(set_to_none=True)" in trainer
    for epoch in (bench.fastconv_epoch, bench.torch_epoch):
        calls = re.findall(r"zero_grad\([^)]*\)", inspect.getsource(epoch))
        assert calls == ["zero_grad(set_to_none=True)"], (epoch.__name__, calls)


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
