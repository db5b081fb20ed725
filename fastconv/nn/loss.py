"""SoftmaxCrossEntropy: the mean cross-entropy of softmax(logits) against integer labels."""

from typing import Optional, Tuple

from .. import functional as F
from .._typing import Array
from .layer import Layer

__all__ = ["SoftmaxCrossEntropy"]


class SoftmaxCrossEntropy(Layer):
    """Softmax + negative log-likelihood, averaged over the batch, computed stably.

    ``forward(logits, labels)`` returns the loss; ``backward()`` the gradient of that loss with
    respect to the logits, ``(softmax(logits) - onehot(labels)) / N``.

    Shapes
    ------
    logits (N, K), labels (N,) integers in [0, K) -> loss: a 0-d array (NumPy or CuPy; take
    ``float(loss)`` for a Python number). The forward caches the log-probabilities (N, K).
    """

    _cache: Optional[Tuple[Array, Array]]  # (log_probs, labels)

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def _clear_cache(self) -> None:
        self._cache = None

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
