"""Weights files: .npz and .safetensors, written atomically, read without ever unpickling.

A weights file maps names ("0.weight", "c1.bias", PyTorch's state-dict names) to NumPy arrays.
Two formats, told apart on reading by their first bytes, not by the file's name:

- .npz: NumPy's zip of .npy arrays, read with ``np.load(allow_pickle=False)``.
- .safetensors: Hugging Face's format (a JSON header, then the raw arrays): what PyTorch users
  exchange weights in without pickle (``safetensors.torch.save_file(model.state_dict(), path)``).
  It needs the optional ``safetensors`` package (``pip install "fastconv[safetensors]"``).

Anything else (a text file, a pickle, a ``torch.save`` file, a truncated archive) is a
:class:`WeightsFileError` whose one-line message names the file and says what it is. The LeNet-5
checkpoint reader (:mod:`fastconv.lenet.checkpoint`) reads its archives through
:func:`read_npz` with its own error class.
"""

import os
import zipfile
import zlib
from typing import Any, Dict, Mapping, Type, Union

import numpy as np

from .. import _compat
from .._atomic import atomic_write, save_npz_atomic

__all__ = [
    "WeightsFileError",
    "save_weights",
    "load_weights",
    "read_npz",
    "read_weights_file",
    "host_array",
    "describe_bytes",
]

PathLike = Union[str, "os.PathLike[str]"]
ErrorClass = Type[ValueError]  # WeightsFileError or a class taking the same (path, message)

SAFETENSORS_HINT = 'pip install "fastconv[safetensors]"'
_WEIGHTS = "a weights file (.npz or .safetensors)"

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
_NPY_MAGIC = b"\x93NUMPY"
_GZIP_MAGIC = b"\x1f\x8b"
# A safetensors header is at most 100 MB (the format's own limit); a text file's first 8 bytes
# read as a little-endian length are far larger, so the two are not confused.
_SAFETENSORS_MAX_HEADER = 100_000_000
_TORCH_PICKLE = "data.pkl"  # the pickle inside a torch.save() zip archive


class WeightsFileError(ValueError):
    """A file is not a readable weights file; the message names the file and says why (one line).

    Attributes
    ----------
    path : str
    """

    def __init__(self, path: PathLike, message: str) -> None:
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: {message}")


def _safetensors_module(action: str) -> Any:
    """``safetensors.numpy``, or an ImportError naming the extra that installs it."""
    try:
        import safetensors.numpy
    except ImportError as exc:
        raise ImportError(
            f"{action} .safetensors files needs the safetensors package ({exc}): {SAFETENSORS_HINT}"
        ) from None
    return safetensors.numpy


def _is_safetensors(head: bytes) -> bool:
    """An 8-byte little-endian header length of a plausible size, then a JSON object."""
    if len(head) < 10 or head[8:9] != b"{":
        return False
    return 2 <= int.from_bytes(head[:8], "little") <= _SAFETENSORS_MAX_HEADER


def describe_bytes(head: bytes, expected: str) -> str:
    """What a file that is not ``expected`` (e.g. "a checkpoint (.npz archive)") looks like,
    from its first bytes: the message of the error that rejects it."""
    if not head:
        return f"empty file, not {expected}"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return (
            f"a Python pickle, not {expected}; fastconv never unpickles files (that can run "
            f"arbitrary code)"
        )
    if head.startswith(_NPY_MAGIC):
        return f"a single NumPy array (.npy), not {expected}"
    if head.startswith(_GZIP_MAGIC):
        return f"gzip-compressed data, not {expected}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return f"a text file, not {expected}"
    shown = " ".join(f"{b:02x}" for b in head[:4])
    return f"not {expected}: it starts with the bytes {shown}"


def _read_head(path: PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read(512)


def read_npz(
    path: PathLike, *, expected: str = _WEIGHTS, error: ErrorClass = WeightsFileError
) -> Dict[str, np.ndarray]:
    """Every array of the .npz archive at ``path``, read without unpickling anything.

    Parameters
    ----------
    path : str or os.PathLike
    expected : str
        What the file should have been, for the messages ("a checkpoint (.npz archive)").
    error : exception class taking (path, message)
        Raised for every way the file is wrong (WeightsFileError; the trainer's CheckpointError).

    Returns
    -------
    dict name -> ndarray

    Raises
    ------
    error (a ValueError)
        Not a zip archive (text, pickle, .npy, ...: said which), a ``torch.save`` file, a
        truncated or corrupt archive, a member that is not an array, an array of Python objects.
    OSError
        The file cannot be opened (FileNotFoundError, IsADirectoryError, PermissionError).
    """
    head = _read_head(path)
    if not head.startswith(_ZIP_MAGIC):
        raise error(path, describe_bytes(head, expected))
    try:
        with np.load(path, allow_pickle=False) as archive:
            torch_file = any(name.rsplit("/", 1)[-1] == _TORCH_PICKLE for name in archive.files)
            entries = {} if torch_file else {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise error(
                path,
                "holds pickled Python objects; fastconv never unpickles "
                "files (that can run arbitrary code)",
            ) from None
        raise error(path, f"corrupt array in the archive ({exc})") from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, KeyError) as exc:
        raise error(path, f"truncated or corrupt archive ({type(exc).__name__}: {exc})") from None
    if torch_file:
        raise error(
            path,
            "a PyTorch torch.save() file, which is a pickle: fastconv never unpickles files "
            "(that can run arbitrary code); save the state dict with "
            "safetensors.torch.save_file instead",
        )
    for name, value in entries.items():
        if not isinstance(value, np.ndarray):  # a zip member whose name does not end in .npy
            raise error(
                path, f"a zip archive whose member {name!r} is not a NumPy array: not {expected}"
            )
    return entries


def _read_safetensors(path: PathLike, error: ErrorClass) -> Dict[str, np.ndarray]:
    reader = _safetensors_module("reading")
    try:
        entries = reader.load_file(os.fspath(path))
    except OSError:
        raise
    except TypeError as exc:  # a dtype NumPy lacks (bfloat16, float8): the file is sound
        raise error(
            path,
            f"holds tensors of a dtype NumPy has no type for ({exc}); save them as float32 "
            f"(torch: {{k: v.float() for k, v in state.items()}})",
        ) from None
    except Exception as exc:  # SafetensorError: truncated, bad header, offsets out of bounds
        detail = " ".join(str(exc).split())
        raise error(path, f"truncated or corrupt safetensors file ({detail})") from None
    # Writable copies where the reader handed out read-only views (np.load's arrays are writable).
    return {k: v if v.flags.writeable else v.copy() for k, v in entries.items()}


def read_weights_file(
    path: PathLike, *, expected: str = _WEIGHTS, error: ErrorClass = WeightsFileError
) -> Dict[str, np.ndarray]:
    """The arrays of an .npz or .safetensors file (told apart by their first bytes).

    Parameters and errors as :func:`read_npz`; ImportError when the file is a .safetensors one
    and the safetensors package is not installed.
    """
    head = _read_head(path)
    if _is_safetensors(head):
        return _read_safetensors(path, error)
    return read_npz(path, expected=expected, error=error)


def load_weights(path: PathLike) -> Dict[str, np.ndarray]:
    """Read a weights file: dict name -> NumPy array, for :meth:`Layer.load_state_dict`.

    Parameters
    ----------
    path : str or os.PathLike
        An .npz (``np.savez``, :func:`save_weights`, :meth:`Layer.save`) or .safetensors file
        (:func:`save_weights`, ``safetensors.torch.save_file(model.state_dict(), path)``); the
        format is read from the file's first bytes, not its name.

    Returns
    -------
    dict name -> ndarray (writable arrays, in the file's dtypes)

    Raises
    ------
    WeightsFileError (a ValueError)
        One line naming the file and what is wrong: a text file, a pickle or ``torch.save`` file
        (never unpickled), a truncated or corrupt archive, an array of Python objects.
    ImportError
        A .safetensors file without the safetensors package (``pip install
        "fastconv[safetensors]"``).
    OSError
        The file cannot be opened.
    """
    return read_weights_file(path)


def host_array(value: Any, name: str) -> np.ndarray:
    """``value`` (a NumPy, CuPy or array-like value, or a PyTorch tensor) as a NumPy array of a
    numeric dtype; the TypeError names the entry ``name``. Torch is never imported: a tensor is
    recognised by its ``detach`` and ``numpy`` methods."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        value = value.detach().cpu()
        try:
            value = value.numpy()
        except TypeError:  # bfloat16 and the float8 types: NumPy has no such dtype
            value = value.float().numpy()  # exact: every such value is a float32
    try:
        array = _compat.to_numpy(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"entry {name!r}: expected an array, got {type(value).__name__} ({exc})"
        ) from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"entry {name!r}: expected a numeric array, got dtype {array.dtype}")
    return array


def save_weights(path: PathLike, weights: Any) -> None:
    """Write a model's weights, or a state dict, to ``path`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Used as given. A name ending in ".safetensors" writes the safetensors format (needs the
        safetensors package: ``pip install "fastconv[safetensors]"``), any other an uncompressed
        .npz. A failed write leaves the old file (or none) and no temporary file.
    weights : Layer (anything with ``state_dict()``, a torch module too) or mapping name -> array
        The arrays may be NumPy, CuPy or PyTorch tensors; they are written as NumPy arrays in
        their own dtype.

    Raises
    ------
    TypeError
        A name that is not a non-empty string, a value that is not a numeric array.
    ImportError
        ".safetensors" without the safetensors package.
    """
    state = weights.state_dict() if hasattr(weights, "state_dict") else weights
    if not isinstance(state, Mapping):
        raise TypeError(
            f"weights must be a layer (with state_dict()) or a mapping name -> array, got "
            f"{type(weights).__name__}"
        )
    arrays = {}
    for name, value in state.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"weights names must be non-empty strings, got {name!r}")
        arrays[name] = np.ascontiguousarray(host_array(value, name))
    if os.fspath(path).endswith(".safetensors"):
        data = _safetensors_module("writing").save(arrays)  # bytes, written atomically below
        with atomic_write(path, "wb") as f:
            f.write(data)
    else:
        save_npz_atomic(path, **arrays)
