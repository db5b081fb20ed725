"""Dropout: zero each input with probability p while training (inverted scaling); eval: identity."""

import numbers
from typing import Any, Optional, Tuple

import numpy as np

from .._typing import Array, DTypeLike, RNGLike
from ..parameter import array_module
from .init import as_generator
from .layer import Layer

__all__ = ["Dropout"]


class Dropout(Layer):
    """Inverted dropout.

    In training mode each element is kept with probability ``1 - p`` and scaled by
    ``1 / (1 - p)`` (so the expected output equals the input); in eval mode the layer is the
    identity. The mask comes from the layer's own ``numpy.random.Generator`` (attribute ``rng``),
    so a seed makes it reproducible. On CuPy arrays the mask is drawn on the GPU by
    ``cupy.random`` from a seed taken from ``rng``, which keeps one source of randomness.

    Parameters
    ----------
    p : float in [0, 1], default 0.5
        Drop probability.
    rng : None, int or numpy.random.Generator

    Shapes
    ------
    x (any shape) -> y (same shape); the mask (same shape, x's dtype) is cached for backward.
    """

    _CACHE = "_mask"
    p: float
    rng: np.random.Generator
    _mask: Optional[Array]

    def __init__(self, p: float = 0.5, rng: RNGLike = None) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = as_generator(rng)

    def _uniform(self, xp: Any, shape: Tuple[int, ...], dtype: DTypeLike) -> Array:
        if xp is np:
            return self.rng.random(shape, dtype=dtype)
        seed = int(self.rng.integers(0, 2**63 - 1))
        return xp.random.default_rng(seed).random(shape, dtype=dtype)

    def forward(self, x: Array) -> Array:
        """x -> x * mask / (1 - p) in training mode, x in eval mode."""
        if not self.training:
            return x
        xp = array_module(x)
        dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
        mask = self._uniform(xp, x.shape, dtype)
        # keep where u >= p: P(keep) = 1 - p; the scale turns the boolean into the mask in place.
        scale = 0.0 if self.p >= 1.0 else 1.0 / (1.0 - self.p)
        mask = xp.multiply(mask >= self.p, scale, dtype=dtype)
        self._mask = mask
        return x * mask

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """grad -> grad * mask / (1 - p) (the mask of the last training-mode forward)."""
        mask = self._cached(self._mask)
        if not input_grad:
            return None
        return grad * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"
