"""PyTorch's own OpInfo samples run through fastconv: a cross-check against a test suite nobody here
wrote (torch.testing._internal.common_methods_invocations.op_db).

For every op fastconv mirrors, each `sample_inputs` sample (float32 and float64) is called the way
a user porting PyTorch code would call fastconv: the same positional arguments and keywords, with
torch tensors turned into NumPy arrays. The forward result and the gradients (fastconv's
hand-written backward functions against torch's autograd, for a random grad_out) must agree.
Each `error_inputs` case must be refused with a ValueError or TypeError.

    python tests/torch_opinfo.py        # the per-op table (needs torch and expecttest)

tests/test_torch_opinfo.py runs it when torch's test internals import, and fails on any mismatch,
crash, refused sample not listed in OUT_OF_SCOPE, or error input accepted silently.
"""

from __future__ import annotations

import collections
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

import fastconv.functional as fc

#: Keyword-only flags are fastconv's deliberate difference (README "Differences from PyTorch"):
#: torch passes them positionally in its samples; the adapters below bind torch's signature and
#: hand fastconv these by name, as a port must.
KEYWORD_ONLY = {"ceil_mode", "count_include_pad", "divisor_override", "return_indices"}


def _numpy(value):
    """torch tensors (also inside tuples/lists) -> NumPy copies; anything else unchanged."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, (tuple, list)):
        return type(value)(_numpy(v) for v in value)
    return value


@dataclass
class Op:
    """How one torch op maps onto fastconv.

    torch_name: the OpInfo name. signature: torch's parameter names in order (to bind positional
    sample arguments). forward(args) -> output(s); backward(args, outputs, grad_out) -> {name:
    gradient} for the differentiable tensor arguments fastconv gives gradients for."""

    torch_name: str
    signature: Tuple[str, ...]
    forward: Callable[[Dict[str, Any]], Any]
    backward: Optional[Callable[[Dict[str, Any], Any, np.ndarray], Dict[str, Any]]]
    differentiable: Tuple[str, ...] = ("input",)


def _split(args):
    """Bound arguments -> (positional-or-keyword dict, keyword-only dict) for fastconv."""
    plain = {k: v for k, v in args.items() if k not in KEYWORD_ONLY}
    flags = {k: v for k, v in args.items() if k in KEYWORD_ONLY}
    return plain, flags


def _call(fn, args):
    plain, flags = _split(_accepted(fn, args))
    return fn(**_rename(fn, plain), **flags)


def _accepted(fn, args):
    """args without those fastconv's `fn` lacks and torch left at None (cross_entropy's
    deprecated size_average / reduce: OUT_OF_SCOPE covers them when set)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in args.items() if k in params or k == "input" or v is not None}


def _rename(fn, plain):
    """torch calls the first array `input`; fastconv calls it `x` (or `logits`)."""
    params = list(inspect.signature(fn).parameters)
    out = dict(plain)
    if "input" in out and "input" not in params:
        out[params[0]] = out.pop("input")
    return out


def _conv_backward(backward_fn, names):
    def backward(args, y, grad_out):
        geometry = {k: args[k] for k in names if k in args}
        gx, gw, gb = backward_fn(grad_out, args["input"], args["weight"], **geometry)
        grads = {"input": gx, "weight": gw}
        if args.get("bias") is not None:
            grads["bias"] = gb
        return grads

    return backward


_CONV = ("stride", "padding", "dilation", "groups")
_CONV_T = ("stride", "padding", "output_padding", "groups", "dilation")


def _max_pool_forward(fn):
    def forward(args):
        return _call(fn, args)

    return forward


def _max_pool_backward(fn, backward_fn):
    def backward(args, y, grad_out):
        _, indices = _call(fn, {**args, "return_indices": True})
        return {"input": backward_fn(grad_out, indices, args["input"].shape)}

    return backward


def _avg_pool_backward(args, y, grad_out):
    rest = {k: v for k, v in args.items() if k not in ("input",)}
    plain, flags = _split(rest)
    return {"input": fc.avg_pool2d_backward(grad_out, args["input"].shape, **plain, **flags)}


def _activation(name):
    fn = getattr(fc, name)
    back = getattr(fc, name + "_backward")
    return Op(
        name if name != "relu" else "nn.functional.relu",
        ("input",),
        lambda a: fn(a["input"]),
        lambda a, y, g: {"input": back(g, y)},
    )


def _cross_entropy_backward(args, y, grad_out):
    kw = _accepted(fc.cross_entropy_backward, args)
    kw = {k: v for k, v in kw.items() if k not in ("input", "target")}
    return {"input": fc.cross_entropy_backward(grad_out, args["input"], args["target"], **kw)}


OPS: Dict[str, Op] = {
    op.torch_name: op
    for op in (
        Op(
            "nn.functional.conv2d",
            ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
            lambda a: _call(fc.conv2d, a),
            _conv_backward(fc.conv2d_backward, _CONV),
            ("input", "weight", "bias"),
        ),
        Op(
            "nn.functional.conv1d",
            ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
            lambda a: _call(fc.conv1d, a),
            _conv_backward(fc.conv1d_backward, _CONV),
            ("input", "weight", "bias"),
        ),
        Op(
            "nn.functional.conv_transpose2d",
            (
                "input",
                "weight",
                "bias",
                "stride",
                "padding",
                "output_padding",
                "groups",
                "dilation",
            ),
            lambda a: _call(fc.conv_transpose2d, a),
            _conv_backward(fc.conv_transpose2d_backward, _CONV_T),
            ("input", "weight", "bias"),
        ),
        Op(
            "nn.functional.max_pool2d",
            (
                "input",
                "kernel_size",
                "stride",
                "padding",
                "dilation",
                "ceil_mode",
                "return_indices",
            ),
            _max_pool_forward(fc.max_pool2d),
            _max_pool_backward(fc.max_pool2d, fc.max_pool2d_backward),
        ),
        Op(
            "nn.functional.avg_pool2d",
            (
                "input",
                "kernel_size",
                "stride",
                "padding",
                "ceil_mode",
                "count_include_pad",
                "divisor_override",
            ),
            lambda a: _call(fc.avg_pool2d, a),
            _avg_pool_backward,
        ),
        Op(
            "nn.functional.adaptive_avg_pool2d",
            ("input", "output_size"),
            lambda a: _call(fc.adaptive_avg_pool2d, a),
            lambda a, y, g: {"input": fc.adaptive_avg_pool2d_backward(g, a["input"].shape)},
        ),
        Op(
            "nn.functional.adaptive_max_pool2d",
            ("input", "output_size", "return_indices"),
            lambda a: _call(getattr(fc, "adaptive_max_pool2d"), a),
            lambda a, y, g: {
                "input": _max_pool_backward(
                    getattr(fc, "adaptive_max_pool2d"), getattr(fc, "adaptive_max_pool2d_backward")
                )(a, y, g)["input"]
            },
        ),
        Op(
            "nn.functional.linear",
            ("input", "weight", "bias"),
            lambda a: _call(fc.linear, a),
            lambda a, y, g: dict(
                zip(("input", "weight", "bias"), fc.linear_backward(g, a["input"], a["weight"]))
            ),
            ("input", "weight", "bias"),
        ),
        Op(
            "nn.functional.cross_entropy",
            (
                "input",
                "target",
                "weight",
                "size_average",
                "ignore_index",
                "reduce",
                "reduction",
                "label_smoothing",
            ),
            lambda a: _call(getattr(fc, "cross_entropy"), a),
            _cross_entropy_backward,
        ),
        _activation("relu"),
        _activation("sigmoid"),
        _activation("tanh"),
    )
}

#: Samples fastconv refuses by design, each with the reason (predicate over the bound torch
#: arguments, reason). Only what fastconv does not do by design belongs here.
OUT_OF_SCOPE: Dict[str, List[Tuple[Callable[[Dict[str, Any]], bool], str]]] = {
    "nn.functional.cross_entropy": [
        (
            lambda a: a.get("size_average") is not None or a.get("reduce") is not None,
            "size_average / reduce: deprecated in torch since 0.4, replaced by reduction",
        ),
    ],
}


#: Error inputs torch refuses and fastconv answers on purpose, each with the reason.
ACCEPTED_ON_PURPOSE: List[Tuple[Callable[[Dict[str, Any]], bool], str]] = [
    (
        lambda a: any(isinstance(v, np.ndarray) and v.dtype.kind in "iub" for v in a.values()),
        "integer and bool arrays promote with the floats (NumPy's rule; README, dtypes)",
    ),
]


def out_of_scope(torch_name: str, args: Dict[str, Any]) -> Optional[str]:
    for predicate, reason in OUT_OF_SCOPE.get(torch_name, ()):
        if predicate(args):
            return reason
    return None


@dataclass
class Counts:
    ran: int = 0
    refused: int = 0
    out_of_scope: int = 0
    mismatch: int = 0
    crash: int = 0
    errors_refused: int = 0
    errors_accepted: int = 0
    errors_crash: int = 0
    failures: List[str] = field(default_factory=list)

    @property
    def samples(self):
        return self.ran + self.refused + self.out_of_scope + self.mismatch + self.crash


def _tolerance(dtype) -> float:
    return 1e-10 if dtype == np.float64 else 2e-5


def _close(got, want, dtype) -> Optional[str]:
    """None when got matches want (scaled max error within the dtype's tolerance), else why."""
    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        return f"shape {got.shape} != torch's {want.shape}"
    if want.dtype.kind in "iu":
        return None if np.array_equal(got, want) else "integer results differ"
    if got.size == 0:
        return None
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    if not np.array_equal(nan_got, nan_want):
        return "NaN positions differ"
    scale = max(1.0, float(np.max(np.abs(np.where(nan_want, 0, want)), initial=0.0)))
    err = float(np.max(np.abs(np.where(nan_want, 0, got - want)), initial=0.0)) / scale
    return None if err <= _tolerance(dtype) else f"relative error {err:.2e}"


def _bind(op: Op, sample) -> Dict[str, Any]:
    values = [sample.input, *sample.args]
    if len(values) > len(op.signature):
        raise TypeError(f"{op.torch_name}: {len(values)} positional arguments")
    args = dict(zip(op.signature, values))
    args.update(sample.kwargs)
    return args


def _torch_grads(op, args_t, out_t, grad_out_t):
    import torch

    names = [n for n in op.differentiable if torch.is_tensor(args_t.get(n))]
    tensors = [args_t[n] for n in names if args_t[n].requires_grad]
    names = [n for n in names if args_t[n].requires_grad]
    if not tensors:
        return {}
    grads = torch.autograd.grad(out_t, tensors, grad_out_t, allow_unused=True)
    return {n: (None if g is None else g.numpy()) for n, g in zip(names, grads)}


def run_sample(op: Op, sample, dtype, counts: Counts, rng) -> None:
    import torch

    args_t = _bind(op, sample)
    args = {k: _numpy(v) for k, v in args_t.items()}
    reason = out_of_scope(op.torch_name, args)
    if reason is not None:
        counts.out_of_scope += 1
        return
    label = f"{op.torch_name} {np.dtype(dtype).name} {_describe(args)}"
    before = {k: v.copy() for k, v in args.items() if isinstance(v, np.ndarray)}
    try:
        got = op.forward(args)
    except (ValueError, TypeError, NotImplementedError, AttributeError) as e:
        counts.refused += 1
        counts.failures.append(f"refused: {label}: {type(e).__name__}: {e}")
        return
    except Exception as e:  # noqa: BLE001 - a crash is what this counts
        counts.crash += 1
        counts.failures.append(f"crash: {label}: {type(e).__name__}: {e}")
        return
    want_t = op_torch(op, sample)
    want = want_t if isinstance(want_t, tuple) else (want_t,)
    got_t = got if isinstance(got, tuple) else (got,)
    problems = [_close(g, w.detach().numpy(), dtype) for g, w in zip(got_t, want)]
    if len(got_t) != len(want):
        problems.append(f"{len(got_t)} outputs, torch {len(want)}")
    for name, arr in before.items():
        if not np.array_equal(arr, args[name], equal_nan=True):
            problems.append(f"{name} was modified")
    if op.backward is not None and want[0].requires_grad and want[0].dtype.is_floating_point:
        grad_out_t = torch.from_numpy(rng.standard_normal(tuple(want[0].shape))).to(want[0].dtype)
        want_g = _torch_grads(op, args_t, want[0], grad_out_t)
        try:
            got_g = op.backward(args, got_t[0], grad_out_t.numpy())
        except Exception as e:  # noqa: BLE001
            problems.append(f"backward raised {type(e).__name__}: {e}")
            got_g = {}
        for name, w in want_g.items():
            if w is None or name not in got_g:
                continue
            p = _close(got_g[name], w, dtype)
            if p:
                problems.append(f"grad {name}: {p}")
    problems = [p for p in problems if p]
    if problems:
        counts.mismatch += 1
        counts.failures.append(f"mismatch: {label}: {'; '.join(problems)}")
    else:
        counts.ran += 1


def op_torch(op: Op, sample):
    return _infos()[op.torch_name](sample.input, *sample.args, **sample.kwargs)


_INFO_CACHE: Dict[str, Any] = {}


def _infos():
    if not _INFO_CACHE:
        from torch.testing._internal.common_methods_invocations import op_db

        for info in op_db:
            if info.name in OPS and info.variant_test_name == "":
                _INFO_CACHE[info.name] = info
    return _INFO_CACHE


def _describe(args):
    parts = []
    for k, v in args.items():
        if isinstance(v, np.ndarray):
            parts.append(f"{k}{tuple(v.shape)}")
        elif v is not None:
            parts.append(f"{k}={v!r}")
    return " ".join(parts)


def run_error_input(op: Op, error_input, counts: Counts) -> None:
    sample = error_input.sample_input
    label = f"{op.torch_name} error input ({error_input.error_regex!r})"
    try:
        args = {k: _numpy(v) for k, v in _bind(op, sample).items()}
        op.forward(args)
    except (ValueError, TypeError, NotImplementedError):
        counts.errors_refused += 1
        return
    except Exception as e:  # noqa: BLE001
        counts.errors_crash += 1
        counts.failures.append(f"error-input crash: {label}: {type(e).__name__}: {e}")
        return
    for predicate, _reason in ACCEPTED_ON_PURPOSE:
        if predicate(args):
            counts.errors_refused += 1  # answered on purpose: counted with the handled ones
            return
    counts.errors_accepted += 1
    counts.failures.append(f"error input accepted: {label}: {_describe(args)}")


def run(names=None, dtypes=("float32", "float64"), seed=0) -> Dict[str, Counts]:
    """Every sample and error input of the ops in OPS (or `names`) -> per-op Counts."""
    import torch

    rng = np.random.default_rng(seed)
    report: Dict[str, Counts] = collections.OrderedDict()
    infos = _infos()
    for name in names or OPS:
        op, info = OPS[name], infos[name]
        counts = report.setdefault(name, Counts())
        for dtype in dtypes:
            torch_dtype = getattr(torch, dtype)
            for sample in info.sample_inputs("cpu", torch_dtype, requires_grad=True):
                run_sample(op, sample, np.dtype(dtype), counts, rng)
        if info.error_inputs_func is not None:
            for error_input in info.error_inputs("cpu"):
                run_error_input(op, error_input, counts)
    return report


def table(report: Dict[str, Counts]) -> str:
    rows = [
        "| op | samples | ran | refused | out of scope | mismatch | crash | error inputs refused"
        " / accepted / crash |",
        "|---|---|---|---|---|---|---|---|",
    ]
    total = Counts()
    for name, c in report.items():
        rows.append(
            f"| {name} | {c.samples} | {c.ran} | {c.refused} | {c.out_of_scope} | {c.mismatch}"
            f" | {c.crash} | {c.errors_refused} / {c.errors_accepted} / {c.errors_crash} |"
        )
        for f in ("ran", "refused", "out_of_scope", "mismatch", "crash"):
            setattr(total, f, getattr(total, f) + getattr(c, f))
        for f in ("errors_refused", "errors_accepted", "errors_crash"):
            setattr(total, f, getattr(total, f) + getattr(c, f))
    rows.append(
        f"| all | {total.samples} | {total.ran} | {total.refused} | {total.out_of_scope} |"
        f" {total.mismatch} | {total.crash} | {total.errors_refused} / {total.errors_accepted}"
        f" / {total.errors_crash} |"
    )
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    result = run(sys.argv[1:] or None)
    print(table(result))
    for c in result.values():
        for line in sorted(set(c.failures))[:400]:
            print("  ", line[:300])
