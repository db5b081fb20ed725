"""Adam with bias correction and L2 weight decay, as ``torch.optim.Adam``."""

import math

from ..parameter import array_module
from ._base import Optimizer, _check_nonnegative


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction and L2 weight decay, as ``torch.optim.Adam``.

    For each parameter ``p`` with gradient ``g``, at its step ``t = 1, 2, ...``::

        g = g + weight_decay * p                 # L2 penalty (not AdamW)
        m = m + (1 - beta1) * (g - m)            # = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    params : iterable of Parameter
    lr : float > 0, default 1e-3
    betas : (float, float), each in [0, 1), default (0.9, 0.999)
    eps : float >= 0, default 1e-8
    weight_decay : float >= 0, default 0

    ``p.grad`` is only read, never modified. Step counts are per parameter (a
    parameter whose grad is None is not stepped), as in PyTorch.
    """

    _HYPER = (("beta1", float), ("beta2", float), ("eps", float), ("weight_decay", float))
    _BUFFERS = ("exp_avg", "exp_avg_sq")
    _PER_PARAM_STEP = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        self._check_hyper(beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)
        super().__init__(params, lr)
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)

    @property
    def betas(self):
        """(float, float): ``(beta1, beta2)``."""
        return (self.beta1, self.beta2)

    @staticmethod
    def _check_hyper(beta1, beta2, eps, weight_decay):
        for name, b in (("betas[0]", beta1), ("betas[1]", beta2)):
            b = _check_nonnegative(name, b)
            if not b < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {b!r}")
        _check_nonnegative("eps", eps)
        _check_nonnegative("weight_decay", weight_decay)

    def _validate_param_state(self, i, st):
        if st["step"] < 0:
            raise ValueError(f"parameter {self._label(i)}: negative step count {st['step']}")
        if st["step"] > 0 and not all(b in st for b in self._BUFFERS):
            raise ValueError(
                f"parameter {self._label(i)}: state_dict has step {st['step']} but lacks "
                "exp_avg/exp_avg_sq"
            )

    def step(self):
        """Apply one update to every parameter that has a gradient."""
        lr = self._lr
        beta1, beta2 = self.beta1, self.beta2
        eps = self.eps
        wd = self.weight_decay
        for i, p in enumerate(self.params):
            g = self._grad_of(i, p)
            if g is None:
                continue
            d = p.data
            xp = array_module(d)
            st = self._state[i]
            t = st.get("step", 0) + 1
            if t == 1 or "exp_avg" not in st:
                st["exp_avg"] = xp.zeros_like(d)
                st["exp_avg_sq"] = xp.zeros_like(d)
            st["step"] = t
            m = st["exp_avg"]
            v = st["exp_avg_sq"]
            tmp2 = self._scratch(i, d, 1)
            if wd != 0.0:
                tmp = self._scratch(i, d)
                xp.multiply(d, wd, out=tmp)
                xp.add(g, tmp, out=tmp)
                g = tmp
            # m.lerp_(g, 1 - beta1)
            xp.subtract(g, m, out=tmp2)
            xp.multiply(tmp2, 1.0 - beta1, out=tmp2)
            xp.add(m, tmp2, out=m)
            # v = beta2 * v + (1 - beta2) * g * g
            xp.multiply(v, beta2, out=v)
            xp.multiply(g, g, out=tmp2)
            xp.multiply(tmp2, 1.0 - beta2, out=tmp2)
            xp.add(v, tmp2, out=v)
            step_size = lr / (1.0 - beta1**t)
            bc2_sqrt = math.sqrt(1.0 - beta2**t)
            # denom = sqrt(v) / bc2_sqrt + eps; p -= step_size * m / denom
            xp.sqrt(v, out=tmp2)
            xp.divide(tmp2, bc2_sqrt, out=tmp2)
            xp.add(tmp2, eps, out=tmp2)
            xp.divide(m, tmp2, out=tmp2)
            xp.multiply(tmp2, -step_size, out=tmp2)
            xp.add(d, tmp2, out=d)
        self.step_count += 1
