"""Accuracy and confusion matrix of a classifier over a labelled set."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import _compat, nn
from .model import LeNet5


class Evaluation(NamedTuple):
    """accuracy: float in [0, 1]; confusion: (K, K) int64, [true class, predicted class]."""

    accuracy: float
    confusion: np.ndarray


def evaluate(model: nn.Layer, images: Any, labels: Any, batch_size: int = 500) -> Evaluation:
    """Accuracy and confusion matrix of ``model`` (eval mode, restored afterwards).

    images (N, 1, 32, 32), labels (N,) ints in [0, K) -> Evaluation(accuracy, confusion (K, K)).
    """
    was_training = model.training
    model.eval()
    try:
        predictions = []
        for start in range(0, len(labels), batch_size):
            logits = model(images[start : start + batch_size])
            predictions.append(_compat.to_numpy(logits.argmax(axis=1)))
        num_classes = logits.shape[1]
    finally:
        model.train(was_training)
    predicted = np.concatenate(predictions)
    truth = _compat.to_numpy(labels).astype(np.int64)
    confusion = np.bincount(truth * num_classes + predicted, minlength=num_classes**2)
    return Evaluation(
        float(np.mean(predicted == truth)), confusion.reshape(num_classes, num_classes)
    )


def evaluate_on_dask(
    model: LeNet5, images: Any, labels: Any, batch_size: int, scheduler: str, workers: int = 2
) -> Evaluation:
    """evaluate() on a Dask cluster: the model (in eval mode) is copied once to every worker,
    the images go out in chunks of `batch_size`, and fastconv predicts each chunk on a worker.
    `scheduler`: a distributed scheduler's address, or "local" for a LocalCluster of `workers`
    one-thread processes.

    Raises ImportError without distributed, OSError/TimeoutError when the scheduler cannot be
    reached."""
    import distributed

    if scheduler == "local":
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=None
        )
        client = distributed.Client(cluster)
    else:
        cluster, client = None, distributed.Client(scheduler, timeout="20s")
    was_training = model.training
    try:
        model.eval()
        # Scattered, not inlined in the task graph: inlined, the images and a copy of the weights
        # per chunk made a 43 MB graph for MNIST, and distributed warned about it in 5 lines.
        on_workers = client.scatter(model, broadcast=True)
        chunks = client.scatter(
            [images[start : start + batch_size] for start in range(0, len(labels), batch_size)]
        )
        predictions = client.gather(client.map(_predict, chunks, model=on_workers))
    finally:
        model.train(was_training)
        client.close()
        if cluster is not None:
            cluster.close()
    predicted = np.concatenate(predictions)
    truth = _compat.to_numpy(labels).astype(np.int64)
    K = int(max(predicted.max(initial=0), truth.max(initial=0))) + 1
    confusion = np.bincount(truth * K + predicted, minlength=K * K).reshape(K, K)
    return Evaluation(float(np.mean(predicted == truth)), confusion)


def _predict(images: Any, model: LeNet5) -> np.ndarray:
    """A Dask task: the model's class predictions (N,) for one chunk of images, on the host."""
    return _compat.to_numpy(model.predict(images))


def format_confusion(confusion: np.ndarray) -> str:
    """A text table of a (K, K) confusion matrix: rows true classes, columns predictions."""
    k = confusion.shape[0]
    width = max(5, len(str(int(confusion.max()))) + 1)
    lines = ["true\\pred" + "".join(f"{j:>{width}}" for j in range(k))]
    for i in range(k):
        lines.append(f"{i:>9}" + "".join(f"{int(c):>{width}}" for c in confusion[i]))
    return "\n".join(lines)
