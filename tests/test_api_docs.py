"""The documentation site's API reference (docs/api/*.rst) lists every public name: each name of
fastconv.__all__ and of the public subpackages' __all__ (the modules tests/public_api.json
snapshots) appears in an autosummary table or a data directive, and nothing else does. Parses
the reStructuredText sources, so it runs without Sphinx."""

import importlib
import re
from pathlib import Path

import pytest
from api_snapshot import MODULES

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"
pytestmark = pytest.mark.skipif(not API.is_dir(), reason="not a source checkout")

_DIRECTIVE = re.compile(r"^\.\. (\w+(?:-\w+)?)::\s*(\S*)\s*$")
_DATA = {"data", "autodata", "autofunction", "autoclass", "autoexception", "function", "class"}


def documented_names(text):
    """Full dotted names documented by one page: the entries of its autosummary tables and its
    data/function/class directives, each under the ``currentmodule`` in force."""
    names, module = [], None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i].strip())
        i += 1
        if not match:
            continue
        directive, argument = match.groups()
        if directive in ("currentmodule", "module"):
            module = argument
        elif directive in _DATA and argument:
            names.append(argument if "." in argument else f"{module}.{argument}")
        elif directive == "autosummary":
            # options (":toctree: ..."), a blank line, then indented entries until a dedent
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("   ")):
                entry = lines[i].strip()
                i += 1
                if entry and not entry.startswith(":"):
                    entry = entry.lstrip("~")
                    names.append(entry if entry.startswith("fastconv") else f"{module}.{entry}")
    return names


def _all_documented():
    names = []
    for page in sorted(API.glob("*.rst")):
        names += documented_names(page.read_text())
    return names


def _resolve(dotted):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_parser_reads_autosummary_and_data_directives():
    text = """
.. currentmodule:: fastconv.nn

.. autosummary::
   :toctree: generated

   Conv2D
   ~fastconv.nn.Linear

Text.

.. autodata:: INITS
   :no-value:

.. currentmodule:: fastconv

.. data:: __version__
"""
    assert documented_names(text) == [
        "fastconv.nn.Conv2D",
        "fastconv.nn.Linear",
        "fastconv.nn.INITS",
        "fastconv.__version__",
    ]


def test_api_reference_lists_every_public_name():
    documented = _all_documented()
    assert len(documented) == len(set(documented)), "a name is documented twice"
    objects = {}
    for name in documented:
        objects.setdefault(id(_resolve(name)), []).append(name)
    missing = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            full = f"{module_name}.{name}"
            if full in documented:
                continue
            # fastconv.functional's names are fastconv's, documented once as fastconv.<name>;
            # strings and numbers are documented under their module's own name only.
            obj = getattr(module, name)
            if callable(obj) and id(obj) in objects:
                continue
            missing.append(full)
    assert not missing, (
        f"docs/api/*.rst does not document {missing}: add each to the autosummary list of "
        f"its module's page"
    )


def test_api_reference_lists_only_public_names():
    public = {f"{m}.{n}" for m in MODULES for n in importlib.import_module(m).__all__}
    stale = [name for name in _all_documented() if name not in public]
    assert not stale, f"docs/api/*.rst documents names that are not public: {stale}"


def test_every_api_page_is_in_the_toctree():
    index = (API / "index.rst").read_text()
    pages = {p.stem for p in API.glob("*.rst")} - {"index"}
    assert pages and all(re.search(rf"^\s+{page}$", index, re.M) for page in pages), pages
