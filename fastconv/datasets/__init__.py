"""MNIST and the IDX file format it is stored in.

:func:`read_idx` reads any IDX file (gzip-compressed or raw) with strict checks;
:func:`mnist` loads the four standard MNIST files from a directory, optionally
downloading the missing ones (MD5-verified, written atomically).

Checksums are verified on download only: a file already on disk is trusted (and
then checked for format, shape, dtype and label range), which saves hashing
~11 MB on every load. Delete a file to have it downloaded and verified again.
"""

import hashlib
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple, Union

import numpy as np

from .._atomic import atomic_write
from .idx import DatasetError, read_idx

__all__ = [
    "MNIST",
    "DatasetError",
    "DownloadError",
    "read_idx",
    "mnist",
    "MNIST_FILES",
    "MNIST_MIRRORS",
]


class DownloadError(OSError):
    """A file could not be downloaded from any mirror (network error or checksum mismatch)."""


# IDX type code -> big-endian dtype of the payload.
# --------------------------------------------------------------------------- MNIST

MNIST_FILES = {
    # name: (MD5 of the .gz file, bytes)
    "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
    "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", 28881),
    "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", 1648877),
    "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", 4542),
}
"""The four MNIST files with the MD5 and size of the original gzip files."""

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
"""Base URLs tried in order by ``mnist(download=True)``."""

_TRAIN_IMAGES, _TRAIN_LABELS, _TEST_IMAGES, _TEST_LABELS = MNIST_FILES


class MNIST(NamedTuple):
    """The MNIST data set as arrays.

    Attributes
    ----------
    train_images : ndarray, shape (60000, 1, 28 + 2*padding, 28 + 2*padding), float in [0, 1]
    train_labels : ndarray, shape (60000,), int64 in 0..9
    test_images : ndarray, shape (10000, 1, 28 + 2*padding, 28 + 2*padding), float in [0, 1]
    test_labels : ndarray, shape (10000,), int64 in 0..9
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def _find(root, name):
    """The path of ``name`` (``.gz``) or of its uncompressed twin in ``root``, or None."""
    for candidate in (root / name, root / name[: -len(".gz")]):
        if candidate.is_file():
            return candidate
    return None


def _fetch(url, fileobj, *, timeout=60.0, desc=None):
    """Download ``url`` into the writable binary ``fileobj``; return the byte count.

    Shows a tqdm progress bar on stderr when it is a terminal (and tqdm is
    installed). Raises OSError (``urllib.error.URLError``, timeouts, a short read)
    on failure. Tests replace this function to serve local bytes.
    """
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "fastconv-mnist"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        try:
            from tqdm import tqdm
        except ImportError:  # progress bar is optional
            tqdm = None
        bar = None
        if tqdm is not None:
            bar = tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc or url.rsplit("/", 1)[-1],
                file=sys.stderr,
                disable=None,
                leave=False,
            )
        done = 0
        try:
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                fileobj.write(chunk)
                done += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    if total is not None and done != total:
        raise OSError(f"incomplete download: got {done} of {total} bytes")
    return done


class _MD5Writer:
    """Write-through file wrapper that hashes everything written."""

    def __init__(self, f):
        self._f = f
        self.md5 = hashlib.md5()
        self.nbytes = 0

    def write(self, b):
        self.md5.update(b)
        self.nbytes += len(b)
        return self._f.write(b)

    def flush(self):
        self._f.flush()


class _ChecksumMismatch(Exception):
    pass


def _download(name, root, mirrors):
    """Fetch ``name`` from the first mirror that serves it with the right MD5.

    Written atomically to ``root / name``: a failed or corrupt download leaves
    nothing behind. Raises DownloadError listing every URL tried and why it failed.
    """
    import http.client  # imported by urllib.request anyway; only needed here

    md5, _size = MNIST_FILES[name]
    target = root / name
    failures = []
    for base in mirrors:
        url = base + name
        try:
            with atomic_write(target, "wb") as f:
                w = _MD5Writer(f)
                _fetch(url, w)
                got = w.md5.hexdigest()
                if got != md5:
                    raise _ChecksumMismatch(
                        f"MD5 mismatch: expected {md5}, got {got} ({w.nbytes} bytes); discarded"
                    )
            return target
        except _ChecksumMismatch as e:
            failures.append(f"{url}: {e}")
        except (OSError, http.client.HTTPException) as e:
            # URLError/HTTPError, timeouts, resets (OSError); IncompleteRead & co (HTTPException)
            failures.append(f"{url}: {type(e).__name__}: {e}")
    tried = "\n".join(f"  {x}" for x in failures)
    raise DownloadError(f"could not download {name}; tried:\n{tried}")


def _missing_message(root, missing):
    files = "\n".join(f"  {n}" for n in missing)
    return (
        f"MNIST files not found in {root}:\n{files}\n"
        f"Put these files (gzip-compressed, or uncompressed without the .gz) in the directory "
        f"{root}, or call mnist({str(root)!r}, download=True) to fetch them from "
        f"{' or '.join(MNIST_MIRRORS)}."
    )


def _load_pair(images_path, labels_path, dtype, padding):
    images = read_idx(images_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(
            images_path,
            f"expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}",
        )
    labels = read_idx(labels_path)
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetError(
            labels_path, f"expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}"
        )
    if labels.size and labels.max() > 9:
        raise DatasetError(labels_path, f"labels must be in 0..9, found {int(labels.max())}")
    if labels.shape[0] != images.shape[0]:
        raise DatasetError(
            labels_path,
            f"{labels.shape[0]} labels but {images.shape[0]} images in {images_path}",
        )
    n = images.shape[0]
    side = 28 + 2 * padding
    out = np.zeros((n, 1, side, side), dtype=dtype)
    np.true_divide(
        images, 255, out=out[:, 0, padding : padding + 28, padding : padding + 28], dtype=dtype
    )
    return out, labels.astype(np.int64)


def mnist(
    root: Union[str, "os.PathLike[str]"],
    download: bool = False,
    *,
    dtype: Any = np.float32,
    padding: int = 2,
) -> MNIST:
    """Load MNIST from ``root``, optionally downloading missing files first.

    Parameters
    ----------
    root : str or os.PathLike
        Directory holding ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
        ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (each may
        also be present uncompressed, named without ``.gz``).
    download : bool, default False
        Fetch the missing files from :data:`MNIST_MIRRORS` (tried in order) into
        ``root`` (created if needed). Each download is MD5-verified and written
        atomically: no partial or corrupt file is ever left in ``root``. Files
        already present are not re-checked against the MD5 (see the module notes).
    dtype : floating dtype, default float32
        dtype of the images.
    padding : int >= 0, default 2
        Zero border added on every side: 2 gives LeNet-5's 32x32 inputs, 0 keeps 28x28.

    Returns
    -------
    MNIST
        ``train_images`` (60000, 1, S, S), ``train_labels`` (60000,),
        ``test_images`` (10000, 1, S, S), ``test_labels`` (10000,) with
        ``S = 28 + 2*padding``; images scaled to [0, 1] (pixel / 255) as ``dtype``,
        labels int64 in 0..9.

    Raises
    ------
    FileNotFoundError
        Files are missing and ``download`` is False; the message lists them, the
        directory to put them in, and mentions ``download=True``.
    DownloadError (an OSError)
        A missing file could not be fetched from any mirror (unreachable network,
        HTTP error or checksum mismatch); the message lists the URLs tried.
    DatasetError (a ValueError)
        A file is malformed or not what MNIST should hold (names the file).
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    padding = int(padding)
    root = Path(root).expanduser()

    paths = {name: _find(root, name) for name in MNIST_FILES}
    missing = [name for name, p in paths.items() if p is None]
    if missing:
        if not download:
            raise FileNotFoundError(_missing_message(root, missing))
        root.mkdir(parents=True, exist_ok=True)
        for k, name in enumerate(missing):
            try:
                paths[name] = _download(name, root, MNIST_MIRRORS)
            except DownloadError as e:
                # Stop at the first failure (an offline machine would otherwise wait out
                # every timeout) and say how to finish by hand.
                by_hand = "\n".join(f"  {n}  (MD5 {MNIST_FILES[n][0]})" for n in missing[k:])
                raise DownloadError(
                    f"{e}\nDownload these files by hand and put them in {root}:\n{by_hand}"
                ) from e

    train_images, train_labels = _load_pair(
        paths[_TRAIN_IMAGES], paths[_TRAIN_LABELS], dtype, padding
    )
    test_images, test_labels = _load_pair(paths[_TEST_IMAGES], paths[_TEST_LABELS], dtype, padding)
    return MNIST(train_images, train_labels, test_images, test_labels)
