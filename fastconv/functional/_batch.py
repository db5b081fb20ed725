"""Unbatched inputs, as torch takes them: one sample without its batch axis, (C, H, W) for
(N, C, H, W) or (C, L) for (N, C, L), in and out.

`unbatched` wraps a batched op once: when its leading array argument lacks the batch axis, every
per-sample argument it names gets one (``a[None]``: a view of NumPy and CuPy arrays, lazy for
Dask; shapes get a leading 1), the batched op runs, and its per-sample results lose the axis again
(``y[0]``, a view). Other arguments (weights, biases, and results such as grad_weight) pass as
they are. The wrapped op keeps its signature (``functools.wraps``) and every check it makes; the
ndim checks of the named arguments are made here, where both forms are known, so that a message
says what is accepted: ``x must be 4-D (N, C, H, W) or 3-D (C, H, W), got 2-D ...``.
"""

import functools
import inspect
from typing import Any, Callable, Dict, Tuple, TypeVar, Union, cast

import numpy as np

from .._validation import arrays as _arrays

__all__ = ["unbatched"]

Op = TypeVar("Op", bound=Callable[..., Any])


def _letters(layout: str, batched: bool) -> str:
    """'N, C, H, W' or, without the batch letter, 'C, H, W'."""
    return layout if batched else layout.split(",", 1)[1].strip()


def _form(layout: str, batched: bool) -> str:
    """'4-D (N, C, H, W)' or, without the batch letter, '3-D (C, H, W)'."""
    ndim = len(layout.split(",")) - (0 if batched else 1)
    return f"{ndim}-D ({_letters(layout, batched)})"


class _Argument:
    """One per-sample argument of an op: its name, its position (None: keyword-only), its
    batched layout ("N, C, H, W"); `shape`: a shape tuple (``input_shape``) rather than an
    array."""

    def __init__(self, name: str, position: Any, layout: str) -> None:
        self.name, self.position, self.layout = name, position, layout
        self.ndim = len(layout.split(","))
        self.shape = name.endswith("_shape")

    def get(self, args: tuple, kwargs: dict) -> Any:
        if self.position is not None and self.position < len(args):
            return args[self.position]
        return kwargs.get(self.name)

    def ndim_of(self, value: Any) -> Tuple[Any, int]:
        """(value, its ndim): arrays-likes become arrays, shapes count their entries; raises
        naming the argument when neither form fits."""
        if self.shape:
            if isinstance(value, (tuple, list)) and len(value) in (self.ndim, self.ndim - 1):
                return value, len(value)
            raise ValueError(
                f"{self.name} must be a tuple of {self.ndim} ints ({self.layout}) or "
                f"{self.ndim - 1} ({_letters(self.layout, False)}), got {value!r}"
            )
        if self.name == "out" and not hasattr(value, "ndim"):  # written into: no conversion
            raise TypeError(f"out must be an array, got {type(value).__name__}")
        value = _arrays.as_array(value, self.name)
        if value.ndim not in (self.ndim, self.ndim - 1):
            raise ValueError(
                f"{self.name} must be {_form(self.layout, True)} or "
                f"{_form(self.layout, False)}, got {value.ndim}-D with shape "
                f"{tuple(value.shape)}"
            )
        return value, value.ndim

    def with_batch_axis(self, value: Any) -> Any:
        return (1,) + tuple(value) if self.shape else value[None]


def _strip(result: Any, results: Union[str, Tuple[int, ...]]) -> Any:
    """The batch axis taken off the per-sample results: all of them, or the tuple entries at
    the indices `results` names (None entries, gradients not asked for, kept)."""
    if results == "all":
        if isinstance(result, tuple):
            return tuple(r[0] for r in result)
        return result[0]
    if not isinstance(result, tuple):  # results=(): nothing per-sample (grad_weight)
        return result
    out = list(result)
    for i in cast(Tuple[int, ...], results):
        if out[i] is not None:
            out[i] = out[i][0]
    return tuple(out)


def unbatched(results: Union[str, Tuple[int, ...]] = "all", **layouts: str) -> Callable[[Op], Op]:
    """Let a batched op take its per-sample arguments without the batch axis.

    Parameters
    ----------
    results : "all" (the result, or every entry of a tuple result, has the batch axis) or the
        indices of the tuple entries that have it (() for none: grad_weight of a batch and of
        one sample are the same shape).
    **layouts : the per-sample arguments, each with its batched layout ("N, C, H, W"); the first
        decides: the call is unbatched when it has one axis less than its layout, and every
        other one given (not None) must then be unbatched too. Names ending in ``_shape`` are
        shape tuples, the others arrays (or array-likes).
    """

    def decorate(op: Op) -> Op:
        params = list(inspect.signature(op).parameters.values())
        positions: Dict[str, Any] = {
            p.name: i for i, p in enumerate(params) if p.kind == p.POSITIONAL_OR_KEYWORD
        }
        arguments = [_Argument(n, positions.get(n), layout) for n, layout in layouts.items()]
        unknown = [a.name for a in arguments if a.name not in {p.name for p in params}]
        if unknown:  # a typo would silently leave the argument batched
            raise TypeError(f"{op.__name__} has no argument {unknown}")
        if arguments[0].position is None:
            raise TypeError(f"{op.__name__}: the leading argument must be positional")
        first = arguments[0]
        p0, name0, ndim0 = first.position, first.name, first.ndim
        never = 1 << 30  # the position of a keyword-only argument
        rest = [
            (never if a.position is None else a.position, a.name, a.ndim, a.shape)
            for a in arguments[1:]
        ]
        ndarray = np.ndarray

        @functools.wraps(op)
        def run(*args: Any, **kwargs: Any) -> Any:
            # the hot path: batched ndarrays (and shape tuples), the op's to check further
            n = len(args)
            v = args[p0] if n > p0 else kwargs.get(name0)
            if type(v) is ndarray and v.ndim == ndim0:
                for position, name, ndim, shape in rest:
                    v = args[position] if n > position else kwargs.get(name)
                    if v is None:
                        continue
                    if not (
                        (type(v) is tuple and len(v) == ndim)
                        if shape
                        else (type(v) is ndarray and v.ndim == ndim)
                    ):
                        break
                else:
                    return op(*args, **kwargs)
            if first.get(args, kwargs) is None:  # the op says what it misses
                return op(*args, **kwargs)
            given = []
            for a in arguments:
                v = a.get(args, kwargs)
                if v is not None:
                    v, ndim = a.ndim_of(v)
                    given.append((a, v, ndim))
            _, _, lead = given[0]
            batched = lead == first.ndim
            for a, v, ndim in given[1:]:
                if (ndim == a.ndim) != batched:
                    got = f"{v!r}" if a.shape else f"{ndim}-D with shape {tuple(v.shape)}"
                    want = _form(a.layout, batched)
                    if a.shape:
                        want = f"a tuple of {want[0]} ints {want[4:]}"
                    raise ValueError(
                        f"{a.name} must be {want} like {first.name} "
                        f"({'batched' if batched else 'one sample, unbatched'}), got {got}"
                    )
            call = list(args)
            for a, v, _ in given:
                v = v if batched else a.with_batch_axis(v)
                if a.position is not None and a.position < len(call):
                    call[a.position] = v
                else:
                    kwargs[a.name] = v
            out = kwargs.get("out")
            if not batched and out is not None and "out" not in layouts:
                # an out= not named in layouts takes the results' shapes: the per-sample ones
                # get the batch axis too (views of the caller's arrays)
                if type(out) is tuple:
                    per_sample = range(len(out)) if results == "all" else results
                    kwargs["out"] = tuple(
                        o[None] if i in per_sample and hasattr(o, "ndim") else o
                        for i, o in enumerate(out)
                    )
                elif hasattr(out, "ndim"):
                    kwargs["out"] = out[None]
            result = op(*call, **kwargs)
            if batched:
                return result
            if out is not None and result is kwargs["out"]:  # out= given: the caller's array
                return (
                    out if "out" not in layouts else next(v for a, v, _ in given if a.name == "out")
                )
            if type(out) is tuple and type(result) is tuple:  # the caller's arrays, not views
                return tuple(r if o is None else o for o, r in zip(out, _strip(result, results)))
            return _strip(result, results)

        return cast(Op, run)

    return decorate
