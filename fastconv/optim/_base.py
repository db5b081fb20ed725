"""Shared optimiser machinery: the Optimizer base class and the argument/state helpers.

See :mod:`fastconv.optim` for the semantics and the state-dict format.
"""

import math
import numbers
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import _dispatch
from .._compat import array_module, is_cupy_array, to_numpy
from .._typing import Array
from .._validation.arrays import NATIVE_FLOATS
from ..parameter import Parameter


def _scalar(d: Mapping[str, Any], key: str, kind: Callable[[Any], Any]) -> Any:
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


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive real number, got {value!r}")
    value = float(value)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _check_nonnegative(name: str, value: float) -> float:
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

    _HYPER: Tuple[Tuple[str, type], ...] = ()  # ((name, type), ...); "lr" is always included
    _BUFFERS: Tuple[str, ...] = ()
    _PER_PARAM_STEP: bool = False

    params: List[Parameter]
    step_count: int
    _lr: float
    _state: List[Dict[str, Any]]

    @staticmethod
    def _check_hyper(*args: Any, **hyper: Any) -> None:
        """Subclasses validate their hyper-parameters here (ValueError/TypeError naming one)."""
        raise NotImplementedError

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
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
            if p.data.dtype not in NATIVE_FLOATS:
                raise ValueError(
                    f"parameter {self._label_of(i, p)} has dtype {p.data.dtype}: "
                    "only float32 and float64 parameters can be optimised"
                )
        self.params = params
        self.lr = lr
        self.step_count = 0  # number of step() calls
        # Per-parameter state: dict of buffer name -> array (and "step" for Adam).
        self._state = [{} for _ in params]

    # -- hyper-parameters -------------------------------------------------------
    @property
    def lr(self) -> float:
        """float: the learning rate (> 0); settable, e.g. by a scheduler."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _check_positive("lr", value)

    # -- helpers ----------------------------------------------------------------
    @staticmethod
    def _label_of(i: int, p: Parameter) -> str:
        name = getattr(p, "name", None)
        return f"{i} ({name!r})" if name is not None else f"{i}"

    def _label(self, i: int) -> str:
        return self._label_of(i, self.params[i])

    def _grad_of(self, i: int, p: Parameter) -> Optional[Array]:
        g = p.grad
        if g is not None and g.shape != p.data.shape:
            raise ValueError(
                f"parameter {self._label(i)}: grad shape {tuple(g.shape)} != "
                f"data shape {tuple(p.data.shape)}"
            )
        return g

    def _update_arrays(self, i: int, p: Parameter, g: Array) -> Tuple[Array, Array]:
        """(p.data, g) as the fused update kernels take them: C-contiguous, g in p's dtype (a
        copy only when it is not already so)."""
        d = p.data
        if d.dtype not in NATIVE_FLOATS or not d.flags.c_contiguous:
            raise ValueError(
                f"parameter {self._label(i)}: data must be a C-contiguous float32 or float64 "
                f"array to be updated in place, got {d.dtype}"
                + ("" if d.flags.c_contiguous else " (not C-contiguous)")
            )
        return d, array_module(d).ascontiguousarray(g, dtype=d.dtype)

    @staticmethod
    def _run_update(op: str, columns: Sequence[List[Any]], *hyper: Any) -> None:
        """Run the backend op ``op`` (adam_update, sgd_update) over ``columns`` (lists: one
        entry per parameter to update, parameter data first), one call per device."""
        if not columns[0]:
            return
        on_gpu = [is_cupy_array(d) for d in columns[0]]
        for device in sorted({"gpu" if g else "cpu" for g in on_gpu}):
            picked = [k for k, g in enumerate(on_gpu) if g == (device == "gpu")]
            lists = columns
            if len(picked) < len(on_gpu):
                lists = tuple([c[k] for k in picked] for c in columns)
            getattr(_dispatch.device(device), op)(*lists, *hyper)

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Reset every parameter's ``grad``: to zeros in place (no allocation), or with
        ``set_to_none`` to None, as ``torch.optim.Optimizer.zero_grad(set_to_none=True)``: the
        next backward then assigns its gradients instead of adding them to zeros (a pass over
        each gradient less), and a parameter that gets none is not stepped."""
        for p in self.params:
            if set_to_none:
                p.grad = None
            else:
                p.zero_grad()

    def step(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- state ------------------------------------------------------------------
    def _hyper_values(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name, _ in self._HYPER}

    def state_dict(self) -> Dict[str, Any]:
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
                    d[f"param.{i}.{b}"] = to_numpy(st[b], copy=True)
        return d

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
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

    def _validate_param_state(self, i: int, st: Dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in {"lr": self.lr, **self._hyper_values()}.items())
        return f"{type(self).__name__}({len(self.params)} params, {hp})"
