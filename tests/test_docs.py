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


def test_backend_table_lists_every_op_with_its_signature():
    rows = re.findall(r"^\| (\w+)\(([^)]*)\) \|", INTERNALS.read_text(), re.M)
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
