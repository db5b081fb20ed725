"""Adam with bias correction and L2 weight decay, as ``torch.optim.Adam``."""

from typing import Any, Dict, Iterable, List, Tuple

from ..parameter import Parameter, array_module
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

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
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
    def betas(self) -> Tuple[float, float]:
        """(float, float): ``(beta1, beta2)``."""
        return (self.beta1, self.beta2)

    @staticmethod
    def _check_hyper(beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
        for name, b in (("betas[0]", beta1), ("betas[1]", beta2)):
            b = _check_nonnegative(name, b)
            if not b < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {b!r}")
        _check_nonnegative("eps", eps)
        _check_nonnegative("weight_decay", weight_decay)

    def _validate_param_state(self, i: int, st: Dict[str, Any]) -> None:
        if st["step"] < 0:
            raise ValueError(f"parameter {self._label(i)}: negative step count {st['step']}")
        if st["step"] > 0 and not all(b in st for b in self._BUFFERS):
            raise ValueError(
                f"parameter {self._label(i)}: state_dict has step {st['step']} but lacks "
                "exp_avg/exp_avg_sq"
            )

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient (one fused pass over each, all
        of a dtype in one call spread over the threads, on the CPU; one multi-tensor kernel
        launch for all on the GPU)."""
        # data, grad, exp_avg, exp_avg_sq, step
        columns: Tuple[List[Any], ...] = ([], [], [], [], [])
        for i, p in enumerate(self.params):
            g = self._grad_of(i, p)
            if g is None:
                continue
            d, g = self._update_arrays(i, p, g)
            st = self._state[i]
            t = st.get("step", 0) + 1
            if t == 1 or "exp_avg" not in st:
                xp = array_module(d)
                st["exp_avg"] = xp.zeros_like(d)
                st["exp_avg_sq"] = xp.zeros_like(d)
            st["step"] = t
            for column, value in zip(columns, (d, g, st["exp_avg"], st["exp_avg_sq"], t)):
                column.append(value)
        hyper = (self._lr, self.beta1, self.beta2, self.eps, self.weight_decay)
        self._run_update("adam_update", columns, *hyper)
        self.step_count += 1
