"""Repository invariants: CI runs exactly the README's test command; the sdist ships the sources."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_test_command():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Test", 1)[1]
    return re.search(r"```\n(.+?)\n```", section, re.S).group(1).strip()


@pytest.mark.skipif(not (ROOT / ".ci" / "run").exists(), reason="not a source checkout")
def test_ci_runs_the_readme_test_command():
    command = _readme_test_command()
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in lines


@pytest.mark.skipif(not (ROOT / "MANIFEST.in").exists(), reason="not a source checkout")
def test_manifest_ships_compiled_sources_and_kernels():
    manifest = (ROOT / "MANIFEST.in").read_text()
    assert "graft src" in manifest
    assert "fastconv/_backend/gpu/cuda/*.cu" in manifest
    assert sorted(p.name for p in (ROOT / "src").glob("*.pyx"))
