"""The ``fastconv-lenet`` command (also ``python -m fastconv.lenet``): train and evaluate LeNet-5.

    fastconv-lenet train --data DIR --epochs 10 --threads 2 --seed 0 --save lenet.npz
    fastconv-lenet train --data DIR --epochs 10 --save lenet.npz --resume lenet.npz
    fastconv-lenet evaluate --model lenet.npz --data DIR

Exit status: 0 on success, 1 on an error (missing data, unreadable checkpoint, ...), 2 on bad
arguments (with the usage), 130 after Ctrl-C (the checkpoint is saved first).
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from .. import datasets
from .._compat import require_cupy
from .model import ACTIVATIONS, POOLINGS, LeNet5
from .train import (DEFAULT_LR, DEFAULT_LR_DECAY, TrainingInterrupted, evaluate, fit,
                    load_model)

PROG = "fastconv-lenet"


class CommandError(Exception):
    """A failure to report in one line (exit status 1), never as a traceback."""


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def build_parser():
    """The argparse parser of the command (sub-commands train and evaluate)."""
    parser = argparse.ArgumentParser(prog=PROG, description="Train or evaluate LeNet-5 on MNIST "
                                     "with fastconv.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub):
        sub.add_argument("--data", required=True, metavar="DIR",
                         help="directory with the four MNIST IDX files (.gz or not)")
        sub.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                         help="fastconv's thread count (default: OMP_NUM_THREADS or all cores)")
        sub.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                         help="where to compute (gpu needs CuPy and a CUDA device)")
        sub.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                         help="use only the first N training and N test images (quick runs)")

    train = commands.add_parser("train", help="train LeNet-5, one line per epoch")
    common(train)
    train.add_argument("--epochs", type=_positive_int, default=10, metavar="N")
    train.add_argument("--batch-size", type=_positive_int, default=64, metavar="B")
    train.add_argument("--lr", type=_positive_float, default=None, metavar="LR",
                       help=f"learning rate (default: {DEFAULT_LR['adam']} for adam, "
                            f"{DEFAULT_LR['sgd']} for sgd with momentum 0.9)")
    train.add_argument("--lr-decay", type=_positive_float, default=DEFAULT_LR_DECAY,
                       metavar="G", help=f"the lr is multiplied by G after every epoch "
                                         f"(default {DEFAULT_LR_DECAY})")
    train.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    train.add_argument("--seed", type=int, default=0, help="seeds initialisation and shuffling")
    train.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    train.add_argument("--pooling", choices=POOLINGS, default="max")
    train.add_argument("--save", metavar="PATH", default=None,
                       help="checkpoint (.npz) written after every epoch and on Ctrl-C")
    train.add_argument("--resume", metavar="PATH", default=None,
                       help="continue from this checkpoint (same batch size, optimizer, lr, "
                            "lr decay)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    ev = commands.add_parser("evaluate", help="accuracy and confusion matrix on the test set")
    common(ev)
    ev.add_argument("--model", required=True, metavar="PATH",
                    help="a checkpoint from `train --save` or a LeNet5.save() file")
    ev.add_argument("--batch-size", type=_positive_int, default=500, metavar="B")
    return parser


def _load_data(args):
    root = Path(args.data).expanduser()
    if not root.is_dir():
        raise CommandError(f"data directory {str(root)!r} does not exist (it should hold the "
                           f"MNIST files, e.g. train-images-idx3-ubyte.gz)")
    try:
        data = datasets.mnist(root, padding=2)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    if args.limit is not None:
        data = datasets.MNIST(data.train_images[:args.limit], data.train_labels[:args.limit],
                              data.test_images[:args.limit], data.test_labels[:args.limit])
    if args.device == "gpu":
        data = datasets.MNIST(*(_gpu().asarray(a) for a in data))
    return data


def _gpu():
    try:
        cupy = require_cupy()
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CuPy missing, or no usable CUDA device
        raise CommandError(f"--device gpu is not available: {exc}") from None
    return cupy


def _train(args):
    data = _load_data(args)
    model = LeNet5(args.activation, args.pooling, seed=args.seed)
    if args.device == "gpu":
        model.to("gpu")
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    print(f"LeNet-5 ({args.activation}, {args.pooling} pooling), "
          f"{len(data.train_labels)} training / {len(data.test_labels)} test images, "
          f"{args.optimizer} lr {lr:g} (x{args.lr_decay:g} per epoch), batch {args.batch_size}, "
          f"seed {args.seed}, threads {args.threads or 'default'}, {args.device}", flush=True)
    try:
        fit(model, data, args.epochs, batch_size=args.batch_size, lr=lr,
            optimizer=args.optimizer, lr_decay=args.lr_decay, seed=args.seed,
            threads=args.threads, save=args.save, resume=args.resume, progress=not args.no_progress,
            log=lambda line: print(line, flush=True))
    except (FileNotFoundError, ValueError) as exc:  # unreadable or mismatched checkpoint
        raise CommandError(str(exc)) from None
    if args.save is not None:
        print(f"saved {args.save}")
    return 0


def format_confusion(confusion):
    """A text table of a (K, K) confusion matrix: rows true classes, columns predictions."""
    k = confusion.shape[0]
    width = max(5, len(str(int(confusion.max()))) + 1)
    lines = ["true\\pred" + "".join(f"{j:>{width}}" for j in range(k))]
    for i in range(k):
        lines.append(f"{i:>9}" + "".join(f"{int(c):>{width}}" for c in confusion[i]))
    return "\n".join(lines)


def _evaluate(args):
    if not Path(args.model).is_file():
        raise CommandError(f"model file {args.model!r} does not exist")
    try:
        model = load_model(args.model)
    except (OSError, ValueError, KeyError) as exc:
        raise CommandError(f"cannot load {args.model!r}: {exc}") from None
    data = _load_data(args)
    if args.device == "gpu":
        model.to("gpu")
    if args.threads is not None:
        from .. import set_num_threads
        set_num_threads(args.threads)
    result = evaluate(model, data.test_images, data.test_labels, batch_size=args.batch_size)
    errors = int(result.confusion.sum() - np.trace(result.confusion))
    print(f"test accuracy {100 * result.accuracy:.2f}% ({errors} errors in "
          f"{int(result.confusion.sum())} images)")
    print(format_confusion(result.confusion))
    return 0


def main(argv=None):
    """Run the command; returns the exit status (argparse exits with 2 on bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _train(args) if args.command == "train" else _evaluate(args)
    except CommandError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:
        hint = "" if exc.checkpoint is not None else " (no checkpoint: train with --save PATH)"
        print(f"\n{PROG}: {exc}{hint}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
