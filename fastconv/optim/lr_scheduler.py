"""Learning-rate schedules: StepLR, as ``torch.optim.lr_scheduler.StepLR``."""

import numbers
from typing import Any, Dict, Mapping

from ._base import Optimizer, _check_positive, _scalar


class StepLR:
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs (``torch.optim.lr_scheduler.StepLR``).

    ``lr(epoch) = base_lr * gamma ** (epoch // step_size)``, where ``base_lr`` is the
    optimiser's lr when the scheduler is built. Call :meth:`step` once at the end of
    each epoch; it increments ``last_epoch`` (0 after construction) and sets
    ``optimizer.lr``. The closed form is used, so no rounding drift accumulates.

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int >= 1
    gamma : float > 0, default 0.1
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self._check(step_size, gamma)
        self.optimizer = optimizer
        self.step_size = int(step_size)
        self.gamma = float(gamma)
        self.base_lr = float(optimizer.lr)
        self.last_epoch = 0

    @staticmethod
    def _check(step_size: int, gamma: float) -> None:
        if (
            isinstance(step_size, bool)
            or not isinstance(step_size, numbers.Integral)
            or step_size < 1
        ):
            raise ValueError(f"step_size must be an int >= 1, got {step_size!r}")
        _check_positive("gamma", gamma)

    def get_lr(self) -> float:
        """float: the learning rate for epoch ``last_epoch``."""
        return self.base_lr * self.gamma ** (self.last_epoch // self.step_size)

    def step(self) -> None:
        """Advance one epoch and set the optimiser's lr for it."""
        self.last_epoch += 1
        self.optimizer.lr = self.get_lr()

    def state_dict(self) -> Dict[str, Any]:
        """A flat dict (``"scheduler"``, ``"step_size"``, ``"gamma"``, ``"base_lr"``, ``"last_epoch"``)."""
        return {
            "scheduler": type(self).__name__,
            "step_size": self.step_size,
            "gamma": self.gamma,
            "base_lr": self.base_lr,
            "last_epoch": self.last_epoch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (the optimiser's lr is restored by its own state)."""
        kind = _scalar(state, "scheduler", str)
        if kind != type(self).__name__:
            raise ValueError(f"state_dict is for a {kind} scheduler, not {type(self).__name__}")
        step_size = _scalar(state, "step_size", int)
        gamma = _scalar(state, "gamma", float)
        self._check(step_size, gamma)
        base_lr = _check_positive("base_lr", _scalar(state, "base_lr", float))
        last_epoch = _scalar(state, "last_epoch", int)
        if last_epoch < 0:
            raise ValueError(f"last_epoch must be >= 0, got {last_epoch}")
        self.step_size, self.gamma, self.base_lr, self.last_epoch = (
            step_size,
            gamma,
            base_lr,
            last_epoch,
        )

    def __repr__(self) -> str:
        return (
            f"StepLR(step_size={self.step_size}, gamma={self.gamma}, "
            f"base_lr={self.base_lr}, last_epoch={self.last_epoch})"
        )
