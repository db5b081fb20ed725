"""The ``fastconv-lenet`` command (also ``python -m fastconv.lenet``): train and evaluate LeNet-5.

    fastconv-lenet download                         # MNIST into ~/.cache/fastconv/mnist
    fastconv-lenet train --epochs 10 --threads 2 --seed 0 --save lenet.npz
    fastconv-lenet train --save lenet.npz --resume lenet.npz --more-epochs 5
    fastconv-lenet evaluate --model lenet.npz [--scheduler tcp://host:8786 | local]
    fastconv-lenet report --model lenet.npz --out report.png

Without ``--data`` MNIST is read from ``$FASTCONV_DATA/mnist`` (default ``~/.cache/fastconv/mnist``);
``--download`` (or the ``download`` command) fetches the missing files there, MD5-verified.

Exit status: 0 on success, 1 on an error (one line on stderr, never a traceback: missing or
corrupt data, an unreadable checkpoint, an unwritable path, ...), 2 on bad arguments (with the
usage), 130 after Ctrl-C (the checkpoint is saved first); FASTCONV_TRACEBACK=1: tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .. import datasets, get_num_threads, set_num_threads
from .._cli_start import INTERRUPTED, end_command_start
from .._compat import require_cupy
from .checkpoint import CheckpointError, checkpoint_json, read_checkpoint, read_model_entries
from .cli_parser import (
    DEFAULT_EPOCHS,
    PROG,
    TRACEBACK_ENV,
    CommandError,
    build_parser,
    model_arguments,
    one_line,
)
from .data import DATA_ENV, default_mnist_dir, missing_mnist_files, verify_mnist_checksums
from .evaluate import evaluate_on_dask, format_confusion
from .history import history_paths, read_history
from .model import LeNet5
from .train import DEFAULT_LR, TrainingInterrupted, evaluate, fit, load_model

# ----------------------------------------------------------------- files and data


def _check_readable_file(path: str, option: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise CommandError(f"{option} file {str(p)!r} does not exist")
    if not p.is_file():
        raise CommandError(f"{option} {str(p)!r} is a directory, not a file")
    return p


def _check_writable(path: str, option: str) -> Path:
    """Fail now, not after an epoch of training, when ``path`` cannot be written."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise CommandError(f"{option} {str(p)!r} is a directory; give a file name")
    parent = p.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise CommandError(f"cannot write {option} {str(p)!r}: {str(parent)!r} {what}")
    try:  # the only reliable test (root ignores permission bits; read-only file systems)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{p.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise CommandError(f"cannot write {option} {str(p)!r}: {exc.strerror or exc}") from None
    return p


def _data_root(args: argparse.Namespace) -> Path:
    return Path(args.data).expanduser() if args.data else default_mnist_dir()


def _download(root: Path, explicit: bool) -> None:
    """Fetch the missing MNIST files into ``root`` (MD5-verified by datasets.mnist)."""
    missing = missing_mnist_files(root) if root.is_dir() else list(datasets.MNIST_FILES)
    if root.exists() and not root.is_dir():
        raise CommandError(f"data directory {str(root)!r} is a file")
    if not missing:
        return
    size = sum(datasets.MNIST_FILES[name][1] for name in missing) / 1e6
    print(
        f"downloading {len(missing)} MNIST file(s), {size:.1f} MB, into {root} (MD5-verified)...",
        file=sys.stderr,
        flush=True,
    )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(
            f"cannot create the data directory {str(root)!r}: {exc.strerror or exc}"
        ) from None
    try:
        datasets.mnist(root, download=True)
    except datasets.DownloadError as exc:
        hint = "" if explicit else f" (set {DATA_ENV} or pass --data DIR to use another place)"
        raise CommandError(f"download failed{hint}: {one_line(exc)}") from None
    except (OSError, ValueError) as exc:
        raise CommandError(
            f"MNIST in {root} is unusable after the download: {one_line(exc)}"
        ) from None


def _load_data(args: argparse.Namespace) -> datasets.MNIST:
    root = _data_root(args)
    explicit = args.data is not None
    if getattr(args, "download", False):
        _download(root, explicit)
    where = "" if explicit else f" (the default data directory; set {DATA_ENV} or pass --data DIR)"
    how = f"run `{PROG} download{' --data ' + str(root) if explicit else ''}` or add --download"
    if not root.exists():
        if explicit:
            raise CommandError(
                f"data directory {str(root)!r} does not exist (it should hold the "
                f"MNIST files, e.g. train-images-idx3-ubyte.gz): {how}"
            )
        raise CommandError(f"MNIST files not found in {root}{where}: {how}")
    if not root.is_dir():
        raise CommandError(f"data directory {str(root)!r} is a file, not a directory")
    missing = missing_mnist_files(root)
    if missing:
        raise CommandError(
            f"MNIST files not found in {root}{where}: missing {', '.join(missing)}; {how}"
        )
    try:
        data = datasets.mnist(root, padding=2)
    except (OSError, ValueError) as exc:  # DatasetError (corrupt, truncated), unreadable file
        raise CommandError(
            f"cannot read MNIST: {one_line(exc)} (delete the file and run "
            f"`{PROG} download` to fetch it again)"
        ) from None
    if args.limit is not None:
        data = datasets.MNIST(
            data.train_images[: args.limit],
            data.train_labels[: args.limit],
            data.test_images[: args.limit],
            data.test_labels[: args.limit],
        )
    if getattr(args, "device", "cpu") == "gpu":
        data = datasets.MNIST(*(_gpu().asarray(a) for a in data))
    return data


def _gpu() -> Any:
    try:
        cupy = require_cupy()
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CuPy missing, or no usable CUDA device
        raise CommandError(f"--device gpu is not available: {one_line(exc)}") from None
    return cupy


def _read_model(path: str) -> LeNet5:
    _check_readable_file(path, "--model")
    try:
        return load_model(Path(path).expanduser())
    except CheckpointError as exc:
        raise CommandError(f"cannot load the model: {one_line(exc)}") from None
    except OSError as exc:
        raise CommandError(f"cannot read {path!r}: {exc.strerror or exc}") from None


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        set_num_threads(args.threads)


# ----------------------------------------------------------------- commands


def _cmd_download(args: argparse.Namespace) -> int:
    root = _data_root(args)
    _download(root, args.data is not None)
    checks = verify_mnist_checksums(root)
    bad = [name for name, ok in checks.items() if ok is False]
    if bad:
        raise CommandError(
            f"MD5 mismatch for {', '.join(bad)} in {root}: delete "
            f"{'it' if len(bad) == 1 else 'them'} and run `{PROG} download` again"
        )
    try:
        data = datasets.mnist(root, padding=0)
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read MNIST: {one_line(exc)}") from None
    verified = sum(ok is True for ok in checks.values())
    print(
        f"MNIST ready in {root}: {len(data.train_labels)} training and {len(data.test_labels)} "
        f"test images ({verified} of 4 files MD5-verified)"
    )
    return 0


def _resume_state(path: str) -> Dict[str, Any]:
    _check_readable_file(path, "--resume")
    try:
        entries = read_checkpoint(Path(path).expanduser())
    except CheckpointError as exc:
        raise CommandError(f"cannot resume: {one_line(exc)}") from None
    except OSError as exc:
        raise CommandError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    return {
        "position": checkpoint_json(entries, "position"),
        "config": checkpoint_json(entries, "model_config"),
    }


def _train(args: argparse.Namespace) -> int:
    if args.save is not None:
        _check_writable(args.save, "--save")
    done, config = 0, {}
    if args.resume is not None:
        state = _resume_state(args.resume)
        done, config = int(state["position"]["epoch"]), state["config"]
        if not isinstance(config, dict):
            raise CommandError(f"cannot resume: {args.resume}: damaged model_config entry")
    if args.more_epochs is not None:
        epochs = done + args.more_epochs
    else:
        epochs = args.epochs if args.epochs is not None else DEFAULT_EPOCHS
        if args.resume is not None and done >= epochs:
            raise CommandError(
                f"{args.resume} has already trained {done} epoch{'s' * (done != 1)} and --epochs "
                f"is the total ({epochs}): pass --more-epochs K to train K more, or --epochs N "
                f"with N > {done}"
            )
    model_args = model_arguments(args, config)
    data = _load_data(args)
    model = LeNet5(**model_args, seed=args.seed)
    if args.device == "gpu":
        model.to("gpu")
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    print(
        f"LeNet-5 ({model_args['activation']}, {model_args['pooling']} pooling), "
        f"{len(data.train_labels)} training / {len(data.test_labels)} test images, "
        f"{args.optimizer} lr {lr:g} (x{args.lr_decay:g} per epoch), batch {args.batch_size}, "
        f"seed {args.seed}, threads {args.threads or get_num_threads()}, {args.device}, augment "
        f"{args.augment}, dropout {model_args['dropout']:g}, weight decay {args.weight_decay:g}",
        flush=True,
    )
    if args.save is None:  # else hours of training could end with nothing kept, unannounced
        note = "no --save given: the trained model will not be kept (--save PATH keeps it)"
        print(f"{PROG}: note: {note}", file=sys.stderr, flush=True)
    if args.resume is not None:
        print(f"resuming {args.resume} after epoch {done}; training to epoch {epochs}", flush=True)
    try:
        fit(
            model,
            data,
            epochs,
            batch_size=args.batch_size,
            lr=lr,
            optimizer=args.optimizer,
            lr_decay=args.lr_decay,
            augment=args.augment,
            weight_decay=args.weight_decay,
            seed=args.seed,
            threads=args.threads,
            save=args.save,
            resume=args.resume,
            progress=not args.no_progress,
            log=lambda line: print(line, flush=True),
        )
    except (CheckpointError, ValueError) as exc:  # unreadable or mismatched checkpoint
        raise CommandError(one_line(exc)) from None
    except OSError as exc:  # the checkpoint or its history could not be written
        raise CommandError(
            f"cannot write the checkpoint {args.save!r}: {exc.strerror or exc}"
        ) from None
    if args.save is not None:
        csv_path, json_path = history_paths(args.save)
        print(f"saved {args.save} (history: {csv_path}, {json_path})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    model = _read_model(args.model)
    data = _load_data(args)
    if args.device == "gpu":
        model.to("gpu")
    _set_threads(args)
    if args.scheduler:
        try:
            result = evaluate_on_dask(
                model,
                data.test_images,
                data.test_labels,
                args.batch_size,
                args.scheduler,
                args.workers,
            )
        except ImportError:
            raise CommandError('--scheduler needs Dask: pip install "fastconv[dask]"') from None
        except (OSError, TimeoutError) as exc:
            raise CommandError(f"cannot reach the Dask scheduler {args.scheduler}: {exc}") from None
    else:
        result = evaluate(model, data.test_images, data.test_labels, batch_size=args.batch_size)
    errors = int(result.confusion.sum() - np.trace(result.confusion))
    print(
        f"test accuracy {100 * result.accuracy:.2f}% ({errors} errors in "
        f"{int(result.confusion.sum())} images)"
    )
    print(format_confusion(result.confusion))
    return 0


def _history_for(model_path: str) -> List[Dict[str, Any]]:
    """The checkpoint's own history, else a NAME.history.json beside it, else none."""
    from .report import history_from_entries

    history = history_from_entries(read_model_entries(Path(model_path).expanduser()))
    if history:
        return history
    json_path = history_paths(Path(model_path).expanduser())[1]
    if json_path.is_file():
        try:
            return read_history(json_path)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read the history: {one_line(exc)}") from None
    return []


def _report(args: argparse.Namespace) -> int:
    from . import report

    if not report.have_matplotlib():
        raise CommandError(report.MATPLOTLIB_MISSING)
    out = _check_writable(args.out, "--out")
    model = _read_model(args.model)
    history = _history_for(args.model)
    data = _load_data(args)
    if args.digit >= len(data.test_labels):
        raise CommandError(
            f"--digit {args.digit} is out of range: the test set has {len(data.test_labels)} images"
        )
    _set_threads(args)
    try:
        result = report.render_report(
            model,
            data.test_images,
            data.test_labels,
            out,
            history=history,
            digit=args.digit,
            dpi=args.dpi,
            title=report.default_title(model, history),
        )
    except ImportError as exc:  # matplotlib present but broken
        raise CommandError(f"matplotlib cannot be imported: {one_line(exc)}") from None
    except OSError as exc:
        raise CommandError(f"cannot write {args.out!r}: {exc.strerror or exc}") from None
    print(
        f"wrote {out} (test accuracy {100 * result.accuracy:.2f}% on "
        f"{int(result.confusion.sum())} images)"
    )
    return 0


COMMANDS: Dict[str, Callable[[argparse.Namespace], int]] = {
    "download": _cmd_download,
    "train": _train,
    "evaluate": _evaluate,
    "report": _report,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; returns the exit status (argparse exits with 2 on bad arguments)."""
    try:
        end_command_start()  # Ctrl-C is reported below from here on (before: by _cli_start)
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except CommandError as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:
        hint = "" if exc.checkpoint is not None else " (no checkpoint: train with --save PATH)"
        print(f"\n{PROG}: {exc}{hint}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"\n{INTERRUPTED}", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, or a failure not foreseen above: still one line
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        print(
            f"{PROG}: error: unexpected {type(exc).__name__}: {one_line(exc)} (set "
            f"{TRACEBACK_ENV}=1 to see the traceback)",
            file=sys.stderr,
        )
        return 1
