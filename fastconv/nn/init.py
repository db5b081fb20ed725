"""Seeded weight initialisation: He (Kaiming) for ReLU layers, Glorot (Xavier) for tanh/sigmoid.

Every scheme draws from a ``numpy.random.Generator`` in float64 and casts to the layer's dtype,
so a seed gives the same weights whatever the dtype's precision allows. Biases start at zero.

=================  =========================================  ==================================
name               distribution                               keeps the variance of
=================  =========================================  ==================================
``he_uniform``     U(-b, b), b = sqrt(6 / fan_in)             ReLU activations (forward pass)
``he_normal``      N(0, 2 / fan_in)                           ReLU activations (forward pass)
``glorot_uniform`` U(-b, b), b = sqrt(6 / (fan_in + fan_out))   tanh/sigmoid/linear, both passes
``glorot_normal``  N(0, 2 / (fan_in + fan_out))               tanh/sigmoid/linear, both passes
=================  =========================================  ==================================

``kaiming_uniform``, ``kaiming_normal``, ``xavier_uniform`` and ``xavier_normal`` are aliases.
A conv layer's fan_in is ``C/groups * KH * KW`` and its fan_out ``F/groups * KH * KW``.
"""

import numbers
from typing import Optional, Sequence, Tuple

import numpy as np

from .._typing import Array, DTypeLike, RNGLike

__all__ = ["INITS", "default_init", "initial_weights", "as_generator"]

_ALIASES = {
    "kaiming_uniform": "he_uniform",
    "kaiming_normal": "he_normal",
    "xavier_uniform": "glorot_uniform",
    "xavier_normal": "glorot_normal",
}
INITS: Tuple[str, ...] = ("he_uniform", "he_normal", "glorot_uniform", "glorot_normal") + tuple(
    _ALIASES
)


def as_generator(rng: RNGLike) -> np.random.Generator:
    """A numpy.random.Generator from None (fresh OS entropy), an int seed or a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(
        f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}"
    )


def default_init(activation: Optional[str]) -> str:
    """He uniform for a fused ReLU, Glorot uniform otherwise (tanh, sigmoid or logits follow)."""
    return "he_uniform" if activation == "relu" else "glorot_uniform"


def check_init(init: str) -> str:
    """The canonical name of an initialisation scheme, or ValueError listing the choices."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    return _ALIASES.get(init, init)


def initial_weights(
    init: str,
    shape: Sequence[int],
    fan_in: float,
    fan_out: float,
    rng: np.random.Generator,
    dtype: DTypeLike,
) -> Array:
    """Weights of ``shape`` drawn by the scheme ``init`` (see the module table), as ``dtype``."""
    init = check_init(init)
    fan_in = max(int(fan_in), 1)
    fan_out = max(int(fan_out), 1)
    fan = fan_in if init.startswith("he") else (fan_in + fan_out) / 2.0
    # Uniform on (-b, b) has variance b^2 / 3: b = sqrt(3 * var), var = 2 / fan in both families.
    variance = 2.0 / fan if init.startswith("he") else 1.0 / fan
    if init.endswith("uniform"):
        bound = np.sqrt(3.0 * variance)
        values = rng.uniform(-bound, bound, size=shape)
    else:
        values = rng.normal(0.0, np.sqrt(variance), size=shape)
    return values.astype(dtype)
