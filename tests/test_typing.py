"""The layers and optimisers keep their type hints (issue 12).

mypy (run by CI with ``disallow_untyped_defs`` for fastconv.nn and fastconv.optim) is the main
guard; this test also holds where mypy is not run: every public method, property and dunder of
the public classes of :mod:`fastconv.nn` and :mod:`fastconv.optim` (inherited ones included),
and the public functions there, annotate every parameter and their return type.
"""

import inspect

from fastconv import nn, optim


def _public(module):
    return [getattr(module, name) for name in module.__all__]


def _functions(cls):
    """(qualified name, function, skip_first) for what `cls` and its fastconv bases define:
    methods (self/cls skipped), static methods, and property getters and setters."""
    for klass in cls.__mro__:
        if not klass.__module__.startswith("fastconv."):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                continue
            where = f"{klass.__qualname__}.{name}"
            if isinstance(value, staticmethod):
                yield where, value.__func__, False
            elif isinstance(value, classmethod):
                yield where, value.__func__, True
            elif isinstance(value, property):
                for accessor in (value.fget, value.fset):
                    if accessor is not None:
                        yield where, accessor, True
            elif inspect.isfunction(value):
                yield where, value, True


def _unannotated(where, function, skip_first):
    """The names of `function`'s unannotated parameters (and "return"), as 'where(name)'."""
    signature = inspect.signature(function)
    params = list(signature.parameters.values())[1 if skip_first else 0 :]
    missing = [p.name for p in params if p.annotation is inspect.Parameter.empty]
    if signature.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return [f"{where}({name})" for name in missing]


def _all_unannotated(objects):
    found, checked = [], set()
    for obj in objects:
        if inspect.isclass(obj):
            items = list(_functions(obj))
        elif inspect.isfunction(obj):
            items = [(obj.__qualname__, obj, False)]
        else:  # constants (nn.INITS)
            continue
        for where, function, skip_first in items:
            checked.add(where)
            found.extend(_unannotated(where, function, skip_first))
    return sorted(set(found)), checked


def test_layers_and_optimisers_are_annotated():
    missing, checked = _all_unannotated(_public(nn) + _public(optim))
    assert not missing, missing
    # The walk reaches the methods that matter (so an empty `missing` means something).
    for name in (
        "Conv2D.__init__",
        "Conv2D.forward",
        "Conv2D.backward",
        "ConvLayer.extra_repr",  # Conv2D's, from the convolution layers' base
        "Layer.state_dict",
        "Sequential.__getitem__",
        "Optimizer.zero_grad",
        "Optimizer.lr",
        "Adam.__init__",
        "Adam.step",
        "SGD.step",
        "StepLR.step",
        "ModelSummary.__init__",
        "summary",
    ):
        assert name in checked, name


def test_the_check_sees_a_missing_annotation():
    class Partly(nn.Layer):
        def forward(self, x):  # no annotations: what the test must catch
            return x

        def extra_repr(self) -> str:
            return ""

    Partly.__module__ = "fastconv.nn.fake"
    missing, _ = _all_unannotated([Partly])
    assert "test_the_check_sees_a_missing_annotation.<locals>.Partly.forward(x)" in missing
    assert "test_the_check_sees_a_missing_annotation.<locals>.Partly.forward(return)" in missing
    assert not any(".extra_repr(" in m for m in missing)
