"""LeNet-5 on MNIST with fastconv: the model, a trainer with resumable checkpoints, and a CLI.

    >>> from fastconv.datasets import mnist
    >>> from fastconv.lenet import LeNet5, fit, evaluate
    >>> data = mnist("data/mnist", padding=2)                       # doctest: +SKIP
    >>> model = LeNet5(seed=0)                                      # ReLU + max pooling
    >>> history = fit(model, data, epochs=10, threads=2, save="lenet.npz")   # doctest: +SKIP
    >>> evaluate(model, data.test_images, data.test_labels).accuracy         # doctest: +SKIP

The command line: ``fastconv-lenet train --data DIR ...`` / ``python -m fastconv.lenet``.
"""

from .model import LeNet5
from .train import (
    DEFAULT_LR,
    DEFAULT_LR_DECAY,
    Evaluation,
    TrainingInterrupted,
    evaluate,
    fit,
    load_model,
)

__all__ = [
    "LeNet5",
    "fit",
    "evaluate",
    "Evaluation",
    "TrainingInterrupted",
    "load_model",
    "DEFAULT_LR",
    "DEFAULT_LR_DECAY",
]
