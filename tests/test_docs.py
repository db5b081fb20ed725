"""The documentation's checkable claims against the code: docs/INTERNALS.md's backend table and
layer map, the README's API table and algorithm names."""

import inspect
import re
from pathlib import Path

import pytest

import fastconv
from fastconv import _validation
from fastconv._backend import OPS
from fastconv._backend.cpu import ops as cpu
from fastconv._backend.cpu import planner

ROOT = Path(__file__).resolve().parents[1]
INTERNALS = ROOT / "docs" / "INTERNALS.md"
pytestmark = pytest.mark.skipif(not INTERNALS.exists(), reason="not a source checkout")


def _section(title):
    return INTERNALS.read_text().split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_backend_table_lists_every_op_with_its_signature():
    rows = re.findall(r"^\| (\w+)\(([^)]*)\) \|", _section("Kernel interface"), re.M)
    documented = {name: [a.strip() for a in args.split(",")] for name, args in rows}
    assert set(documented) == set(OPS)
    for name in OPS:
        params = list(inspect.signature(getattr(cpu, name)).parameters)
        assert documented[name] == params, name


def test_layer_map_names_files_that_exist():
    block = INTERNALS.read_text().split("```", 2)[1]
    paths = re.findall(r"(?:^|\s)((?:src|fastconv)/[\w/.*]+)", block)
    assert paths
    for p in paths:
        if "*" in p:
            assert list(ROOT.glob(p)), p
        else:
            assert (ROOT / p).exists(), p


def test_readme_names_every_public_function_and_algorithm():
    readme = (ROOT / "README.md").read_text()
    for name in fastconv.functional.__all__:
        assert f"`{name}" in readme or f" {name}(" in readme or f"`{name}(" in readme, name
    for algorithm in planner.ALGORITHMS:
        assert f'"{algorithm}"' in readme or f"`{algorithm}`" in readme, algorithm
    assert planner.ALGORITHMS == _validation.CONV_ALGORITHMS[1:]


def test_thread_limit_documented():
    from fastconv._backend.cpu.threads import MAX_THREADS

    assert str(MAX_THREADS) in inspect.getdoc(fastconv.set_num_threads)


def test_array_table_lists_every_array_op():
    from fastconv._backend import ARRAY_OPS
    from fastconv._backend.eager import Eager

    table = _section("Array interface")
    for name in ARRAY_OPS:
        params = list(inspect.signature(getattr(Eager, name)).parameters)[1:]  # less self
        row = re.search(rf"\b{name}\(([^)]*)\)", table)
        assert row, f"{name} is not in the array interface table"
        assert [a.strip() for a in row.group(1).split(",")] == params, name


def test_internals_names_every_source_and_backend_file():
    """A file added to src/ or fastconv/_backend/ gets a line in docs/INTERNALS.md saying its
    job (the generated .c files and caches aside)."""
    text = INTERNALS.read_text()
    patterns = ("*.pyx", "*.pxd", "*.pxi", "*.h")
    files = [p for pat in patterns for p in (ROOT / "src").glob(pat)]
    backend = ROOT / "fastconv" / "_backend"
    files += [p for pat in ("*.py", "*.cu", "*.cuh") for p in backend.rglob(pat)]
    assert len(files) > 50
    missing = [str(p.relative_to(ROOT)) for p in files if p.name not in text]
    assert not missing, f"docs/INTERNALS.md does not name {missing}"
