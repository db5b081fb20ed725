"""The public API as a JSON-able map {module: {name: signature}}: tests/test_api.py compares it
with tests/public_api.json (written by `python tests/api_snapshot.py > tests/public_api.json`
when the API changes on purpose)."""

import importlib
import inspect
import json

MODULES = (
    "fastconv",
    "fastconv.functional",
    "fastconv.arith",
    "fastconv.gradcheck",
    "fastconv.parameter",
    "fastconv.datasets",
    "fastconv.nn",
    "fastconv.optim",
    "fastconv.lenet",
)


def _signature(obj):
    if inspect.isclass(obj):
        methods = {  # inherited ones too: moving a method to a base class changes nothing
            name: str(inspect.signature(member))
            for name, member in inspect.getmembers(obj, inspect.isfunction)
            if not name.startswith("_") or name == "__init__"
        }
        return {"class": methods}
    if callable(obj):
        try:
            return str(inspect.signature(obj))
        except (TypeError, ValueError):  # a builtin without a signature
            return "callable"
    return type(obj).__name__


def snapshot():
    out = {}
    for name in MODULES:
        module = importlib.import_module(name)
        out[name] = {n: _signature(getattr(module, n)) for n in sorted(module.__all__)}
    return out


if __name__ == "__main__":
    print(json.dumps(snapshot(), indent=1, sort_keys=True))
