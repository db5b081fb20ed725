"""The training history beside the checkpoint: ``NAME.history.csv`` and ``NAME.history.json``.

:func:`fastconv.lenet.fit` keeps the history inside the checkpoint (to resume it); the two files
beside it are for people and tools: a spreadsheet or ``pandas.read_csv`` reads the CSV, anything
reads the JSON (a list of one object per epoch). Both are rewritten atomically after every
epoch, so they always match the checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

from .._atomic import atomic_write

__all__ = ["COLUMNS", "history_paths", "write_history", "read_history"]

PathLike = Union[str, "os.PathLike[str]"]

COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "test_accuracy",
    "seconds",
    "images_per_second",
    "test_seconds",
)
"""The fields of one epoch's record, in the CSV's column order."""


def history_paths(checkpoint: PathLike) -> Tuple[Path, Path]:
    """(CSV, JSON) paths beside ``checkpoint``: ``lenet.npz`` -> ``lenet.history.csv``, ...

    A ``.npz`` suffix is replaced; any other name gets the suffixes appended.
    """
    checkpoint = Path(checkpoint)
    stem = checkpoint.name[:-4] if checkpoint.name.endswith(".npz") else checkpoint.name
    return (
        checkpoint.with_name(f"{stem}.history.csv"),
        checkpoint.with_name(f"{stem}.history.json"),
    )


def write_history(checkpoint: PathLike, history: Sequence[Dict[str, Any]]) -> Tuple[Path, Path]:
    """Write ``history`` (one dict per epoch, see :data:`COLUMNS`) beside ``checkpoint``.

    Returns the (CSV, JSON) paths. Each file is replaced atomically. Fields beyond
    :data:`COLUMNS` go to the JSON only.
    """
    csv_path, json_path = history_paths(checkpoint)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    with atomic_write(csv_path, "w", encoding="utf-8", newline="") as f:
        f.write(text.getvalue())
    with atomic_write(json_path, "w", encoding="utf-8") as f:
        json.dump(list(history), f, indent=1)
        f.write("\n")
    return csv_path, json_path


def read_history(path: PathLike) -> List[Dict[str, Any]]:
    """The history from a ``.history.json`` or ``.history.csv`` file written by
    :func:`write_history` (CSV values converted back to numbers: ``epoch`` int, others float).

    Raises
    ------
    ValueError
        The file is not such a history (names the file).
    OSError
        It cannot be read.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".csv":
            rows: List[Dict[str, Any]] = []
            for row in csv.DictReader(io.StringIO(text)):
                rows.append({k: int(v) if k == "epoch" else float(v) for k, v in row.items()})
        else:
            rows = json.loads(text)
        if not isinstance(rows, list) or not all(
            isinstance(r, dict) and all(k in r for k in COLUMNS) for r in rows
        ):
            raise ValueError(f"expected one record per epoch with the fields {COLUMNS}")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a training history ({exc})") from None
    return rows
