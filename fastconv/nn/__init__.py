"""Layers with forward and backward over :mod:`fastconv.functional`, for NumPy or CuPy arrays.

    >>> import numpy as np
    >>> from fastconv import nn
    >>> model = nn.Sequential(nn.Conv2D(1, 4, 3, activation="relu", rng=0), nn.Flatten(),
    ...                       nn.Linear(4 * 6 * 6, 10, rng=1))
    >>> x = np.zeros((2, 1, 8, 8), np.float32)
    >>> loss_fn = nn.SoftmaxCrossEntropy()
    >>> loss = loss_fn(model(x), np.array([3, 7]))
    >>> _ = model.backward(loss_fn.backward())     # accumulates into each Parameter.grad
    >>> sorted(model.named_parameters())
    ['0.bias', '0.weight', '2.bias', '2.weight']

See :class:`Layer` for what every layer offers (parameters, train/eval, state_dict, save/load,
to(device)) and :mod:`fastconv.gradcheck` to check a layer's backward numerically. State dicts
have PyTorch's names and layouts; :func:`save_weights` / :func:`load_weights` write and read them
as .npz or .safetensors files (never pickled), so weights move between fastconv and PyTorch.
"""

from .activation import ReLU, Sigmoid, Tanh
from .adaptive_pooling import AdaptiveAvgPool2D, AdaptiveMaxPool2D, GlobalAvgPool2D
from .container import Sequential
from .conv import Conv2D
from .conv1d import Conv1D
from .conv_transpose import ConvTranspose2D
from .dropout import Dropout
from .init import INITS
from .layer import Layer
from .linear import Linear
from .loss import CrossEntropyLoss, SoftmaxCrossEntropy
from .pooling import AvgPool2D, MaxPool2D
from .reshape import Flatten
from .separable import DepthwiseConv2D, SeparableConv2D
from .summary import ModelSummary, summary
from .weights import load_weights, save_weights

__all__ = [
    "Layer",
    "Conv2D",
    "Linear",
    "MaxPool2D",
    "AvgPool2D",
    "ReLU",
    "Tanh",
    "Sigmoid",
    "Flatten",
    "Dropout",
    "SoftmaxCrossEntropy",
    "CrossEntropyLoss",
    "Sequential",
    "INITS",
    "Conv1D",
    "ConvTranspose2D",
    "DepthwiseConv2D",
    "SeparableConv2D",
    "GlobalAvgPool2D",
    "AdaptiveAvgPool2D",
    "AdaptiveMaxPool2D",
    "summary",
    "ModelSummary",
    "save_weights",
    "load_weights",
]
