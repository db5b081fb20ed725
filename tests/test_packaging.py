"""What a user installs: license and metadata, extras that resolve to CuPy wheels, py.typed,
stripped extension modules, an sdist that carries its tests, and the message shown when the
source folder shadows the installed package."""

import importlib.machinery
import importlib.metadata
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import fastconv

ROOT = Path(__file__).resolve().parents[1]  # the checkout, or the unpacked sdist
PACKAGE = Path(fastconv.__file__).resolve().parent  # the installed package
CHECKOUT = (ROOT / "pyproject.toml").is_file()


def test_license_file_is_bsd3():
    if not (ROOT / "LICENSE").is_file():
        pytest.skip("not a source checkout or sdist")
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, fastconv developers" in text
    assert "Neither the name of the copyright holder" in text


def test_installed_metadata():
    meta = importlib.metadata.metadata("fastconv")
    assert meta["Version"] == fastconv.__version__
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert "fastconv developers" in meta["Author"]
    assert {"Typing :: Typed", "Development Status :: 3 - Alpha"} <= set(meta.get_all("Classifier"))
    assert "convolution" in meta["Keywords"]
    assert {"test", "cuda12", "cuda13", "plot"} <= set(meta.get_all("Provides-Extra"))
    requires = importlib.metadata.requires("fastconv")
    assert 'cupy-cuda12x>=13; extra == "cuda12"' in requires
    assert 'cupy-cuda13x>=13.6; extra == "cuda13"' in requires
    assert 'matplotlib>=3.6; extra == "plot"' in requires
    # plain `cupy` has no wheels on PyPI: an extra asking for it builds CuPy from source
    assert not [r for r in requires if r.split(";")[0].strip().startswith("cupy>")]
    files = [str(f) for f in importlib.metadata.files("fastconv")]
    assert any(f.endswith("licenses/LICENSE") or f.endswith("LICENSE") for f in files)


def test_classifiers_are_known():
    trove = pytest.importorskip("trove_classifiers")
    for classifier in importlib.metadata.metadata("fastconv").get_all("Classifier"):
        assert classifier in trove.classifiers, classifier


def test_py_typed_is_installed():
    assert (PACKAGE / "py.typed").is_file()


def _elf_section_names(path):
    """Names of the sections of a 64-bit little-endian ELF file."""
    data = Path(path).read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "64-bit LE ELF expected"
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab_offset = headers[shstrndx][4]
    names = []
    for name_offset, *_ in headers:
        start = strtab_offset + name_offset
        names.append(data[start : data.index(b"\0", start)].decode())
    return names


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF check")
@pytest.mark.skipif(
    os.environ.get("FASTCONV_DEBUG", "") not in ("", "0"),
    reason="FASTCONV_DEBUG builds keep the debug info",
)
def test_extension_modules_are_stripped():
    modules = sorted(PACKAGE.glob("_kernels/*.so"))
    assert len(modules) >= 5, modules
    for module in modules:
        names = _elf_section_names(module)
        assert ".dynsym" in names  # what the import needs survives
        debug = [n for n in names if n.startswith(".debug") or n == ".symtab"]
        assert not debug, (module.name, debug)


@pytest.mark.skipif(not CHECKOUT, reason="not a source checkout")
def test_pyproject_extras_and_metadata():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert extras["cuda12"] == ["cupy-cuda12x>=13"] and extras["cuda13"] == ["cupy-cuda13x>=13.6"]
    assert "gpu" not in extras and extras["plot"] == ["matplotlib>=3.6"]
    # .safetensors weights files; CI installs it through `test` so those tests run
    assert extras["safetensors"] == ["safetensors>=0.4"] and "safetensors>=0.4" in extras["test"]
    assert project["license"] == "BSD-3-Clause" and project["license-files"] == ["LICENSE"]
    # PEP 639: no License classifier next to a license expression
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]


@pytest.mark.skipif(not (ROOT / "MANIFEST.in").is_file(), reason="not a source checkout")
def test_sdist_carries_what_the_tests_need():
    manifest = (ROOT / "MANIFEST.in").read_text().split()
    assert "graft tests" in " ".join(manifest) and "LICENSE" in manifest
    # the helpers the test modules import or read are in tests/, so `graft tests` ships them
    for helper in (
        "conftest.py",
        "reference.py",
        "gpu_emulation/cuda_emu.h",
        "gpu_emulation/run_cases.py",
        "gpu_emulation/fakecupy/cupy/__init__.py",
    ):
        assert (ROOT / "tests" / helper).is_file(), helper


def _fake_tree(tmp_path, checkout):
    """A copy of the installed package's Python files without its compiled kernels, inside a
    folder that looks like a source checkout (setup.py, src/) or not."""
    tree = tmp_path / ("checkout" if checkout else "site")
    shutil.copytree(
        PACKAGE, tree / "fastconv", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__")
    )
    if checkout:
        (tree / "setup.py").write_text("# a checkout\n")
        (tree / "src").mkdir()
    return tree


def _import_error(cwd):
    result = subprocess.run(
        [sys.executable, "-c", "import fastconv"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    return result.stderr.strip().splitlines()[-1]


def test_source_folder_shadowing_message(tmp_path):
    last = _import_error(_fake_tree(tmp_path, checkout=True))
    assert last.startswith("ImportError: ")
    assert f"fastconv {fastconv.__version__} is installed, but" in last
    assert "imported fastconv from the source checkout" in last
    assert "Run Python from another directory" in last and "`pip install -e .`" in last


def test_missing_kernels_outside_a_checkout(tmp_path):
    last = _import_error(_fake_tree(tmp_path, checkout=False))
    assert "compiled kernels (fastconv._kernels.conv) are missing" in last and "reinstall" in last


def test_broken_kernels_message_keeps_the_cause(tmp_path):
    tree = _fake_tree(tmp_path, checkout=True)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (tree / "fastconv" / "_kernels" / f"conv{suffix}").write_bytes(b"not a shared library")
    last = _import_error(tree)
    assert "cannot be loaded" in last and "rebuild" in last


def test_installed_package_imports_from_elsewhere(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "import fastconv; print(fastconv.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve().parent == PACKAGE
    assert importlib.util.find_spec("fastconv._kernels.conv") is not None
