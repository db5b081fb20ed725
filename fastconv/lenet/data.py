"""Where the command line keeps MNIST: ``$FASTCONV_DATA/mnist``, by default
``~/.cache/fastconv/mnist`` (``$XDG_CACHE_HOME/fastconv/mnist`` when that is set).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, List, Optional

from .. import datasets

__all__ = [
    "DATA_ENV",
    "default_data_root",
    "default_mnist_dir",
    "missing_mnist_files",
    "verify_mnist_checksums",
]

DATA_ENV = "FASTCONV_DATA"
"""The environment variable naming fastconv's data directory (MNIST goes in its ``mnist/``)."""


def default_data_root() -> Path:
    """``$FASTCONV_DATA`` if set, else ``$XDG_CACHE_HOME/fastconv``, else ``~/.cache/fastconv``."""
    root = os.environ.get(DATA_ENV)
    if root:
        return Path(root).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "fastconv"


def default_mnist_dir() -> Path:
    """The directory ``fastconv-lenet`` reads MNIST from (and downloads it to) without --data."""
    return default_data_root() / "mnist"


def missing_mnist_files(root: Path) -> List[str]:
    """Names of the four MNIST files present in ``root`` neither gzipped nor uncompressed."""
    return [
        name
        for name in datasets.MNIST_FILES
        if not (root / name).is_file() and not (root / name[: -len(".gz")]).is_file()
    ]


def verify_mnist_checksums(root: Path) -> Dict[str, Optional[bool]]:
    """{file name: True (MD5 matches), False (it does not), None (not there, or uncompressed:
    the published checksums are those of the .gz files)} for the four MNIST files in ``root``."""
    result: Dict[str, Optional[bool]] = {}
    for name, (md5, _size) in datasets.MNIST_FILES.items():
        path = root / name
        if not path.is_file():
            result[name] = None
            continue
        digest = hashlib.md5()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        result[name] = digest.hexdigest() == md5
    return result
