"""Sphinx configuration of fastconv's documentation site.

Build: ``pip install ".[docs]" && make -C docs html`` (CI: ``make -C docs html SPHINXOPTS="-W
--keep-going"``). The site documents the *installed* fastconv: run Sphinx through the
``sphinx-build`` command (``make`` does), never ``python -m sphinx`` from the repository root,
where Python would import the unbuilt source folder first.
"""

import os
import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))

# Headless and quiet before anything imports matplotlib (the gallery, the benchmark pages).
os.environ.setdefault("MPLBACKEND", "Agg")

import fastconv  # noqa: E402
from fastconv.lenet.data import default_mnist_dir  # noqa: E402

project = "fastconv"
author = "fastconv developers"
copyright = "fastconv developers (BSD-3-Clause)"
version = release = fastconv.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "fastconv_bench",  # docs/_ext: the benchmark tables, read from benchmarks/results/*.json
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "**/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.json",
    "auto_examples/*.md5",
    "report.md",  # the recipe behind report.png: included in guide/cli.md
]

# -- API reference --------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
# numpydoc: the class template (docs/_templates/autosummary/class.rst) lists the members itself.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# The layers document their "Shapes" (what a layer maps to what); numpydoc renders it as a
# rubric instead of warning about a section it does not know.
numpydoc_validation_checks = set()


# -- MyST (the guides and docs/INTERNALS.md are Markdown) ------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- The gallery ----------------------------------------------------------------------------
MNIST_NAMES = ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")


def _mnist_dir():
    """Where examples/plot_lenet_mnist.py will find MNIST (the same search), or None."""
    candidates = [
        os.environ.get("FASTCONV_MNIST"),
        ROOT.parent / "shared" / "data" / "mnist",
        default_mnist_dir(),  # $FASTCONV_DATA/mnist, where `fastconv-lenet download` puts it
    ]
    for path in candidates:
        if path and all(
            (Path(path) / f"{n}-ubyte.gz").exists() or (Path(path) / f"{n}-ubyte").exists()
            for n in MNIST_NAMES
        ):
            return Path(path)
    return None


# Every example runs at build time and a failing example fails the build. The one that needs
# MNIST runs only where the data is (it is shown without output elsewhere, and the log says so).
_run = r"/plot_"
if _mnist_dir() is None:
    _run = r"/plot_(?!lenet_mnist)"
    print("fastconv docs: MNIST not found: the LeNet-5 example is shown without running it")

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": _run,
    "ignore_pattern": r"_helpers\.py",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    "min_reported_time": 1,
    "capture_repr": ("_repr_html_", "__repr__"),
    "plot_gallery": "True",
    "doc_module": ("fastconv",),
    "backreferences_dir": None,
    "inspect_global_variables": False,
}

# -- HTML -----------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"fastconv {release}"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_show_sourcelink = False

warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")
# numpydoc also parses the raw docstrings for signatures (mangle_signature), where the "Shapes"
# section below is still there: it is rendered, not lost (see _shapes_section_to_rubric).
warnings.filterwarnings("ignore", message="Unknown section Shapes", category=UserWarning)


def _shapes_section_to_rubric(app, what, name, obj, options, lines):
    """The layers' docstrings have a "Shapes" section (what a layer maps to what), which
    numpydoc does not know: move it, as a rubric, to the end of the extended summary before
    numpydoc parses the sections (it would drop it with a warning)."""
    for i in range(len(lines) - 1):
        if lines[i].strip() == "Shapes" and set(lines[i + 1].strip()) == {"-"}:
            break
    else:
        return
    end = i + 2
    while end < len(lines) and not (
        end + 1 < len(lines)
        and lines[end].strip()
        and lines[end + 1].strip()
        and set(lines[end + 1].strip()) == {"-"}
    ):
        end += 1
    body = [line for line in lines[i + 2 : end]]
    while body and not body[-1].strip():
        body.pop()
    del lines[i:end]
    # Insert before the first numpydoc section header (after the summary paragraphs).
    first = next(
        (
            j
            for j in range(len(lines) - 1)
            if lines[j].strip() and lines[j + 1].strip() and set(lines[j + 1].strip()) == {"-"}
        ),
        len(lines),
    )
    lines[first:first] = [".. rubric:: Shapes", "", *body, ""]


def setup(app):
    # Before numpydoc's own handler (priority 500) so that it never sees the "Shapes" section.
    app.connect("autodoc-process-docstring", _shapes_section_to_rubric, priority=400)
