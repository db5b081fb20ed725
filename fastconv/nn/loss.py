"""SoftmaxCrossEntropy: the mean cross-entropy of softmax(logits) against integer labels."""

from .. import functional as F
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

    def __init__(self):
        super().__init__()
        self._cache = None

    def _clear_cache(self):
        self._cache = None

    def forward(self, logits, labels):
        """logits (N, K), labels (N,) -> mean loss (0-d array)."""
        loss, log_probs = F.softmax_cross_entropy(logits, labels)
        # Cached in eval mode too: the loss has no mode-dependent behaviour, and evaluating a
        # loss and then asking for its gradient is a common pattern.
        self._cache = (log_probs, labels)
        return loss

    def backward(self, grad=1.0, *, input_grad=True):
        """grad: d(final loss)/d(this loss), a scalar (default 1) -> grad_logits (N, K)."""
        log_probs, labels = self._cached(self._cache)
        if not input_grad:
            return None
        return F.softmax_cross_entropy_backward(log_probs, labels, float(grad))
