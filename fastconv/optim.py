"""Optimisers (SGD, Adam) and a step learning-rate schedule, with PyTorch's semantics.

The optimisers work on any iterable of :class:`fastconv.parameter.Parameter`
(anything with ``.data`` and ``.grad`` arrays of one shape). Each :meth:`step`
reads ``p.grad`` and updates ``p.data`` **in place**; parameters whose ``grad``
is None are skipped (as in PyTorch). Only array arithmetic is used, through the
array's own module, so NumPy and CuPy parameters both work; build the optimiser
after the model's arrays are on their final device and never rebind ``p.data``
(the per-parameter state arrays are allocated like it on the first step).

Per-step cost matters (a LeNet epoch calls ``step`` ~1000 times), so updates run
as in-place ufunc calls with ``out=`` into per-parameter scratch buffers that are
allocated once: no array temporaries per step.

State
-----
``state_dict()`` returns a flat ``dict`` of NumPy arrays and Python scalars that
``np.savez`` can store as is (no pickling), and that ``load_state_dict`` accepts
back either as given or as loaded by ``np.load`` (0-d arrays). It holds the
optimiser's name, the hyper-parameters (``lr`` included), the step counts and the
per-parameter buffers under ``"param.<i>.<buffer>"``, plus ``"param.<i>.shape"``
so that a state saved for another model is refused with a ``ValueError`` naming
the parameter. Loading it into a fresh optimiser over the same parameters resumes
training bit for bit.
"""

import math
import numbers

import numpy as np

from .parameter import array_module

__all__ = ["Optimizer", "SGD", "Adam", "StepLR"]


def _to_numpy(a):
    """A NumPy copy of a NumPy or CuPy array (state must not alias live buffers)."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.array(a, copy=True)


def _scalar(d, key, kind):
    """Fetch ``d[key]`` (Python scalar or 0-d array, as np.load gives) as ``kind``."""
    try:
        v = d[key]
    except KeyError:
        raise ValueError(f"state_dict is missing the entry {key!r}") from None
    v = np.asarray(v)
    if v.ndim != 0:
        raise ValueError(f"state_dict entry {key!r} must be a scalar, got shape {v.shape}")
    if kind is str:
        return str(v)
    if kind is bool:
        return bool(v)
    return kind(v.item())


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive real number, got {value!r}")
    value = float(value)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _check_nonnegative(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number >= 0, got {value!r}")
    value = float(value)
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


class Optimizer:
    """Base class: parameter bookkeeping, ``lr``, ``zero_grad`` and the state dict.

    Subclasses set ``_HYPER`` (hyper-parameter names and types, saved in the state
    dict), ``_BUFFERS`` (names of per-parameter state arrays) and implement
    ``_check_hyper`` and ``step``.
    """

    _HYPER = ()  # ((name, type), ...); "lr" is always included
    _BUFFERS = ()
    _PER_PARAM_STEP = False

    def __init__(self, params, lr):
        if hasattr(params, "data") and hasattr(params, "grad"):
            raise TypeError(
                "params must be an iterable of Parameter (got a single Parameter: wrap it in a list)"
            )
        params = list(params)
        if not params:
            raise ValueError("params is empty: the optimizer has nothing to update")
        for i, p in enumerate(params):
            if not (hasattr(p, "data") and hasattr(p, "grad")):
                raise TypeError(
                    f"params[{i}] is a {type(p).__name__}, not a Parameter (needs .data and .grad)"
                )
            if p.data.dtype.kind != "f":
                raise ValueError(
                    f"parameter {self._label_of(i, p)} has dtype {p.data.dtype}: "
                    "only floating-point parameters can be optimised"
                )
        self.params = params
        self.lr = lr
        self.step_count = 0  # number of step() calls
        # Per-parameter state: dict of buffer name -> array (and "step" for Adam).
        self._state = [{} for _ in params]
        # Per-parameter scratch arrays (allocated lazily, reused every step).
        self._tmp = [None] * len(params)
        self._tmp2 = [None] * len(params)

    # -- hyper-parameters -------------------------------------------------------
    @property
    def lr(self):
        """float: the learning rate (> 0); settable, e.g. by a scheduler."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _check_positive("lr", value)

    # -- helpers ----------------------------------------------------------------
    @staticmethod
    def _label_of(i, p):
        name = getattr(p, "name", None)
        return f"{i} ({name!r})" if name is not None else f"{i}"

    def _label(self, i):
        return self._label_of(i, self.params[i])

    def _grad_of(self, i, p):
        g = p.grad
        if g is not None and g.shape != p.data.shape:
            raise ValueError(
                f"parameter {self._label(i)}: grad shape {tuple(g.shape)} != "
                f"data shape {tuple(p.data.shape)}"
            )
        return g

    def _scratch(self, i, d, which=0):
        store = self._tmp if which == 0 else self._tmp2
        t = store[i]
        if t is None:
            t = store[i] = array_module(d).empty_like(d)
        return t

    def zero_grad(self):
        """Set every parameter's ``grad`` to zeros (in place, no allocation)."""
        for p in self.params:
            p.zero_grad()

    def step(self):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- state ------------------------------------------------------------------
    def _hyper_values(self):
        return {name: getattr(self, name) for name, _ in self._HYPER}

    def state_dict(self):
        """Everything needed to resume: a flat dict for ``np.savez(file, **d)``.

        Keys: ``"optimizer"`` (class name), ``"num_params"``, ``"step_count"``,
        ``"lr"`` and the other hyper-parameters, and per parameter ``i``:
        ``"param.<i>.shape"`` (int64 array) plus its state buffers (NumPy copies,
        present once the parameter has been stepped) and, for Adam,
        ``"param.<i>.step"``.
        """
        d = {
            "optimizer": type(self).__name__,
            "num_params": len(self.params),
            "step_count": self.step_count,
            "lr": self.lr,
        }
        d.update(self._hyper_values())
        for i, (p, st) in enumerate(zip(self.params, self._state)):
            d[f"param.{i}.shape"] = np.array(p.data.shape, dtype=np.int64)
            if self._PER_PARAM_STEP:
                d[f"param.{i}.step"] = st.get("step", 0)
            for b in self._BUFFERS:
                if b in st:
                    d[f"param.{i}.{b}"] = _to_numpy(st[b])
        return d

    def load_state_dict(self, state):
        """Restore a :meth:`state_dict` (as returned, or as read back by ``np.load``).

        Hyper-parameters (``lr`` included), step counts and buffers are all
        replaced. Nothing changes when the state does not fit: a ``ValueError``
        names what is wrong (optimizer type, number of parameters, or the index
        and name of a parameter whose shape differs).
        """
        kind = _scalar(state, "optimizer", str)
        if kind != type(self).__name__:
            raise ValueError(f"state_dict is for a {kind} optimizer, not {type(self).__name__}")
        n = _scalar(state, "num_params", int)
        if n != len(self.params):
            raise ValueError(
                f"state_dict holds {n} parameters but this optimizer has {len(self.params)}"
            )
        lr = _check_positive("lr", _scalar(state, "lr", float))
        hyper = {name: _scalar(state, name, typ) for name, typ in self._HYPER}
        self._check_hyper(**hyper)
        step_count = _scalar(state, "step_count", int)

        new_state = []
        for i, p in enumerate(self.params):
            key = f"param.{i}.shape"
            if key not in state:
                raise ValueError(f"state_dict is missing the entry {key!r}")
            shape = tuple(int(s) for s in np.asarray(state[key]).ravel())
            if shape != tuple(p.data.shape):
                raise ValueError(
                    f"parameter {self._label(i)}: state_dict has shape {shape}, "
                    f"the parameter has shape {tuple(p.data.shape)}"
                )
            xp = array_module(p.data)
            st = {}
            if self._PER_PARAM_STEP:
                st["step"] = _scalar(state, f"param.{i}.step", int)
            for b in self._BUFFERS:
                key = f"param.{i}.{b}"
                if key in state:
                    arr = np.asarray(state[key])
                    if arr.shape != shape:
                        raise ValueError(
                            f"parameter {self._label(i)}: state_dict entry {key!r} has shape "
                            f"{arr.shape}, the parameter has shape {shape}"
                        )
                    st[b] = xp.array(arr, dtype=p.data.dtype, copy=True)
            self._validate_param_state(i, st)
            new_state.append(st)

        # Everything checked: commit.
        self.lr = lr
        for name, value in hyper.items():
            setattr(self, name, value)
        self.step_count = step_count
        self._state = new_state

    def _validate_param_state(self, i, st):
        pass

    def __repr__(self):
        hp = ", ".join(f"{k}={v!r}" for k, v in {"lr": self.lr, **self._hyper_values()}.items())
        return f"{type(self).__name__}({len(self.params)} params, {hp})"


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

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        self._check_hyper(momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        super().__init__(params, lr)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)

    @staticmethod
    def _check_hyper(momentum, nesterov, weight_decay):
        momentum = _check_nonnegative("momentum", momentum)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise ValueError(f"nesterov must be a bool, got {nesterov!r}")
        if nesterov and momentum <= 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        _check_nonnegative("weight_decay", weight_decay)

    def step(self):
        """Apply one update to every parameter that has a gradient."""
        lr = self._lr
        mom = self.momentum
        nesterov = self.nesterov
        wd = self.weight_decay
        for i, p in enumerate(self.params):
            g = self._grad_of(i, p)
            if g is None:
                continue
            d = p.data
            xp = array_module(d)
            tmp = self._scratch(i, d)
            if wd != 0.0:
                xp.multiply(d, wd, out=tmp)
                xp.add(g, tmp, out=tmp)
                g = tmp
            if mom != 0.0:
                st = self._state[i]
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = g.copy()
                else:
                    xp.multiply(buf, mom, out=buf)
                    xp.add(buf, g, out=buf)
                if nesterov:
                    tmp2 = self._scratch(i, d, 1)
                    xp.multiply(buf, mom, out=tmp2)
                    xp.add(g, tmp2, out=tmp)
                    g = tmp
                else:
                    g = buf
            xp.multiply(g, -lr, out=tmp)
            xp.add(d, tmp, out=d)
        self.step_count += 1


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

    def __init__(self, optimizer, step_size, gamma=0.1):
        self._check(step_size, gamma)
        self.optimizer = optimizer
        self.step_size = int(step_size)
        self.gamma = float(gamma)
        self.base_lr = float(optimizer.lr)
        self.last_epoch = 0

    @staticmethod
    def _check(step_size, gamma):
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral) or step_size < 1:
            raise ValueError(f"step_size must be an int >= 1, got {step_size!r}")
        _check_positive("gamma", gamma)

    def get_lr(self):
        """float: the learning rate for epoch ``last_epoch``."""
        return self.base_lr * self.gamma ** (self.last_epoch // self.step_size)

    def step(self):
        """Advance one epoch and set the optimiser's lr for it."""
        self.last_epoch += 1
        self.optimizer.lr = self.get_lr()

    def state_dict(self):
        """A flat dict (``"scheduler"``, ``"step_size"``, ``"gamma"``, ``"base_lr"``, ``"last_epoch"``)."""
        return {
            "scheduler": type(self).__name__,
            "step_size": self.step_size,
            "gamma": self.gamma,
            "base_lr": self.base_lr,
            "last_epoch": self.last_epoch,
        }

    def load_state_dict(self, state):
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
            step_size, gamma, base_lr, last_epoch,
        )

    def __repr__(self):
        return (
            f"StepLR(step_size={self.step_size}, gamma={self.gamma}, "
            f"base_lr={self.base_lr}, last_epoch={self.last_epoch})"
        )
