"""SGD with optional (Nesterov) momentum, as ``torch.optim.SGD``."""

from typing import Any, Iterable, List, Tuple

import numpy as np

from ..parameter import Parameter, array_module
from ._base import Optimizer, _check_nonnegative


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    For each parameter ``p`` with gradient ``g`` (dampening 0)::

        g = g + weight_decay * p                # L2 penalty
        if momentum:
            b = g               (first step)    # b: the momentum buffer
            b = momentum * b + g  (later steps)
            g = g + momentum * b  if nesterov else  b
        p = p - lr * g

    Parameters
    ----------
    params : iterable of Parameter
    lr : float > 0
    momentum : float >= 0, default 0
    nesterov : bool, default False; needs ``momentum > 0``
    weight_decay : float >= 0, default 0

    ``p.grad`` is only read, never modified.
    """

    _HYPER = (("momentum", float), ("nesterov", bool), ("weight_decay", float))
    _BUFFERS = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        self._check_hyper(momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        super().__init__(params, lr)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)

    @staticmethod
    def _check_hyper(momentum: float, nesterov: bool, weight_decay: float) -> None:
        momentum = _check_nonnegative("momentum", momentum)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise ValueError(f"nesterov must be a bool, got {nesterov!r}")
        if nesterov and momentum <= 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        _check_nonnegative("weight_decay", weight_decay)

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient (one fused pass over each, all
        of a dtype in one call spread over the threads, on the CPU; one multi-tensor kernel
        launch for all on the GPU)."""
        # data, grad, momentum buffer (or None), first step
        columns: Tuple[List[Any], ...] = ([], [], [], [])
        for i, p in enumerate(self.params):
            g = self._grad_of(i, p)
            if g is None:
                continue
            d, g = self._update_arrays(i, p, g)
            buf, first = None, False
            if self.momentum != 0.0:
                st = self._state[i]
                buf = st.get("momentum_buffer")
                first = buf is None
                if first:
                    buf = st["momentum_buffer"] = array_module(d).empty_like(d)
            for column, value in zip(columns, (d, g, buf, first)):
                column.append(value)
        hyper = (self._lr, self.momentum, self.nesterov, self.weight_decay)
        self._run_update("sgd_update", columns, *hyper)
        self.step_count += 1
