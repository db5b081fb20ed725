"""Numerical gradient checks: compare a backward pass with central differences.

Two entry points:

* :func:`gradcheck_layer` checks a layer of :mod:`fastconv.nn` (or your own ``nn.Layer``)::

      from fastconv import nn
      from fastconv.gradcheck import gradcheck_layer
      report = gradcheck_layer(nn.Conv2D(3, 4, 3, padding=1), x)   # AssertionError if off
      print(report)                                                # max errors per tensor

  It works on a float64 copy of the layer (yours is not touched), draws a random output
  gradient ``g`` and compares ``layer.backward(g)`` and the accumulated ``Parameter.grad`` with
  the central differences of ``sum(layer(x) * g)`` with respect to ``x`` and every parameter.

* :func:`gradcheck` is the general form, for any function and its hand-written backward.

A central difference costs two forwards per checked element: on big tensors pass
``max_checks`` to check a random sample of elements. Kinks (ReLU at 0, ties in a max pool) make
a numerical derivative meaningless when an input lies within ``eps`` of one; random inputs
almost never do.
"""

import copy

import numpy as np

from .nn.layer import Layer

__all__ = ["gradcheck", "gradcheck_layer", "GradcheckReport", "TensorCheck"]


class TensorCheck:
    """The comparison for one tensor.

    Attributes
    ----------
    name : str
    max_abs_error : float
        ``max |analytic - numerical|`` over the checked elements.
    max_rel_error : float
        ``max |analytic - numerical| / max(|analytic|, |numerical|)`` (0 where both are 0).
    checked, total : int
        Elements compared, elements in the tensor.
    worst_index : tuple
        Index of the element with the largest excess over the tolerance.
    analytic, numerical : float
        The two values at ``worst_index``.
    passed : bool
        Every checked element has ``|analytic - numerical| <= atol + rtol * |numerical|``.
    """

    def __init__(self, name, analytic, numerical, index, total, rtol, atol):
        diff = np.abs(analytic - numerical)
        scale = np.maximum(np.abs(analytic), np.abs(numerical))
        rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
        excess = diff - (atol + rtol * np.abs(numerical))
        worst = int(np.argmax(excess)) if excess.size else 0
        self.name = name
        self.max_abs_error = float(diff.max()) if diff.size else 0.0
        self.max_rel_error = float(rel.max()) if rel.size else 0.0
        self.checked = int(diff.size)
        self.total = int(total)
        self.worst_index = tuple(int(i) for i in index[worst]) if diff.size else ()
        self.analytic = float(analytic[worst]) if diff.size else 0.0
        self.numerical = float(numerical[worst]) if diff.size else 0.0
        self.passed = bool(np.all(excess <= 0))

    def __repr__(self):
        return (
            f"TensorCheck({self.name!r}, max_abs_error={self.max_abs_error:.3g}, "
            f"max_rel_error={self.max_rel_error:.3g}, passed={self.passed})"
        )


class GradcheckReport:
    """The result of a check: one :class:`TensorCheck` per tensor, by name.

    ``report["weight"]`` gives a tensor's check, ``report.passed`` whether all passed, and
    ``str(report)`` a table (also the message of the AssertionError raised on failure).
    """

    def __init__(self, checks, eps, rtol, atol):
        self.checks = {c.name: c for c in checks}
        self.eps, self.rtol, self.atol = eps, rtol, atol

    @property
    def passed(self):
        """bool: every tensor passed."""
        return all(c.passed for c in self.checks.values())

    def __getitem__(self, name):
        return self.checks[name]

    def __iter__(self):
        return iter(self.checks.values())

    def __str__(self):
        lines = [
            f"gradient check (central differences, eps={self.eps:g}; pass: "
            f"|analytic - numerical| <= {self.atol:g} + {self.rtol:g} * |numerical|)",
            f"  {'tensor':<16} {'checked':>13} {'max abs err':>12} {'max rel err':>12}  result",
        ]
        for c in self.checks.values():
            result = (
                "ok"
                if c.passed
                else (
                    f"FAILED at {c.worst_index}: analytic "
                    f"{c.analytic:.9g}, numerical {c.numerical:.9g}"
                )
            )
            lines.append(
                f"  {c.name:<16} {f'{c.checked}/{c.total}':>13} "
                f"{c.max_abs_error:12.3g} {c.max_rel_error:12.3g}  {result}"
            )
        return "\n".join(lines)

    __repr__ = __str__


def _names_and_arrays(inputs):
    if isinstance(inputs, dict):
        return list(inputs), list(inputs.values())
    arrays = list(inputs)
    return [str(i) for i in range(len(arrays))], arrays


def _sample(shape, max_checks, rng):
    """Indices (k, ndim) of the elements to check: all, or max_checks drawn without repeats."""
    total = int(np.prod(shape))
    flat = np.arange(total)
    if max_checks is not None and total > max_checks:
        flat = np.sort(rng.choice(total, size=int(max_checks), replace=False))
    return np.stack(np.unravel_index(flat, shape), axis=1) if shape else np.zeros((1, 0), int)


def gradcheck(
    f,
    inputs,
    grad_inputs_fn=None,
    eps=1e-6,
    rtol=1e-5,
    atol=1e-8,
    raise_on_failure=True,
    *,
    grad_output=None,
    max_checks=None,
    seed=0,
):
    """Check analytic gradients of ``f`` against central differences.

    With ``y = f(*inputs)`` and an output gradient ``g`` (random normal unless given), the
    numerical gradient of input ``a`` at element ``i`` is
    ``(sum(f(a[i] + eps) * g) - sum(f(a[i] - eps) * g)) / (2 eps)``, and it is compared with
    ``grad_inputs_fn(g)``, the analytic gradients after a call ``f(*inputs)``.

    Parameters
    ----------
    f : callable
        ``f(*arrays)`` for a sequence of inputs, ``f(**arrays)`` for a dict; returns an array
        (any shape, 0-d included). The input arrays are perturbed **in place** (and restored),
        so ``f`` may also reach them through other references, e.g. a layer's parameters.
    inputs : sequence or dict name -> ndarray
        Floating-point NumPy arrays; use float64 (float32 needs a far larger eps and tolerance).
    grad_inputs_fn : callable
        ``grad_inputs_fn(g)`` -> one gradient per input (a sequence, or a dict for dict
        inputs), of the inputs' shapes; None where an input is not to be checked. Called right
        after ``f(*inputs)`` on the unperturbed inputs (so it may use what f cached).
        Required; the name and position follow the common ``gradcheck`` signature.
    eps, rtol, atol : float
        Step and tolerance: an element passes when ``|analytic - numerical| <= atol + rtol *
        |numerical|``.
    raise_on_failure : bool, default True
        Raise AssertionError (with the report as message) when a tensor fails.
    grad_output : ndarray, optional
        ``g``; default: standard normal of y's shape, from ``seed``.
    max_checks : int, optional
        Check at most this many randomly chosen elements per input (default: all).
    seed : int
        Seeds ``g`` and the element sample.

    Returns
    -------
    GradcheckReport
    """
    if grad_inputs_fn is None:
        raise TypeError(
            "gradcheck needs grad_inputs_fn (the backward to check); for a Layer "
            "use gradcheck_layer(layer, x)"
        )
    names, arrays = _names_and_arrays(inputs)
    for name, a in zip(names, arrays):
        if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
            raise TypeError(
                f"input {name!r} must be a floating-point NumPy array, got "
                f"{getattr(a, 'dtype', type(a).__name__)}"
            )
    call = (
        (lambda: f(**dict(zip(names, arrays))))
        if isinstance(inputs, dict)
        else (lambda: f(*arrays))
    )
    rng = np.random.default_rng(seed)
    y = np.asarray(call())
    g = (
        rng.standard_normal(y.shape)
        if grad_output is None
        else np.asarray(grad_output, dtype=np.float64)
    )
    if g.shape != y.shape:
        raise ValueError(f"grad_output must have the output's shape {y.shape}, got {g.shape}")
    analytic = grad_inputs_fn(g.astype(y.dtype) if y.dtype.kind == "f" else g)
    analytic = [analytic[n] for n in names] if isinstance(analytic, dict) else list(analytic)
    if len(analytic) != len(arrays):
        raise ValueError(
            f"grad_inputs_fn returned {len(analytic)} gradients for {len(arrays)} inputs"
        )

    def objective():
        return float(np.sum(np.asarray(call(), dtype=np.float64) * g))

    checks = []
    for name, a, grad in zip(names, arrays, analytic):
        if grad is None:
            continue
        grad = np.asarray(grad.get() if hasattr(grad, "get") else grad, dtype=np.float64)
        if grad.shape != a.shape:
            raise ValueError(f"gradient of {name!r} has shape {grad.shape}, the input {a.shape}")
        index = _sample(a.shape, max_checks, rng)
        numerical = np.empty(len(index))
        for k, i in enumerate(map(tuple, index)):
            original = a[i]
            a[i] = original + eps
            plus = objective()
            a[i] = original - eps
            minus = objective()
            a[i] = original
            numerical[k] = (plus - minus) / (2 * eps)
        chosen = grad[tuple(index.T)] if index.shape[1] else grad.reshape(1)
        checks.append(TensorCheck(name, chosen, numerical, index, a.size, rtol, atol))
    report = GradcheckReport(checks, eps, rtol, atol)
    if raise_on_failure and not report.passed:
        raise AssertionError(str(report))
    return report


def gradcheck_layer(
    layer,
    x,
    *args,
    eps=1e-6,
    rtol=1e-5,
    atol=1e-8,
    raise_on_failure=True,
    grad_output=None,
    max_checks=None,
    seed=0,
    dtype=np.float64,
    check_input=True,
):
    """Check ``layer.backward`` (input and parameter gradients) by central differences.

    The check runs on a copy of ``layer`` cast to ``dtype`` (float64) and put in training mode,
    with parameter gradients starting at zero; ``layer`` itself is left as it was. Layers that
    draw random numbers from a ``numpy.random.Generator`` attribute named ``rng`` (Dropout) are
    reset to the same generator state before every forward, so each evaluation uses the same
    mask.

    Parameters
    ----------
    layer : fastconv.nn.Layer
    x : array (NumPy), the input; cast to ``dtype``.
    *args
        Further forward arguments that are not differentiated (the labels of
        SoftmaxCrossEntropy): ``forward(x, *args)``.
    eps, rtol, atol, raise_on_failure, grad_output, max_checks, seed
        As for :func:`gradcheck`.
    dtype : default float64
    check_input : bool, default True
        False checks the parameter gradients only (``backward(g, input_grad=False)``).

    Returns
    -------
    GradcheckReport with the tensors "input" and every parameter by its dotted name.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"layer must be a fastconv.nn.Layer, got {type(layer).__name__}")
    layer = copy.deepcopy(layer).astype(dtype).train()
    x = np.array(x.get() if hasattr(x, "get") else x, dtype=dtype, copy=True)
    params = layer.named_parameters()
    generators = [
        (m, copy.deepcopy(m.rng.bit_generator.state))
        for m in layer.modules()
        if isinstance(getattr(m, "rng", None), np.random.Generator)
    ]

    def forward(**arrays):
        for module, state in generators:
            module.rng.bit_generator.state = state
        return layer.forward(arrays["input"], *args)

    def backward(g):
        for p in params.values():
            p.grad = np.zeros_like(p.data)
        grad_x = layer.backward(g, input_grad=check_input)
        return {
            "input": grad_x if check_input else None,
            **{name: p.grad for name, p in params.items()},
        }

    inputs = {"input": x, **{name: p.data for name, p in params.items()}}
    return gradcheck(
        forward,
        inputs,
        backward,
        eps=eps,
        rtol=rtol,
        atol=atol,
        raise_on_failure=raise_on_failure,
        grad_output=grad_output,
        max_checks=max_checks,
        seed=seed,
    )
