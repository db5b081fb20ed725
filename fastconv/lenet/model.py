"""LeNet-5 (LeCun et al., 1998) for 32x32 single-channel images, as a Sequential of nn layers."""

from typing import Any, Optional, Union

import numpy as np

from .. import nn
from ..nn.init import as_generator

__all__ = ["LeNet5", "ACTIVATIONS", "POOLINGS"]

ACTIVATIONS = ("relu", "tanh")
POOLINGS = ("max", "avg")


class LeNet5(nn.Sequential):
    """LeNet-5: C1 6@5x5, S2 2x2 pool, C3 16@5x5, S4 2x2 pool, C5 120@5x5, F6 84, output 10.

    The layers carry the paper's names, so the parameters are ``c1.weight``, ``c1.bias``, ...,
    ``f6.weight``, ``output.bias``. With ReLU the activation is fused into C1, C3, C5 and F6;
    with tanh a Tanh layer (``c1_tanh``, ...) follows each. C3 connects to all six S2 maps (the
    paper's sparse connection table is not reproduced). The output layer gives logits: train
    with :class:`fastconv.nn.SoftmaxCrossEntropy`.

    Parameters
    ----------
    activation : 'relu' (default) or 'tanh'
        ReLU layers start from He uniform weights, tanh layers from Glorot uniform ones.
    pooling : 'max' (default) or 'avg'
    rng : None, int or numpy.random.Generator
        Source of the initial weights; an int seeds it (same seed, same weights).
    seed : int, optional
        Alias of an int ``rng``.
    dtype : float dtype, default float32
    dropout : float in [0, 1), default 0
        When > 0, a :class:`fastconv.nn.Dropout` of this rate after C5 (``c5_dropout``) and after
        F6 (``f6_dropout``), the fully connected part where LeNet-5 holds most of its
        parameters; their generators are spawned from ``rng`` (the weights do not change).

    Shapes
    ------
    x (N, 1, 32, 32) (MNIST's 28x28 padded by 2: ``fastconv.datasets.mnist(root, padding=2)``)
    -> logits (N, 10).
    """

    def __init__(
        self,
        activation: str = "relu",
        pooling: str = "max",
        rng: Union[None, int, np.random.Generator] = None,
        *,
        seed: Optional[int] = None,
        dtype: Any = np.float32,
        dropout: float = 0.0,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if seed is not None:
            if rng is not None:
                raise ValueError("pass either rng or seed, not both")
            rng = seed
        if isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a rate in [0, 1), got {dropout!r}")
        rng = as_generator(rng)
        fused = "relu" if activation == "relu" else None
        Pool = nn.MaxPool2D if pooling == "max" else nn.AvgPool2D

        layers = {}

        def add(name, layer, with_activation=False, with_dropout=False):
            layers[name] = layer
            if with_activation and activation == "tanh":
                layers[f"{name}_tanh"] = nn.Tanh()
            if with_dropout and dropout > 0:
                layers[f"{name}_dropout"] = nn.Dropout(dropout, rng=rng.spawn(1)[0])

        add("c1", nn.Conv2D(1, 6, 5, activation=fused, rng=rng, dtype=dtype), True)
        add("s2", Pool(2))
        add("c3", nn.Conv2D(6, 16, 5, activation=fused, rng=rng, dtype=dtype), True)
        add("s4", Pool(2))
        add("c5", nn.Conv2D(16, 120, 5, activation=fused, rng=rng, dtype=dtype), True, True)
        add("flatten", nn.Flatten())
        add("f6", nn.Linear(120, 84, activation=fused, rng=rng, dtype=dtype), True, True)
        add("output", nn.Linear(84, 10, rng=rng, dtype=dtype))
        super().__init__(layers)
        self.activation = activation
        self.pooling = pooling
        self.dropout = float(dropout)

    def extra_repr(self) -> str:
        extra = f", dropout={self.dropout}" if self.dropout else ""
        return f"activation={self.activation!r}, pooling={self.pooling!r}{extra}"

    def predict(self, x: Any) -> Any:
        """Class predictions (N,) int64 for images x (N, 1, 32, 32): argmax of the logits."""
        logits = self.forward(x)
        return logits.argmax(axis=1)
