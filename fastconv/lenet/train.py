"""Training and evaluation of a classifier (LeNet-5 on MNIST) with resumable checkpoints.

:func:`fit` runs epochs of shuffled mini-batches (Adam or SGD, softmax cross-entropy), logs one
line per epoch and, given ``save``, writes a checkpoint atomically after every epoch and on
Ctrl-C. The checkpoint (.npz) holds the model ("model.<name>"), the optimiser ("optimizer.<key>")
and the position: epoch, batch, the shuffling generator's state at that epoch's start, the
partial epoch's sums, the arguments and the history. ``resume`` continues from it with the
same results as an uninterrupted run (same seed, batch size, optimiser and lr).
"""

import json
import math
import os
import signal
import sys
import threading
import time
from collections import namedtuple
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from .. import nn, optim, set_num_threads
from ..parameter import array_module
from .augment import AUGMENTATIONS, make_augmentation
from .checkpoint import read_checkpoint
from .evaluate import Evaluation, evaluate
from .memory import keep_freed_memory
from .state import layer_generators, load_model, save_checkpoint

__all__ = [
    "fit",
    "evaluate",
    "Evaluation",
    "TrainingInterrupted",
    "load_model",
    "DEFAULT_LR",
    "DEFAULT_LR_DECAY",
    "shuffle_generator",
    "augment_generator",
    "keep_freed_memory",
]

# Measured on MNIST (seeds 0, 1, 2; 10 epochs): Adam at 1e-3 without decay ends at 98.9-99.0%;
# 2e-3 decayed by 0.7 per epoch at 99.12-99.21%.
DEFAULT_LR = {"adam": 2e-3, "sgd": 0.01}
DEFAULT_LR_DECAY = 0.7
DEFAULT_AUGMENT = "shift"
SGD_MOMENTUM = 0.9
_POSTFIX_EVERY = 50  # batches between progress-bar text updates (formatting them costs)
PathLike = Union[str, "os.PathLike[str]"]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`fit` at a batch boundary; ``checkpoint``: the file saved, or None."""

    def __init__(self, message: str, checkpoint: Optional[PathLike]) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


def shuffle_generator(seed: int) -> np.random.Generator:
    """The generator that shuffles the training set: seeded by ``seed`` on a stream apart from
    ``LeNet5(seed=seed)``'s initialisation (which uses ``default_rng(seed)``)."""
    return np.random.default_rng([1, seed])


def augment_generator(seed: int) -> np.random.Generator:
    """The generator of the data augmentation's draws: a third stream of ``seed``."""
    return np.random.default_rng([2, seed])


def _make_optimizer(name, params, lr, weight_decay):
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


class _StopOnSigint:
    """While active (main thread only), Ctrl-C sets ``requested`` instead of raising, so that
    training stops at a batch boundary with a consistent state; a second Ctrl-C raises."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _check_resumable(resume: PathLike, saved: Dict[str, Any], args: Dict[str, Any]) -> None:
    """ValueError (one line) unless the checkpoint's arguments ``saved`` match ``args``."""
    saved.setdefault("augment", "none")  # checkpoints from before these options
    saved.setdefault("weight_decay", 0.0)
    for key in ("batch_size", "optimizer", "lr", "lr_decay", "augment", "weight_decay"):
        if saved[key] != args[key]:
            raise ValueError(
                f"{resume} was trained with {key}={saved[key]!r}, got "
                f"{args[key]!r}: pass the same value to continue it"
            )
    # The position (batch, running sums, shuffling state) counts in images of that training
    # set: on another size the epoch's accuracy and speed come out wrong (747.50%, 0 img/s)
    # and the shuffled order differs. Checkpoints from before this entry cannot be checked.
    trained_on = saved.get("train_images", args["train_images"])
    if trained_on != args["train_images"]:
        raise ValueError(
            f"{resume} was trained on {trained_on} training images, got "
            f"{args['train_images']}: continue it on the same training set"
        )


def _progress_bar(total, initial, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="batch",
        leave=False,
        file=sys.stderr,
        disable=None,
        dynamic_ncols=True,
    )


def fit(
    model: nn.Layer,
    data: Any,
    epochs: int,
    batch_size: int = 64,
    lr: Optional[float] = None,
    optimizer: str = "adam",
    seed: int = 0,
    threads: Optional[int] = None,
    save: Optional[PathLike] = None,
    resume: Optional[PathLike] = None,
    progress: bool = True,
    log: Callable[[str], Any] = print,
    lr_decay: float = DEFAULT_LR_DECAY,
    augment: str = DEFAULT_AUGMENT,
    weight_decay: float = 0.0,
) -> List[Dict[str, Any]]:
    """Train ``model`` on ``data`` for ``epochs`` epochs (in total, counting resumed ones).

    Parameters
    ----------
    model : fastconv.nn.Layer
        Images (B, 1, 32, 32) -> logits (B, 10), e.g. :class:`LeNet5`; NumPy or (after
        ``model.to('gpu')``) CuPy parameters, with ``data`` on the same device.
    data : fastconv.datasets.MNIST or any object with train_images (N, 1, 32, 32) float32,
        train_labels (N,) int64, test_images, test_labels.
    epochs : int, the epoch to stop after. batch_size : int.
    lr : float, default 2e-3 for Adam, 0.01 for SGD (momentum 0.9).
    lr_decay : float, default 0.7; epoch e (from 0) trains with ``lr * lr_decay ** e``.
    optimizer : 'adam' or 'sgd'.
    seed : int, seeds the shuffling (see :func:`shuffle_generator`; the model's initialisation
        has its own seed).
    threads : int, optional; fastconv's thread count during training (restored afterwards).
    save : path, optional; checkpoint written atomically after every epoch and on Ctrl-C.
    resume : path, optional; a checkpoint to continue from (its batch size, optimiser, lr,
        lr_decay, augment, weight_decay and number of training images must match these
        arguments and ``data``; its seed is used).
    progress : bool; a tqdm bar per epoch on stderr (shown only on a terminal).
    log : callable(str), receives one line per epoch.
    augment : 'shift' (default) or 'none': train on copies of each batch moved by up to 2
        pixels each way (:mod:`fastconv.lenet.augment`; drawn from :func:`augment_generator`).
    weight_decay : float >= 0, default 0; the optimiser's L2 penalty.

    Returns
    -------
    list of dict per epoch: epoch, train_loss, train_accuracy, test_accuracy, seconds,
    images_per_second, test_seconds.

    Raises
    ------
    TrainingInterrupted (a KeyboardInterrupt) after Ctrl-C, once the checkpoint is saved.

    Notes
    -----
    On CPU, calls :func:`keep_freed_memory` (a process-wide malloc setting, on glibc).
    Trains with the model's buffer reuse on (:meth:`fastconv.nn.Layer.reuse_buffers`), so that a
    step allocates no array after the first: the parameters' ``grad`` arrays are then the
    layers' kept buffers. Reuse is turned off again afterwards (its buffers dropped) unless it
    was on before.
    """
    lr = DEFAULT_LR.get(optimizer, 1e-3) if lr is None else float(lr)
    if int(epochs) < 0 or int(batch_size) < 1:
        raise ValueError(f"need epochs >= 0 and batch_size >= 1, got {epochs}, {batch_size}")
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    images, labels = data.train_images, data.train_labels
    args = {
        "batch_size": int(batch_size),
        "lr": lr,
        "optimizer": optimizer,
        "seed": seed,
        "lr_decay": float(lr_decay),
        "augment": augment,
        "weight_decay": float(weight_decay),
        "train_images": len(labels),
    }
    opt = _make_optimizer(optimizer, model.parameters(), lr, float(weight_decay))
    position = _epoch_start(0, shuffle_generator(seed).bit_generator.state)
    history = []
    if resume is not None:
        ckpt = read_checkpoint(resume)  # checked, never unpickled
        saved = json.loads(str(ckpt["args"]))
        _check_resumable(resume, saved, args)
        args["seed"] = saved["seed"]
        model.load_state_dict({k[6:]: v for k, v in ckpt.items() if k.startswith("model.")})
        opt.load_state_dict({k[10:]: v for k, v in ckpt.items() if k.startswith("optimizer.")})
        generators = layer_generators(model)
        for path, state in json.loads(str(ckpt["layer_rngs"])).items():
            if path not in generators:
                raise ValueError(
                    f"{resume} has the random state of a layer {path!r} that this "
                    f"model does not have"
                )
            generators[path].bit_generator.state = state
        position = json.loads(str(ckpt["position"]))
        history = json.loads(str(ckpt["history"]))
        if position["epoch"] >= int(epochs):
            log(f"{resume} has already trained {position['epoch']} epochs (asked for {epochs})")
    if array_module(images) is np:
        keep_freed_memory()
    previous_threads = set_num_threads(threads) if threads is not None else None
    was_reusing = any(layer.reusing_buffers for layer in model.modules())
    model.reuse_buffers(True)
    try:
        with _StopOnSigint() as stop:
            run = _Run(model, opt, data, int(epochs), args, save, progress, log)
            _run_epochs(run, position, history, stop)
    finally:
        if not was_reusing:
            model.reuse_buffers(False)
        if previous_threads is not None:
            set_num_threads(previous_threads)
    return history


def _epoch_start(epoch, rng_state):
    """The position at the start of `epoch` (from 0), shuffled by a generator in `rng_state`."""
    return {"epoch": epoch, "batch": 0, "loss_sum": 0.0, "correct": 0, "seen": 0, "rng": rng_state}


# What fit's epochs run with: the same for all of them.
_Run = namedtuple("_Run", "model opt data epochs args save progress log")


def _run_epochs(run, position, history, stop):
    """fit's epochs from `position` on, appending to `history`; `stop`: _StopOnSigint."""
    model, opt, data, epochs, args, save, progress, log = run
    images, labels, batch_size = data.train_images, data.train_labels, args["batch_size"]
    xp = array_module(images)
    loss_fn = nn.SoftmaxCrossEntropy().reuse_buffers(True)
    n = len(labels)
    num_batches = math.ceil(n / batch_size)
    # Batches are gathered into these buffers (np.take(..., out=)), the predictions counted in
    # these: no per-batch allocation (the layers reuse theirs, see fit's Notes).
    x_buf = xp.empty((batch_size,) + tuple(images.shape[1:]), dtype=images.dtype)
    y_buf = xp.empty(batch_size, dtype=labels.dtype)
    predicted_buf = xp.empty(batch_size, dtype=np.int64)
    hits_buf = xp.empty(batch_size, dtype=bool)
    augmentation = make_augmentation(args.get("augment", "none"), augment_generator(args["seed"]))
    if augmentation is not None:
        augmented_buf = xp.empty_like(x_buf)
        if "augment_rng" in position:
            augmentation.rng.bit_generator.state = position["augment_rng"]
    model.train()

    def checkpoint_now():
        if augmentation is not None:
            position["augment_rng"] = augmentation.rng.bit_generator.state
        if save is not None:
            save_checkpoint(save, model, opt, position, args, history)

    while position["epoch"] < epochs:
        epoch = position["epoch"]
        opt.lr = args["lr"] * args["lr_decay"] ** epoch
        shuffle_rng = np.random.default_rng(0)  # its state is replaced next
        shuffle_rng.bit_generator.state = position["rng"]
        order = xp.asarray(shuffle_rng.permutation(n))
        bar = _progress_bar(num_batches, position["batch"], f"epoch {epoch + 1}/{epochs}", progress)
        start = time.perf_counter()
        done_before = position["seen"]
        # Running sums on the arrays' device, read back only for the progress bar and at the end
        # of the epoch (a GPU step then never waits for the host); float64 as Python's floats.
        loss_sum = xp.asarray(position["loss_sum"], dtype=np.float64)
        correct = xp.asarray(position["correct"], dtype=np.int64)
        for b in range(position["batch"], num_batches):
            index = order[b * batch_size : (b + 1) * batch_size]
            k = len(index)
            x = xp.take(images, index, axis=0, out=x_buf[:k])
            y = xp.take(labels, index, out=y_buf[:k])
            if augmentation is not None:
                x = augmentation(x, augmented_buf[:k])
            opt.zero_grad(set_to_none=True)  # backward assigns: no zeroing, no adding
            logits = model.forward(x)
            loss = loss_fn.forward(logits, y)
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()
            loss_sum += loss.astype(np.float64) * k
            predicted = logits.argmax(axis=1, out=predicted_buf[:k])
            correct += xp.count_nonzero(xp.equal(predicted, y, out=hits_buf[:k]))
            position.update(batch=b + 1, seen=position["seen"] + k)
            if bar is not None:
                bar.update(1)
                if (b + 1) % _POSTFIX_EVERY == 0:
                    rate = (position["seen"] - done_before) / (time.perf_counter() - start)
                    bar.set_postfix_str(
                        f"loss {float(loss_sum) / position['seen']:.4f}, {rate:,.0f} img/s"
                    )
            if stop.requested:
                break
        position.update(loss_sum=float(loss_sum), correct=int(correct))  # (waits for a GPU)
        loss_sum, correct = position["loss_sum"], position["correct"]
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        if stop.requested and position["batch"] < num_batches:
            checkpoint_now()
            where = f"; checkpoint saved to {save}" if save is not None else ""
            raise TrainingInterrupted(
                f"interrupted in epoch {epoch + 1} after batch "
                f"{position['batch']}/{num_batches}{where}",
                save,
            )
        test_start = time.perf_counter()
        test = evaluate(model, data.test_images, data.test_labels)
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / n,
            "train_accuracy": correct / n,
            "test_accuracy": test.accuracy,
            "seconds": seconds,
            "images_per_second": (position["seen"] - done_before) / seconds,
            "test_seconds": time.perf_counter() - test_start,
        }
        history.append(record)
        position = _epoch_start(epoch + 1, shuffle_rng.bit_generator.state)
        checkpoint_now()
        log(
            f"epoch {epoch + 1:>2}/{epochs}  train loss {record['train_loss']:.4f}  "
            f"train acc {100 * record['train_accuracy']:.2f}%  test acc "
            f"{100 * record['test_accuracy']:.2f}%  {seconds:.2f} s  "
            f"{record['images_per_second']:,.0f} img/s  (test {record['test_seconds']:.2f} s)"
        )
        if stop.requested:
            where = f"; checkpoint saved to {save}" if save is not None else ""
            raise TrainingInterrupted(f"interrupted after epoch {epoch + 1}{where}", save)
