"""Cross-entropy with torch's options, row by row over log-probabilities: the array module's
operations (NumPy or CuPy, passed as `xp`), so that Eager runs it on either device and Dask on
its row blocks. The log-probabilities come from the kernel backends' stable log-softmax.

Rows are samples, (M, C) log_probs; `target` is (M,) int64 class indices or (M, C) class
probabilities of log_probs' dtype; `weight` (C,) or None; all C-contiguous, one dtype.

Every case is one formula. With q_i the row's weighted target distribution,

    class index t:  q_i = (1 - eps) w_t onehot(t) + (eps / C) w   (0 when t == ignore_index)
    probabilities:  q_i = ((1 - eps) p_i + eps / C) * w

(w = 1 without weights), the loss is -sum_c q_ic log_probs_ic and its gradient with respect to
the logits softmax_i * sum(q_i) - q_i (torch's label smoothing and class weights, checked
against torch in tests/test_cross_entropy.py). The class-index loss reads log_probs only at the
target (and the whole row only when eps > 0), so a -inf log-probability elsewhere stays out of it,
as in torch. 'mean' divides by the sum of the target weights of the rows not ignored (class
indices) or by M (probabilities), torch's denominators.
"""

__all__ = ["losses", "grad", "denominator", "target_weights", "out_of_range"]


def target_weights(xp, target, weight, ignore_index, C, dtype):
    """(valid, safe_target, w_t) of class-index targets: valid = not ignored; safe_target the
    target where it lies in [0, C), else 0 (so gathers stay in bounds); w_t the target's class
    weight (1 without weights), 0 where ignored."""
    valid = target != ignore_index
    safe = xp.where((target >= 0) & (target < C), target, 0)
    if weight is None:
        return valid, safe, valid.astype(dtype)
    return valid, safe, xp.where(valid, weight[safe], 0).astype(dtype, copy=False)


def out_of_range(target, ignore_index, C):
    """Rows whose class index is neither in [0, C) nor ignore_index (bool (M,))."""
    return (target != ignore_index) & ((target < 0) | (target >= C))


def _distribution(target, weight, label_smoothing, C):
    """q of probability targets: smoothed, then weighted."""
    q = target if label_smoothing == 0 else target * (1 - label_smoothing) + label_smoothing / C
    return q if weight is None else q * weight


def losses(xp, log_probs, target, weight, ignore_index, label_smoothing):
    """Per-row losses (M,). Class indices out of range (see out_of_range) give garbage: the
    caller raises or marks those rows."""
    M, C = log_probs.shape
    eps = label_smoothing
    if target.ndim == 2:
        return -(log_probs * _distribution(target, weight, eps, C)).sum(axis=1)
    valid, safe, w_t = target_weights(xp, target, weight, ignore_index, C, log_probs.dtype)
    picked = xp.take_along_axis(log_probs, safe[:, None], axis=1)[:, 0]
    # where, not a product with w_t = 0: an ignored row's picked log-probability may be -inf
    loss = xp.where(valid, -(w_t * picked), 0)
    if eps:
        smooth = log_probs if weight is None else log_probs * weight
        loss = (1 - eps) * loss + (eps / C) * xp.where(valid, -smooth.sum(axis=1), 0)
    return loss


def denominator(xp, target, weight, ignore_index, C, dtype):
    """What 'mean' divides the summed losses by: the target weights of the rows not ignored
    (their count without weights) for class indices, the rows for probabilities."""
    if target.ndim == 2:
        return target.shape[0]
    return target_weights(xp, target, weight, ignore_index, C, dtype)[2].sum()


def grad(xp, log_probs, target, weight, ignore_index, label_smoothing, scale):
    """Gradient of the per-row losses with respect to the logits, each row times its `scale`
    (a float or 0-d array for all rows, or (M,) per row): (M, C) of log_probs' dtype. Class
    indices out of range as for losses."""
    M, C = log_probs.shape
    eps = label_smoothing
    dtype = log_probs.dtype
    rows = xp.zeros(M, dtype) + scale  # the per-row multiplier, (M,)
    g = xp.exp(log_probs)  # softmax
    if target.ndim == 2:
        q = _distribution(target, weight, eps, C)
        g *= (q.sum(axis=1) * rows)[:, None]
        g -= q * rows[:, None]
        return g
    valid, safe, w_t = target_weights(xp, target, weight, ignore_index, C, dtype)
    # ignored rows get zeros whatever their multiplier, NaN included ('mean' over no counted
    # target divides by 0), as torch's
    rows = xp.where(valid, rows, 0)
    total = w_t  # sum(q_i): (1 - eps) w_t + (eps / C) sum(w), on the rows not ignored
    if eps:
        w_sum = C if weight is None else weight.sum()
        total = (1 - eps) * w_t + (eps / C) * w_sum * valid
    g *= (total * rows)[:, None]
    g[xp.arange(M), safe] -= (1 - eps) * w_t * rows
    if eps:
        smooth = (eps / C) * rows[:, None]
        g -= smooth if weight is None else smooth * weight
    return g
