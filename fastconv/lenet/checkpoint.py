"""Reading checkpoints safely: never unpickled, every way a file can be wrong named in one line.

A checkpoint is an uncompressed .npz archive (a zip of .npy arrays) written by
:func:`fastconv.lenet.fit` (``FORMAT`` entry, the model as "model.<name>", the optimiser as
"optimizer.<key>", JSON strings for the rest) or by ``LeNet5.save()`` (the state dict only).
NumPy would offer to unpickle anything that is not an archive and suggest ``allow_pickle=True``
(which runs arbitrary code); this module looks at the first bytes instead and says what the
file is.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from typing import Any, Dict, Union

import numpy as np

__all__ = [
    "FORMAT",
    "CheckpointError",
    "read_npz",
    "read_checkpoint",
    "read_model_entries",
    "checkpoint_json",
    "completed_epochs",
]

FORMAT = "fastconv.lenet.checkpoint/1"
PathLike = Union[str, "os.PathLike[str]"]

# The JSON entries of a training checkpoint, each a 0-d string array.
_JSON_ENTRIES = ("args", "history", "position", "layer_rngs", "model_config")
_ARGS_KEYS = ("batch_size", "lr", "optimizer", "seed", "lr_decay")

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
_NPY_MAGIC = b"\x93NUMPY"
_GZIP_MAGIC = b"\x1f\x8b"


class CheckpointError(ValueError):
    """A file is not a readable checkpoint; the message names the file and says why (one line).

    Attributes
    ----------
    path : str
    """

    def __init__(self, path: PathLike, message: str) -> None:
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: {message}")


def _what_it_is(head: bytes) -> str:
    """What a file that is not a zip archive looks like, from its first bytes."""
    if not head:
        return "empty file, not a checkpoint"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return (
            "a Python pickle, not a checkpoint; fastconv never unpickles files (that can "
            "run arbitrary code)"
        )
    if head.startswith(_NPY_MAGIC):
        return "a single NumPy array (.npy), not a checkpoint (.npz archive)"
    if head.startswith(_GZIP_MAGIC):
        return "gzip-compressed data, not a checkpoint (.npz archive)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "a text file, not a checkpoint (.npz archive)"
    shown = " ".join(f"{b:02x}" for b in head[:4])
    return f"not a checkpoint (.npz archive): it starts with the bytes {shown}"


def read_npz(path: PathLike) -> Dict[str, np.ndarray]:
    """Every array of the .npz archive at ``path``, read without unpickling anything.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict name -> ndarray

    Raises
    ------
    CheckpointError (a ValueError)
        Not a zip archive (text, pickle, .npy, ...: said which), a truncated or corrupt
        archive, a member that is not an array, or an array of Python objects (pickled).
    OSError
        The file cannot be opened (FileNotFoundError, IsADirectoryError, PermissionError).
    """
    with open(path, "rb") as f:
        head = f.read(512)
    if not head.startswith(_ZIP_MAGIC):
        raise CheckpointError(path, _what_it_is(head))
    try:
        with np.load(path, allow_pickle=False) as archive:
            entries = {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise CheckpointError(
                path,
                "holds pickled Python objects; fastconv never unpickles "
                "files (that can run arbitrary code)",
            ) from None
        raise CheckpointError(path, f"corrupt array in the archive ({exc})") from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, KeyError) as exc:
        raise CheckpointError(
            path, f"truncated or corrupt archive ({type(exc).__name__}: {exc})"
        ) from None
    for name, value in entries.items():
        if not isinstance(value, np.ndarray):  # a zip member whose name does not end in .npy
            raise CheckpointError(
                path, f"a zip archive whose member {name!r} is not a NumPy array: not a checkpoint"
            )
    return entries


def checkpoint_json(entries: Dict[str, np.ndarray], name: str) -> Any:
    """The decoded JSON entry ``name`` of a checkpoint read by :func:`read_checkpoint`."""
    return json.loads(str(entries[name]))


def read_checkpoint(path: PathLike) -> Dict[str, np.ndarray]:
    """The entries of a training checkpoint written by :func:`fastconv.lenet.fit`, checked.

    Checks the format string, that every JSON entry is present and decodes, that the arguments
    and the position have the fields resuming needs, and that it holds model parameters.

    Returns
    -------
    dict name -> ndarray (JSON entries as 0-d strings: decode with :func:`checkpoint_json`)

    Raises
    ------
    CheckpointError (a ValueError), OSError: see :func:`read_npz`; also a model saved with
    ``LeNet5.save()`` (no training state to resume from), another format or a damaged entry.
    """
    return _checked(path, read_npz(path))


def _checked(path: PathLike, entries: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    if "format" not in entries:
        raise CheckpointError(
            path,
            "holds no training state (a model saved with "
            "LeNet5.save()?): it can be evaluated but not resumed",
        )
    found = str(entries["format"])
    if found != FORMAT:
        raise CheckpointError(
            path, f"checkpoint format {found!r} is not the one this version reads ({FORMAT!r})"
        )
    for name in _JSON_ENTRIES:
        if name not in entries:
            raise CheckpointError(path, f"damaged checkpoint: the entry {name!r} is missing")
        try:
            checkpoint_json(entries, name)
        except ValueError as exc:
            raise CheckpointError(
                path, f"damaged checkpoint: the entry {name!r} is not valid JSON ({exc})"
            ) from None
    args = checkpoint_json(entries, "args")
    position = checkpoint_json(entries, "position")
    if not isinstance(args, dict) or any(key not in args for key in _ARGS_KEYS):
        raise CheckpointError(path, f"damaged checkpoint: 'args' lacks one of {_ARGS_KEYS}")
    if (
        not isinstance(position, dict)
        or not isinstance(position.get("epoch"), int)
        or not isinstance(position.get("batch"), int)
    ):
        raise CheckpointError(path, "damaged checkpoint: 'position' has no epoch or batch")
    if not isinstance(checkpoint_json(entries, "history"), list):
        raise CheckpointError(path, "damaged checkpoint: 'history' is not a list")
    if not any(name.startswith("model.") for name in entries):
        raise CheckpointError(path, "damaged checkpoint: no model parameters in it")
    return entries


def completed_epochs(path: PathLike) -> int:
    """How many whole epochs the training checkpoint at ``path`` has finished."""
    return int(checkpoint_json(read_checkpoint(path), "position")["epoch"])


def read_model_entries(path: PathLike) -> Dict[str, np.ndarray]:
    """The checked entries of a training checkpoint, or the state dict of a ``save()`` file."""
    entries = read_npz(path)
    return _checked(path, entries) if "format" in entries else entries
