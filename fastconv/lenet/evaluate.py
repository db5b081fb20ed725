"""Accuracy and confusion matrix of a classifier over a labelled set."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import _compat, nn


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
