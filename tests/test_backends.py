"""The array interface (fastconv._backend.ARRAY_OPS): its three backends are peers with the same
methods and signatures (thinc's consistency test), and the dispatcher picks them by array type.
The kernel interface (OPS) of the CPU and GPU kernel backends: tests/test_gpu_backend.py."""

import inspect

import numpy as np
import pytest

from fastconv import _dispatch
from fastconv._backend import ARRAY_OPS
from fastconv._backend.dask.ops import Dask
from fastconv._backend.eager import Eager


def _public_methods(cls):
    return {n for n, m in vars(cls).items() if not n.startswith("_") and inspect.isfunction(m)}


@pytest.mark.parametrize("backend", [Eager, Dask], ids=["eager (cpu, gpu)", "dask"])
def test_every_backend_has_exactly_the_array_interface(backend):
    assert _public_methods(backend) == set(ARRAY_OPS)


def test_signatures_identical_across_backends():
    for name in ARRAY_OPS:
        eager, dask = (
            inspect.signature(getattr(Eager, name)),
            inspect.signature(getattr(Dask, name)),
        )
        assert eager == dask, f"{name}: Eager{eager} but Dask{dask}"


def test_dispatcher_picks_the_backend_by_array_type():
    x = np.zeros((1, 1, 2, 2))
    cpu = _dispatch.backend(x=x, weight=None)
    assert isinstance(cpu, Eager) and cpu.device == "cpu"
    da = pytest.importorskip("dask.array")
    assert isinstance(_dispatch.backend(x=da.from_array(x), weight=x), Dask)
    with pytest.raises(ValueError, match=r"\bdevice\b"):
        _dispatch.device("tpu")
