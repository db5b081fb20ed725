"""The README and the Markdown documentation run as written: every ```python block is executed
in a fresh interpreter and every ```pycon block is run as a doctest, each in an empty folder (so
the installed fastconv is imported, never the checkout's source folder); every `fastconv-lenet`
command line in a code block parses; every relative link resolves. A block whose first line is
``# requires: dask, ...`` skips where one of those is missing (``gpu``: CuPy with a CUDA device;
tests/doc_blocks.py).

The documentation is the Markdown files under docs/ (docs/INTERNALS.md, the design notes,
aside). The ```python blocks of the site's guides (docs/guide/) are run page by page by
tests/test_guides.py, so they are not run a second time here; everything else here covers them
too. The README stays short and names no path outside the repository.
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from doc_blocks import missing, requirements

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
pytestmark = pytest.mark.skipif(not README.is_file(), reason="not a source checkout or sdist")

GUIDES = sorted(  # build output and static files (_build/, _static/) aside
    p
    for p in (ROOT / "docs").rglob("*.md")
    if p.name != "INTERNALS.md"
    and not any(part.startswith("_") for part in p.relative_to(ROOT).parts)
)
FILES = [README] + GUIDES
SITE_GUIDES = ROOT / "docs" / "guide"  # their ```python blocks: tests/test_guides.py
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
README_MAX_LINES = 250


def _blocks(path):
    """(language, first line number of the code, code) of each fenced block in ``path``."""
    text = path.read_text() if path.is_file() else ""
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start(2)) + 1
        yield match.group(1), line, match.group(2)


def _runnable():
    cases = []
    for path in FILES:
        for language, line, code in _blocks(path):
            if language == "python" and path.parent == SITE_GUIDES:
                continue  # run by tests/test_guides.py
            if language in ("python", "pycon"):
                name = f"{path.relative_to(ROOT)}:{line}"
                cases.append(pytest.param(language, code, id=name))
    return cases


RUNNABLE = _runnable()


@pytest.mark.parametrize("language, code", RUNNABLE)
def test_code_block_runs(language, code, tmp_path):
    for requirement in requirements(code):
        reason = missing(requirement)
        if reason:
            pytest.skip(reason)
    if language == "python":
        (tmp_path / "snippet.py").write_text(code)
        cmd = [sys.executable, "snippet.py"]
    else:  # a doctest session: the output shown must be what the code prints
        (tmp_path / "snippet.txt").write_text(code)
        cmd = [sys.executable, "-m", "doctest", "snippet.txt"]
    result = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )  # cwd: an empty folder, so the installed package is imported
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"


def test_every_python_block_is_marked_as_python():
    """An unmarked block holding Python would escape the tests that run the blocks (the one above,
    tests/test_guides.py): the interactive prompt or an import in a plain ``` block must be
    marked ```pycon / ```python."""
    found = [lang for path in FILES for lang, _, _ in _blocks(path) if lang in ("python", "pycon")]
    assert len(found) >= 20 and len(RUNNABLE) >= 4
    for path in FILES:
        for language, line, code in _blocks(path):
            if language in ("python", "pycon"):
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            assert ">>> " not in code, f"{where}: a doctest session in a ```{language} block"
            assert not re.search(r"^\s*(import \w|from \w+ import )", code, re.M), (
                f"{where}: Python in a ```{language} block"
            )


def test_command_lines_parse():
    """Every `fastconv-lenet ...` line in a code block is a valid command line."""
    from fastconv.lenet.cli_parser import build_parser

    parser = build_parser()
    seen = 0
    for path in FILES:
        for _, line, code in _blocks(path):
            for offset, text in enumerate(code.splitlines()):
                words = shlex.split(text, comments=True)
                if not words or words[0] != "fastconv-lenet":
                    continue
                seen += 1
                try:
                    parser.parse_args(words[1:])
                except SystemExit as exc:  # argparse's usage error (--version exits with 0)
                    if exc.code:
                        pytest.fail(f"{path.relative_to(ROOT)}:{line + offset}: {text.strip()}")
    assert seen >= 5


def test_readme_is_short_and_self_contained():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README has {len(lines)} lines"
    text = "\n".join(lines)
    assert "../shared" not in text and "/shared/data" not in text  # an internal data path


def _slug(heading):
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path):
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), re.M)}


def test_relative_links_resolve():
    """Links between the README, the guides and benchmarks/README.md reach a file that exists,
    and a heading in it when they name one."""
    checked = 0
    for path in FILES:
        for link, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", path.read_text()):
            if "://" in link or link.startswith("mailto:"):
                continue
            target = path.parent / link if link else path
            where = f"{path.relative_to(ROOT)} links to {link}#{anchor}"
            assert target.exists(), where
            if anchor and target.suffix == ".md":
                assert anchor in _anchors(target), where
            checked += 1
    assert checked >= 10
