"""Trainable parameters: an array and its gradient.

A :class:`Parameter` is the unit the optimisers in :mod:`fastconv.optim` work on.
It holds ``data`` (a NumPy or CuPy array) and ``grad`` (an array of the same shape
and dtype on the same device). Layers write (or accumulate) their gradients into
``grad``; optimisers update ``data`` in place, so ``data`` must not be rebound to a
new array once an optimiser holds the parameter (copy into it with
``p.data[...] = new`` instead).

This module is pure Python + NumPy; CuPy is only ever reached through fastconv._compat.
"""

from typing import Any, Optional, Tuple

import numpy as np

from ._compat import array_module
from ._typing import Array

__all__ = ["Parameter", "array_module"]


class Parameter:
    """A trainable array and its gradient.

    Parameters
    ----------
    data : ndarray (numpy or cupy), any shape S
        The values. Anything that is not a CuPy array goes through
        ``np.asarray`` (no copy when it already is an ndarray).
    name : str, optional
        Used in ``repr`` and error messages (e.g. ``"conv1.weight"``).

    Attributes
    ----------
    data : ndarray, shape S
    grad : ndarray, shape S, same dtype and device as ``data``
        Zeros after construction and after :meth:`zero_grad`. It may be set to
        ``None`` to mark "no gradient": optimisers skip such parameters, and
        :meth:`zero_grad` allocates it again.
    name : str or None
    """

    __slots__ = ("data", "grad", "name")
    data: Array
    grad: Optional[Array]
    name: Optional[str]

    def __init__(self, data: Any, name: Optional[str] = None) -> None:
        if not type(data).__module__.startswith("cupy"):
            data = np.asarray(data)
        self.data = data
        self.grad = array_module(data).zeros_like(data)
        self.name = name

    @property
    def shape(self) -> Tuple[int, ...]:
        """tuple of int: shape of ``data``."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        """dtype of ``data``."""
        return self.data.dtype

    @property
    def size(self) -> int:
        """int: number of elements of ``data``."""
        return self.data.size

    def zero_grad(self) -> None:
        """Fill ``grad`` with zeros in place (allocate it when it is None or stale).

        Reuses the existing buffer when it still matches ``data`` in shape, dtype
        and array module, so calling this every batch allocates nothing.
        """
        g = self.grad
        d = self.data
        if g is not None and type(g) is type(d) and g.shape == d.shape and g.dtype == d.dtype:
            g[...] = 0
        else:
            self.grad = array_module(d).zeros_like(d)

    def __repr__(self) -> str:
        mod = "cupy" if type(self.data).__module__.startswith("cupy") else "numpy"
        name = "" if self.name is None else f"{self.name!r}, "
        return f"Parameter({name}shape={tuple(self.shape)}, dtype={self.dtype}, {mod})"
