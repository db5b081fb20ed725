"""The ``# requires: a, b`` first line that marks a documentation block as needing an optional
package or a GPU, shared by tests/test_doc_snippets.py (the README, docs/*.md) and
tests/test_guides.py (the site's guides, docs/guide/)."""

import importlib.util
import re

REQUIRES = re.compile(r"#\s*requires:\s*(.+)")
KNOWN_REQUIREMENTS = {"dask", "matplotlib", "torch", "cupy", "gpu", "zarr", "safetensors"}


def requirements(code):
    """The names on the block's ``# requires:`` line (a doctest's ``>>> # requires:`` too)."""
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    match = REQUIRES.match(first.lstrip(">. "))
    return [r.strip() for r in match.group(1).split(",")] if match else []


def missing(requirement):
    """Why ``requirement`` is not available here (a string), or None when it is. ``gpu``: CuPy
    with a CUDA device."""
    assert requirement in KNOWN_REQUIREMENTS, f"unknown '# requires: {requirement}'"
    if requirement != "gpu":
        return None if importlib.util.find_spec(requirement) else f"needs {requirement}"
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "needs a CUDA device"
    except Exception as exc:  # ImportError, or a CUDA install without a usable device
        return f"needs CuPy with a CUDA device: {exc}"
    return None
