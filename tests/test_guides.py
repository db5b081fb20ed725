"""Every Python block of the documentation site's guides (docs/guide/*.md and *.rst, and
docs/index.rst) runs as written: each block in a fresh namespace, the blocks of one page in
one child process started in a temporary directory (the files a block writes land there).
Blocks that are not meant to run are marked ``text`` in the sources, not ``python``. A block
that needs an optional package that is not installed (Dask, CuPy, ...) is skipped, and so is one
whose first line is ``# requires: torch, gpu, ...`` (tests/doc_blocks.py) where one of those is
missing (``gpu``: CuPy with a CUDA device). tests/test_doc_snippets.py checks these pages'
links, command lines and ```pycon blocks; their ```python blocks run only here."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from doc_blocks import missing, requirements

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
pytestmark = pytest.mark.skipif(not (DOCS / "guide").is_dir(), reason="not a source checkout")

PAGES = sorted((DOCS / "guide").glob("*.md")) + sorted((DOCS / "guide").glob("*.rst"))
PAGES += [DOCS / "index.rst"]
OPTIONAL = ("dask", "distributed", "cupy", "matplotlib", "sklearn", "skimage")

_MD_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
_RST_BLOCK = re.compile(
    r"^( *)\.\. code-block:: python[ \t]*\n((?:\1 +:.*\n)*)\n((?:\1 +.*\n|[ \t]*\n)+)", re.M
)


def python_blocks(path):
    """[(line number, source)] of the page's Python blocks, in order."""
    text = path.read_text()
    if path.suffix == ".md":
        matches = [(m.start(), m.group(1)) for m in _MD_BLOCK.finditer(text)]
    else:
        matches = [(m.start(), textwrap.dedent(m.group(3))) for m in _RST_BLOCK.finditer(text)]
    return [(text.count("\n", 0, start) + 1, code) for start, code in matches]


_RUNNER = """
import json, sys, traceback
blocks, optional = json.loads(sys.stdin.read())
for line, name, code in blocks:
    try:
        exec(compile(code, f"{name}:{line}", "exec"), {"__name__": "__main__"})
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in optional:
            raise
        print(f"SKIPPED {name}:{line}: needs {exc.name}")
"""


def test_the_blocks_are_found():
    blocks = {page.name: python_blocks(page) for page in PAGES}
    assert sum(map(len, blocks.values())) >= 20, blocks
    assert len(python_blocks(DOCS / "index.rst")) == 1
    assert all(
        "```" not in code and ".. code-block" not in code for b in blocks.values() for _, code in b
    )


@pytest.mark.parametrize(
    "page", [p for p in PAGES if p.is_file() and python_blocks(p)], ids=lambda p: p.name
)
def test_guide_blocks_run(page, tmp_path):
    blocks, skipped = [], []
    for line, code in python_blocks(page):
        reasons = [r for r in map(missing, requirements(code)) if r]
        if reasons:
            skipped.append(f"{page.name}:{line}: {reasons[0]}")
        else:
            blocks.append((line, str(page.relative_to(ROOT)), code))
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER],
        input=json.dumps([blocks, OPTIONAL]),
        capture_output=True,
        text=True,
        cwd=tmp_path,  # the installed fastconv, never the checkout's unbuilt folder
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, f"a block of {page.name} failed:\n{proc.stderr[-4000:]}"
    skipped += [s for s in proc.stdout.splitlines() if s.startswith("SKIPPED ")]
    if len(skipped) == len(python_blocks(page)):
        pytest.skip(f"every block needs an optional package: {skipped}")
