"""Import a script that is not in a package (a benchmark, the emulator's case driver) by path."""

import importlib.util
import sys


def load_script(path, name):
    """The module run from `path`, registered as nothing (``name`` labels it in tracebacks);
    no __pycache__ is written beside it."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = dont_write
    return module
