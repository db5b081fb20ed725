"""Writing a training run's state: the checkpoint (model, optimiser, position, arguments,
history, the layers' random generators), atomically, and the model read back from one.
Reading is checked in :mod:`.checkpoint` (never unpickled)."""

import json
import os
from typing import Any, Dict, Union

import numpy as np

from .._atomic import save_npz_atomic
from .checkpoint import FORMAT, CheckpointError, read_model_entries
from .history import write_history
from .model import LeNet5

__all__ = ["layer_generators", "save_checkpoint", "load_model"]

PathLike = Union[str, "os.PathLike[str]"]


def layer_generators(model: Any) -> Dict[str, np.random.Generator]:
    """{module path: Generator} of the layers that draw random numbers (Dropout's ``rng``)."""
    out, stack = {}, [("", model)]
    while stack:
        path, layer = stack.pop()
        if isinstance(getattr(layer, "rng", None), np.random.Generator):
            out[path] = layer.rng
        stack.extend((f"{path}.{n}" if path else n, c) for n, c in layer.named_children().items())
    return out


def save_checkpoint(
    path: PathLike, model: Any, optimizer: Any, position: dict, args: dict, history: list
) -> None:
    """Write the checkpoint of a training run atomically (and its history beside it)."""
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optimizer.{k}": v for k, v in optimizer.state_dict().items()})
    layer_rngs = {p: g.bit_generator.state for p, g in layer_generators(model).items()}
    config = {
        k: getattr(model, k) for k in ("activation", "pooling", "dropout") if hasattr(model, k)
    }
    save_npz_atomic(
        path,
        format=FORMAT,
        args=json.dumps(args),
        history=json.dumps(history),
        position=json.dumps(position),
        layer_rngs=json.dumps(layer_rngs),
        model_config=json.dumps(config),
        **arrays,
    )
    write_history(path, history)  # NAME.history.csv / .json beside it, for people and plots


def load_model(path: PathLike) -> LeNet5:
    """A LeNet5 from a checkpoint written by :func:`fit`, or from ``LeNet5().save(path)``.

    Raises CheckpointError (a ValueError naming the file) when it is not such a file, OSError
    when it cannot be read.
    """
    entries = read_model_entries(path)
    try:
        if "format" in entries:
            model = LeNet5(**json.loads(str(entries["model_config"])), rng=0)
            model.load_state_dict({k[6:]: v for k, v in entries.items() if k.startswith("model.")})
        else:
            model = LeNet5(rng=0)
            model.load_state_dict(entries)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"not a LeNet-5 model: {exc}") from None
    return model
