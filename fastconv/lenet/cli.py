"""The ``fastconv-lenet`` command (also ``python -m fastconv.lenet``): train and evaluate LeNet-5.

    fastconv-lenet download                         # MNIST into ~/.cache/fastconv/mnist
    fastconv-lenet train --epochs 10 --threads 2 --seed 0 --save lenet.npz
    fastconv-lenet train --save lenet.npz --resume lenet.npz --more-epochs 5
    fastconv-lenet evaluate --model lenet.npz
    fastconv-lenet report --model lenet.npz --out report.png

Without ``--data`` MNIST is read from ``$FASTCONV_DATA/mnist`` (default
``~/.cache/fastconv/mnist``);
``--download`` (or the ``download`` command) fetches the missing files there, MD5-verified.

Exit status: 0 on success, 1 on an error (one line on stderr, never a traceback: missing or
corrupt data, an unreadable checkpoint, an unwritable path, ...), 2 on bad arguments (with the
usage), 130 after Ctrl-C (the checkpoint is saved first). ``FASTCONV_TRACEBACK=1`` shows the
traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .. import __version__, datasets
from .._compat import require_cupy
from .checkpoint import CheckpointError, checkpoint_json, read_checkpoint, read_model_entries
from .data import DATA_ENV, default_mnist_dir, missing_mnist_files, verify_mnist_checksums
from .history import history_paths, read_history
from .model import ACTIVATIONS, POOLINGS, LeNet5
from .train import DEFAULT_LR, DEFAULT_LR_DECAY, TrainingInterrupted, evaluate, fit, load_model

PROG = "fastconv-lenet"
DEFAULT_EPOCHS = 10
DEFAULT_ACTIVATION, DEFAULT_POOLING = "relu", "max"
TRACEBACK_ENV = "FASTCONV_TRACEBACK"


class CommandError(Exception):
    """A failure to report in one line (exit status 1), never as a traceback."""


def one_line(message: object) -> str:
    """``message`` with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(str(message).split())


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default in --help, except the None/False of options that have none."""

    def _get_help_string(self, action: argparse.Action) -> Optional[str]:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the command (sub-commands download, train, evaluate, report)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=_HelpFormatter,
        description="Train, evaluate and picture LeNet-5 on MNIST with fastconv.",
        epilog=f"Without --data, MNIST is read from ${DATA_ENV}/mnist, by default "
        f"~/.cache/fastconv/mnist (now: {default_mnist_dir()}). "
        f"Run `{PROG} COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s (fastconv {__version__})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--data",
            metavar="DIR",
            default=None,
            help=f"directory with the four MNIST IDX files (.gz or not); default: "
            f"${DATA_ENV}/mnist or ~/.cache/fastconv/mnist",
        )
        sub.add_argument(
            "--download",
            action="store_true",
            help="first download the missing MNIST files (MD5-verified) into the data directory",
        )

    def common(sub: argparse.ArgumentParser, device: bool = True) -> None:
        data_options(sub)
        sub.add_argument(
            "--threads",
            type=_positive_int,
            default=None,
            metavar="T",
            help="fastconv's thread count (default: OMP_NUM_THREADS or all cores)",
        )
        if device:
            sub.add_argument(
                "--device",
                choices=("cpu", "gpu"),
                default="cpu",
                help="where to compute (gpu needs CuPy and a CUDA device)",
            )
        sub.add_argument(
            "--limit",
            type=_positive_int,
            default=None,
            metavar="N",
            help="use only the first N training and N test images (quick runs)",
        )

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help,
            description=help[0].upper() + help[1:] + ".",
            formatter_class=_HelpFormatter,
        )

    down = add("download", "download MNIST (MD5-verified, with a progress bar) and check it")
    down.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help=f"where to put the files; default: ${DATA_ENV}/mnist or ~/.cache/fastconv/mnist",
    )

    train = add("train", "train LeNet-5, one line per epoch")
    common(train)
    epochs = train.add_mutually_exclusive_group()
    epochs.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"train until N epochs are done in total, counting those of a "
        f"--resume checkpoint (default: {DEFAULT_EPOCHS})",
    )
    epochs.add_argument(
        "--more-epochs",
        type=_positive_int,
        default=None,
        metavar="K",
        help="train K epochs beyond those the --resume checkpoint has "
        "completed (without --resume: K epochs)",
    )
    train.add_argument(
        "--batch-size", type=_positive_int, default=64, metavar="B", help="images per step"
    )
    train.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        metavar="LR",
        help=f"learning rate (default: {DEFAULT_LR['adam']} for adam, "
        f"{DEFAULT_LR['sgd']} for sgd with momentum 0.9)",
    )
    train.add_argument(
        "--lr-decay",
        type=_positive_float,
        default=DEFAULT_LR_DECAY,
        metavar="G",
        help="the lr is multiplied by G after every epoch",
    )
    train.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="the optimiser")
    train.add_argument("--seed", type=int, default=0, help="seeds initialisation and shuffling")
    train.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        default=None,
        help=f"default: {DEFAULT_ACTIVATION}, or the --resume checkpoint's",
    )
    train.add_argument(
        "--pooling",
        choices=POOLINGS,
        default=None,
        help=f"default: {DEFAULT_POOLING}, or the --resume checkpoint's",
    )
    train.add_argument(
        "--save",
        metavar="PATH",
        default=None,
        help="checkpoint (.npz) written after every epoch and on Ctrl-C; the "
        "history goes beside it (NAME.history.csv, NAME.history.json)",
    )
    train.add_argument(
        "--resume",
        metavar="PATH",
        default=None,
        help="continue from this checkpoint (same batch size, optimizer, lr, lr decay)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    ev = add("evaluate", "accuracy and confusion matrix on the test set")
    common(ev)
    ev.add_argument(
        "--model",
        required=True,
        metavar="PATH",
        help="a checkpoint from `train --save` or a LeNet5.save() file",
    )
    ev.add_argument(
        "--batch-size", type=_positive_int, default=500, metavar="B", help="images per forward pass"
    )

    rep = add(
        "report",
        "draw training curves, confusion matrix, filters and feature maps "
        'into a PNG (needs matplotlib: pip install "fastconv[plot]")',
    )
    common(rep, device=False)
    rep.add_argument(
        "--model",
        required=True,
        metavar="PATH",
        help="a checkpoint from `train --save` (its history gives the curves) or a "
        "LeNet5.save() file",
    )
    rep.add_argument("--out", metavar="PNG", default="report.png", help="the picture to write")
    rep.add_argument(
        "--digit",
        type=_nonnegative_int,
        default=0,
        metavar="I",
        help="index of the test image whose feature maps are shown",
    )
    rep.add_argument("--dpi", type=_positive_int, default=100, help="resolution of the PNG")
    return parser


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
        from .. import set_num_threads

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
    model_args = {}
    for key, default in (("activation", DEFAULT_ACTIVATION), ("pooling", DEFAULT_POOLING)):
        given, saved = getattr(args, key), config.get(key)
        if given is not None and saved is not None and given != saved:
            raise CommandError(
                f"{args.resume} holds a model with {key} {saved!r}, not "
                f"{given!r}: drop --{key} to continue it"
            )
        model_args[key] = given or saved or default
    data = _load_data(args)
    model = LeNet5(model_args["activation"], model_args["pooling"], seed=args.seed)
    if args.device == "gpu":
        model.to("gpu")
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    print(
        f"LeNet-5 ({model_args['activation']}, {model_args['pooling']} pooling), "
        f"{len(data.train_labels)} training / {len(data.test_labels)} test images, "
        f"{args.optimizer} lr {lr:g} (x{args.lr_decay:g} per epoch), batch {args.batch_size}, "
        f"seed {args.seed}, threads {args.threads or 'default'}, {args.device}",
        flush=True,
    )
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


def format_confusion(confusion: np.ndarray) -> str:
    """A text table of a (K, K) confusion matrix: rows true classes, columns predictions."""
    k = confusion.shape[0]
    width = max(5, len(str(int(confusion.max()))) + 1)
    lines = ["true\\pred" + "".join(f"{j:>{width}}" for j in range(k))]
    for i in range(k):
        lines.append(f"{i:>9}" + "".join(f"{int(c):>{width}}" for c in confusion[i]))
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    model = _read_model(args.model)
    data = _load_data(args)
    if args.device == "gpu":
        model.to("gpu")
    _set_threads(args)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CommandError as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:
        hint = "" if exc.checkpoint is not None else " (no checkpoint: train with --save PATH)"
        print(f"\n{PROG}: {exc}{hint}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
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
