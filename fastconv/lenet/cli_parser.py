"""The ``fastconv-lenet`` command line: its arguments (build_parser) and its error type."""

from __future__ import annotations

import argparse
import math
from typing import Any, Callable, Dict, Optional

from .. import __version__
from .._cli_start import PROG
from .augment import AUGMENTATIONS
from .data import DATA_ENV, default_mnist_dir
from .model import ACTIVATIONS, POOLINGS
from .train import DEFAULT_AUGMENT, DEFAULT_LR, DEFAULT_LR_DECAY

DEFAULT_EPOCHS = 10
DEFAULT_ACTIVATION, DEFAULT_POOLING = "relu", "max"
# The model's options: --X overrides, else the --resume checkpoint's, else this default.
MODEL_DEFAULTS = {"activation": DEFAULT_ACTIVATION, "pooling": DEFAULT_POOLING, "dropout": 0.25}
TRACEBACK_ENV = "FASTCONV_TRACEBACK"


class CommandError(Exception):
    """A failure to report in one line (exit status 1), never as a traceback."""


def one_line(message: object) -> str:
    """``message`` with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(str(message).split())


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= low."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _float_in(low: float, high: float, rule: str) -> Callable[[str], float]:
    """An argparse type: a number with low <= value < high, else the error "must be <rule>"."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not low <= value < high:
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


_positive_float = _float_in(math.ulp(0.0), math.inf, "a finite number > 0")
_nonnegative_float = _float_in(0.0, math.inf, "a finite number >= 0")
_rate = _float_in(0.0, 1.0, "a rate in [0, 1)")


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

    def batch_size(sub: argparse.ArgumentParser, default: int, help: str) -> None:
        sub.add_argument(
            "--batch-size", type=_positive_int, default=default, metavar="B", help=help
        )

    def model_option(sub: argparse.ArgumentParser, help: str) -> None:
        sub.add_argument("--model", required=True, metavar="PATH", help=help)

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
    batch_size(train, 64, "images per step")
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
        "--dropout",
        type=_rate,
        default=None,
        metavar="P",
        help=f"dropout rate after C5 and F6 (default: {MODEL_DEFAULTS['dropout']}, or the --resume "
        "checkpoint's)",
    )
    train.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default=DEFAULT_AUGMENT,
        help="shift: train on copies of each batch moved by up to 2 pixels each way",
    )
    train.add_argument(
        "--weight-decay",
        type=_nonnegative_float,
        default=0.0,
        metavar="L2",
        help="the optimiser's L2 penalty",
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
        help="continue from this checkpoint (same batch size, optimizer, lr, lr decay, augment, "
        "weight decay and number of training images)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    ev = add("evaluate", "accuracy and confusion matrix on the test set")
    common(ev)
    model_option(
        ev,
        "a checkpoint from `train --save`, or a LeNet5.save() / state-dict file (.npz, or "
        ".safetensors: e.g. a LeNet-5 trained in PyTorch)",
    )
    batch_size(ev, 500, "images per forward pass")
    ev.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="evaluate on a Dask cluster: a distributed scheduler's address "
        "(tcp://host:8786), or 'local' for a LocalCluster of --workers processes on this "
        'machine; batches of --batch-size images are the chunks (pip install "fastconv[dask]")',
    )
    ev.add_argument(
        "--workers", type=_positive_int, default=2, metavar="W", help="with --scheduler local"
    )

    rep = add(
        "report",
        "draw training curves, confusion matrix, filters and feature maps "
        'into a PNG (needs matplotlib: pip install "fastconv[plot]")',
    )
    common(rep, device=False)
    model_option(
        rep,
        "a checkpoint from `train --save` (its history gives the curves) or a LeNet5.save() file",
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


def model_arguments(args: argparse.Namespace, config: Dict[str, Any]) -> Dict[str, Any]:
    """LeNet5's arguments: each option given, else the --resume checkpoint's (its model_config:
    `config`), else MODEL_DEFAULTS; CommandError when an option contradicts the checkpoint."""
    if args.resume is not None:
        config = {"dropout": 0.0, **config}  # checkpoints from before --dropout have none
    model_args = {key: config.get(key, default) for key, default in MODEL_DEFAULTS.items()}
    for key in MODEL_DEFAULTS:
        given = getattr(args, key)
        if given is not None and key in config and given != config[key]:
            raise CommandError(
                f"{args.resume} holds a model with {key} {config[key]!r}, not "
                f"{given!r}: drop --{key} to continue it"
            )
        if given is not None:
            model_args[key] = given
    return model_args
