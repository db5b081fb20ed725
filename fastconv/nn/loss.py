"""Losses: SoftmaxCrossEntropy (the mean cross-entropy of softmax(logits) against integer
labels) and CrossEntropyLoss (torch's options: class weights, ignore_index, reduction, label
smoothing, probability targets, any extra axes)."""

from typing import Any, Optional, Tuple

import numpy as np

from .. import _compat
from .. import functional as F
from .._typing import Array
from .._validation import as_fraction, as_int, as_reduction
from ..parameter import array_module
from .layer import Layer

__all__ = ["SoftmaxCrossEntropy", "CrossEntropyLoss"]


class SoftmaxCrossEntropy(Layer):
    """Softmax + negative log-likelihood, averaged over the batch, computed stably.

    ``forward(logits, labels)`` returns the loss; ``backward()`` the gradient of that loss with
    respect to the logits, ``(softmax(logits) - onehot(labels)) / N``.

    Shapes
    ------
    logits (N, K), labels (N,) integers in [0, K) -> loss: a 0-d array (NumPy or CuPy; take
    ``float(loss)`` for a Python number). The forward caches the log-probabilities (N, K).
    """

    _CACHE = "_cache"
    _cache: Optional[Tuple[Array, Array]]  # (log_probs, labels)

    # A loss takes (logits, labels), not Layer.forward's one input.
    def forward(self, logits: Array, labels: Array) -> Array:  # type: ignore[override]
        """logits (N, K), labels (N,) -> mean loss (0-d array)."""
        loss, log_probs = F.softmax_cross_entropy(logits, labels)
        # Cached in eval mode too: the loss has no mode-dependent behaviour, and evaluating a
        # loss and then asking for its gradient is a common pattern.
        self._cache = (log_probs, labels)
        return loss

    def backward(self, grad: Array = 1.0, *, input_grad: bool = True) -> Optional[Array]:
        """grad: d(final loss)/d(this loss), a scalar (default 1) -> grad_logits (N, K)."""
        log_probs, labels = self._cached(self._cache)
        if not input_grad:
            return None
        return F.softmax_cross_entropy_backward(log_probs, labels, float(grad))


class CrossEntropyLoss(Layer):
    """torch.nn.CrossEntropyLoss: :func:`fastconv.functional.cross_entropy` as a layer.

    Parameters
    ----------
    weight : ndarray (C,) or None
        A weight per class (kept as given, not a parameter; moved to the input's device, NumPy
        or CuPy, on first use there).
    ignore_index : int, default -100
    reduction : 'mean' (default), 'sum' or 'none'
    label_smoothing : float in [0, 1], default 0

    Everything after ``weight`` is keyword-only: torch's constructor puts the deprecated
    ``size_average`` second, so a verbatim positional port fails loudly.

    ``forward(input, target)`` returns the loss; ``backward(grad=1.0)`` the gradient with respect
    to the input (grad: a scalar for 'mean' and 'sum', an array of the loss's shape for 'none').

    Shapes
    ------
    input (N, C), (N, C, d1, ...) or (C,); target (N,), (N, d1, ...) or () class indices, or
    probabilities of input's shape -> loss 0-d, or (N, d1, ...) with reduction='none'. The
    forward caches its input and target.
    """

    _CACHE = "_cache"
    _cache: Optional[Tuple[Array, Array]]  # (input, target)

    def __init__(
        self,
        weight: Optional[Array] = None,
        *,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.weight = weight
        self.ignore_index = as_int(ignore_index, "ignore_index")
        self.reduction = as_reduction(reduction)
        self.label_smoothing = as_fraction(label_smoothing, "label_smoothing")

    def _options(self, input: Array) -> Any:
        weight = self.weight
        if weight is not None and hasattr(input, "dtype"):
            xp = array_module(input)
            if array_module(weight) is not xp:  # (a Dask input computes with NumPy weights)
                weight = _compat.to_numpy(weight) if xp is np else xp.asarray(weight)
                self.weight = weight
        return dict(
            weight=weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )

    # A loss takes (input, target), not Layer.forward's one input.
    def forward(self, input: Array, target: Array) -> Array:  # type: ignore[override]
        """input (N, C, ...) logits, target -> the loss (0-d, or per sample for 'none')."""
        loss = F.cross_entropy(input, target, **self._options(input))
        self._cache = (input, target)  # in eval mode too, as SoftmaxCrossEntropy's
        return loss

    def backward(self, grad: Any = 1.0, *, input_grad: bool = True) -> Optional[Array]:
        """grad: d(final loss)/d(this loss) (default 1) -> grad wrt input, of input's shape."""
        input, target = self._cached(self._cache)
        if not input_grad:
            return None
        return F.cross_entropy_backward(grad, input, target, **self._options(input))

    def extra_repr(self) -> str:
        parts = [] if self.weight is None else [f"weight=<{len(self.weight)} classes>"]
        if self.ignore_index != -100:
            parts.append(f"ignore_index={self.ignore_index}")
        if self.reduction != "mean":
            parts.append(f"reduction={self.reduction!r}")
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        return ", ".join(parts)
