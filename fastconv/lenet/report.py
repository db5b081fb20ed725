"""A one-page picture of a trained LeNet-5: training curves, confusion matrix, C1's filters, and
what C1 and C3 make of one test digit (``fastconv-lenet report``).

Needs matplotlib (``pip install "fastconv[plot]"``). The figure is drawn on matplotlib's Agg
canvas directly (no pyplot, no display, no global backend switch), so it works headless and
leaves the caller's matplotlib state alone.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union, cast

import numpy as np

from .._atomic import atomic_write
from .model import LeNet5
from .train import Evaluation, evaluate

__all__ = [
    "MATPLOTLIB_MISSING",
    "have_matplotlib",
    "layer_outputs",
    "render_report",
    "history_from_entries",
    "default_title",
]

PathLike = Union[str, "os.PathLike[str]"]

MATPLOTLIB_MISSING = (
    "the report needs matplotlib, which is not installed: "
    'pip install "fastconv[plot]" (or pip install matplotlib)'
)


def have_matplotlib() -> bool:
    """Whether matplotlib can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _host(a: Any) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)


def layer_outputs(model: LeNet5, x: Any) -> Dict[str, np.ndarray]:
    """{layer name: its output} for images ``x`` (N, 1, 32, 32) run through ``model`` in eval
    mode (host NumPy copies; the model's mode is restored). With tanh the activation is its own
    layer: ``c1_tanh`` holds C1's activated maps."""
    was_training = model.training
    model.eval()
    outputs = {}
    try:
        for name, layer in model.named_children().items():
            x = layer(x)
            outputs[name] = _host(x).copy()
    finally:
        model.train(was_training)
    return outputs


def render_report(
    model: LeNet5,
    images: Any,
    labels: Any,
    out: PathLike,
    *,
    history: Optional[Sequence[Dict[str, Any]]] = None,
    digit: int = 0,
    title: Optional[str] = None,
    dpi: int = 100,
    evaluation: Optional[Evaluation] = None,
) -> Evaluation:
    """Draw the report of ``model`` on the test set (``images``, ``labels``) into ``out`` (PNG).

    Parameters
    ----------
    model : LeNet5
    images : array (N, 1, 32, 32) float; labels : array (N,) int in 0..9
        The test set: the confusion matrix is computed on all of it.
    out : path
        The PNG file, written atomically.
    history : list of per-epoch dicts (see :data:`fastconv.lenet.history.COLUMNS`), optional
        Drawn as loss and accuracy curves; without it those panels say so.
    digit : int, default 0
        Index of the test image whose C1 and C3 feature maps are shown.
    title : str, optional
    dpi : int, default 100 (the figure is 13 x 10.5 inches)
    evaluation : Evaluation, optional
        Reuse an :func:`evaluate` result instead of computing it.

    Returns
    -------
    Evaluation (accuracy, confusion) on the test set.

    Raises
    ------
    ModuleNotFoundError
        matplotlib is missing (message: :data:`MATPLOTLIB_MISSING`).
    IndexError
        ``digit`` is not an index of ``images``.
    """
    try:
        from matplotlib.colors import PowerNorm
        from matplotlib.figure import Figure
    except ImportError:
        raise ModuleNotFoundError(MATPLOTLIB_MISSING, name="matplotlib") from None
    n = len(labels)
    if not -n <= digit < n:
        raise IndexError(f"digit must index the {n} test images, got {digit}")
    if evaluation is None:
        evaluation = evaluate(model, images, labels)
    confusion = evaluation.confusion
    x = images[digit : digit + 1]
    outputs = layer_outputs(model, x)
    c1 = outputs["c1_tanh" if "c1_tanh" in outputs else "c1"][0]
    c3 = outputs["c3_tanh" if "c3_tanh" in outputs else "c3"][0]
    predicted = int(outputs["output"][0].argmax())
    filters = _host(model["c1"].weight.data)[:, 0]  # (6, 5, 5)

    fig = Figure(figsize=(13, 10.5), layout="constrained")
    if title:
        fig.suptitle(title, fontsize=14, fontweight="bold")
    top, bottom = cast(Any, fig.subfigures(2, 1, height_ratios=[1.25, 1]))
    ax_loss, ax_acc, ax_conf = top.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.15]})
    _curves(ax_loss, ax_acc, history)
    _confusion(ax_conf, confusion, evaluation.accuracy, PowerNorm)
    _maps(bottom, _host(x)[0, 0], int(_host(labels)[digit]), predicted, filters, c1, c3)
    with atomic_write(out, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    return evaluation


def _curves(ax_loss: Any, ax_acc: Any, history: Optional[Sequence[Dict[str, Any]]]) -> None:
    if not history:
        for ax in (ax_loss, ax_acc):
            ax.text(
                0.5,
                0.5,
                "no training history\n(a model saved without fit's checkpoint)",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="0.4",
            )
            ax.set_xticks([])
            ax.set_yticks([])
        ax_loss.set_title("training loss")
        ax_acc.set_title("accuracy")
        return
    epochs = [h["epoch"] for h in history]
    loss = [h["train_loss"] for h in history]
    train = [100 * h["train_accuracy"] for h in history]
    test = [100 * h["test_accuracy"] for h in history]
    # Big markers and the last value written beside its point: after one epoch each curve is a
    # single dot, which must still read at a glance.
    ax_loss.plot(epochs, loss, "o-", color="tab:red", markersize=7)
    _label_last(ax_loss, epochs, loss, "{:.4f}", "tab:red")
    ax_loss.set_title("training loss (cross-entropy)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("mean loss over the epoch")
    ax_acc.plot(
        epochs, train, "o-", label="train (during the epoch)", color="tab:blue", markersize=7
    )
    ax_acc.plot(epochs, test, "s-", label="test (after the epoch)", color="tab:green", markersize=7)
    _label_last(ax_acc, epochs, train, "{:.2f}%", "tab:blue")
    _label_last(ax_acc, epochs, test, "{:.2f}%", "tab:green")
    ax_acc.set_title(f"accuracy (last test: {test[-1]:.2f}%)")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("%")
    # Below the axes, never over the data (inside, it hid the first epoch's train point).
    ax_acc.legend(loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=2, frameon=False)
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.set_xticks(epochs if len(epochs) <= 12 else ax.get_xticks())
        # Room on the right for the last point's label.
        ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5 + 0.15 * (epochs[-1] - epochs[0] + 1))
        ax.margins(y=0.15)


def _label_last(ax: Any, xs: Sequence[float], ys: Sequence[float], fmt: str, color: str) -> None:
    """Write the curve's last value just right of its last point."""
    ax.annotate(
        fmt.format(ys[-1]),
        (xs[-1], ys[-1]),
        xytext=(8, 0),
        textcoords="offset points",
        va="center",
        color=color,
        fontsize=9,
    )


def _confusion(ax: Any, confusion: np.ndarray, accuracy: float, PowerNorm: Any) -> None:
    k = confusion.shape[0]
    rows = confusion.sum(axis=1, keepdims=True)
    rate = confusion / np.maximum(rows, 1)
    # A low gamma makes the few errors visible next to the ~99% diagonal.
    image = ax.imshow(rate, cmap="Blues", norm=PowerNorm(gamma=0.35, vmin=0, vmax=1))
    bar = ax.figure.colorbar(image, ax=ax, shrink=0.8, pad=0.02)
    bar.set_label("share of the true digit's images")
    for i in range(k):
        for j in range(k):
            if confusion[i, j]:
                ax.text(
                    j,
                    i,
                    str(int(confusion[i, j])),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if rate[i, j] > 0.5 else "black",
                )
    errors = int(confusion.sum() - np.trace(confusion))
    ax.set_title(
        f"confusion matrix on the test set\n{100 * accuracy:.2f}% correct, {errors} "
        f"errors in {int(confusion.sum()):,} images"
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))


def _maps(
    fig: Any,
    digit: np.ndarray,
    label: int,
    predicted: int,
    filters: np.ndarray,
    c1: np.ndarray,
    c3: np.ndarray,
) -> None:
    left, middle, right = cast(Any, fig.subfigures(1, 3, width_ratios=[1, 3.9, 2.8]))
    ax = left.subplots()
    ax.imshow(digit, cmap="gray_r")
    ax.set_title(f"test digit: {label}\npredicted: {predicted}")
    ax.axis("off")

    upper, lower = cast(Any, middle.subfigures(2, 1))
    # One colour scale per row, with its colour bar: the filters on a scale symmetric about 0,
    # each layer's feature maps on the range of all its maps, so that they compare.
    bound = float(np.abs(filters).max()) or 1.0
    _row(upper, filters, "RdBu_r", -bound, bound, "weight")
    upper.suptitle("C1: the six learned 5x5 filters (red +, blue -)", fontsize=11)
    _row(lower, c1, "magma", *_range(c1), "activation")
    lower.suptitle(f"C1's feature maps of the digit ({c1.shape[1]}x{c1.shape[2]})", fontsize=11)

    cols = 4
    axes = right.subplots(int(np.ceil(len(c3) / cols)), cols)
    low, high = _range(c3)
    for i, a in enumerate(axes.flat):
        if i < len(c3):
            image = a.imshow(c3[i], cmap="magma", vmin=low, vmax=high)
        a.axis("off")
    right.colorbar(image, ax=axes, shrink=0.6, pad=0.03).set_label("activation")
    right.suptitle(f"C3's {len(c3)} feature maps ({c3.shape[1]}x{c3.shape[2]})", fontsize=11)


def _range(maps: np.ndarray) -> "tuple[float, float]":
    """(min, max) of all the maps, widened when they are all one value (imshow needs a span)."""
    low, high = float(maps.min()), float(maps.max())
    return (low, high) if high > low else (low - 0.5, high + 0.5)


def _row(fig: Any, maps: np.ndarray, cmap: str, low: float, high: float, label: str) -> None:
    """The maps side by side, numbered, on one colour scale with its colour bar at the right."""
    axes = fig.subplots(1, len(maps))
    for i, a in enumerate(axes):
        image = a.imshow(maps[i], cmap=cmap, vmin=low, vmax=high)
        a.set_title(f"{i}", fontsize=9)
        a.axis("off")
    fig.colorbar(image, ax=axes, shrink=0.8, pad=0.02).set_label(label)


def history_from_entries(entries: Dict[str, np.ndarray]) -> List[Dict[str, Any]]:
    """The history stored in a training checkpoint's entries (empty for a ``save()`` file)."""
    import json

    return json.loads(str(entries["history"])) if "history" in entries else []


def default_title(model: LeNet5, history: Sequence[Dict[str, Any]]) -> str:
    """'LeNet-5 (relu, max pooling), N epochs' for the report's heading."""
    epochs = f", {len(history)} epoch{'s' * (len(history) != 1)}" if history else ""
    return (
        f"LeNet-5 ({getattr(model, 'activation', '?')}, "
        f"{getattr(model, 'pooling', '?')} pooling){epochs}, trained with fastconv"
    )
