"""Reading checkpoints safely: never unpickled, every way a file can be wrong named in one line.

A checkpoint is an uncompressed .npz archive (a zip of .npy arrays) written by
:func:`fastconv.lenet.fit` (``FORMAT`` entry, the model as "model.<name>", the optimiser as
"optimizer.<key>", JSON strings for the rest) or by ``LeNet5.save()`` (the state dict only).
NumPy would offer to unpickle anything that is not an archive and suggest ``allow_pickle=True``
(which runs arbitrary code); :mod:`fastconv.nn.weights` (the one reader of weights files) looks at
the first bytes instead and says what the file is. A model to evaluate may also be a
.safetensors file (a LeNet-5 trained in PyTorch, its state dict saved with safetensors).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Union

import numpy as np

from ..nn import weights
from ..nn.weights import WeightsFileError

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

_NPZ = "a checkpoint (.npz archive)"
_MODEL = "a checkpoint or model file (.npz or .safetensors)"


class CheckpointError(WeightsFileError):
    """A file is not a readable checkpoint; the message names the file and says why (one line).

    Attributes
    ----------
    path : str
    """


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
    return weights.read_npz(path, expected=_NPZ, error=CheckpointError)


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
    """The checked entries of a training checkpoint, or the state dict of a ``save()`` file
    (.npz or .safetensors: a LeNet-5 trained elsewhere, e.g. in PyTorch)."""
    entries = weights.read_weights_file(path, expected=_MODEL, error=CheckpointError)
    return _checked(path, entries) if "format" in entries else entries
