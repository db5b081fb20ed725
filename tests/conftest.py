"""Shared fixtures: the array backend (NumPy / CuPy), per-dtype tolerances, the hypothesis profile."""

import os
import sys

import numpy as np
import pytest

# pytest runs with --import-mode=importlib (see pyproject.toml), which keeps tests/ off sys.path;
# put it back so the test modules can `import reference`.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    from hypothesis import settings
except ImportError:  # the property tests skip themselves without hypothesis
    pass
else:
    settings.register_profile("ci", max_examples=30, deadline=None)
    settings.register_profile("thorough", max_examples=500, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _to_numpy(a):
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return np.asarray(a)
    return a.get()  # cupy.ndarray


class Backend:
    """The array module a test runs on: `xp` is numpy or cupy."""

    def __init__(self, name, xp):
        self.name = name
        self.xp = xp

    def to_device(self, a):
        return a if self.xp is np else self.xp.asarray(a)

    def to_numpy(self, a):
        return _to_numpy(a)

    def __repr__(self):
        return f"Backend({self.name})"


def _gpu_backend():
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        pytest.skip(f"cupy not importable: {exc}")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        pytest.skip(f"no CUDA device: {exc}")
    if count < 1:
        pytest.skip("no CUDA device")
    return Backend("gpu", cupy)


@pytest.fixture
def restore_threads():
    """Whatever a test sets, fastconv's thread count goes back to what it was."""
    import fastconv

    before = fastconv.get_num_threads()
    try:
        yield before
    finally:
        fastconv.set_num_threads(before)
    assert fastconv.get_num_threads() == before


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def backend(request):
    if request.param == "cpu":
        return Backend("cpu", np)
    return _gpu_backend()


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def tolerance(dtype, reduction=1):
    """rtol/atol for a result of `dtype` that sums `reduction` products of O(1) random values.

    Such a sum has magnitude ~ sqrt(reduction), so atol grows with sqrt(reduction) too.
    """
    dtype = np.dtype(dtype)
    scale = float(np.sqrt(max(int(reduction), 1)))
    if dtype == np.float32:
        return dict(rtol=1e-4, atol=1e-5 * scale)
    if dtype == np.float64:
        return dict(rtol=1e-10, atol=1e-10 * scale)
    raise AssertionError(f"no tolerance for {dtype}")


def assert_close(actual, expected, dtype, reduction=1, err_msg=""):
    """Check the dtype of `actual` (numpy or cupy) and its values against a float64 reference."""
    actual = _to_numpy(actual)
    assert actual.dtype == np.dtype(dtype), f"dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == np.shape(expected), (
        f"shape {actual.shape}, expected {np.shape(expected)}"
    )
    np.testing.assert_allclose(
        actual.astype(np.float64),
        expected,
        err_msg=err_msg,
        equal_nan=True,
        **tolerance(dtype, reduction),
    )


@pytest.fixture(scope="session", name="assert_close")
def assert_close_fixture():
    return assert_close


@pytest.fixture(scope="session", name="tolerance")
def tolerance_fixture():
    return tolerance


# ----------------------------------------------------------------- MNIST

MNIST_ENV = "FASTCONV_MNIST"
_DEFAULT_MNIST = os.path.normpath(
    os.path.join(
        os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "shared", "data", "mnist"
    )
)


def real_mnist_dir():
    """The directory of the real MNIST files: $FASTCONV_MNIST when set, else ../shared/data/mnist
    beside the repository; None when it is not there."""
    from pathlib import Path

    path = Path(os.environ.get(MNIST_ENV) or _DEFAULT_MNIST).resolve()
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def mnist_dir():
    """The real MNIST directory (see real_mnist_dir); skips the test without it."""
    path = real_mnist_dir()
    if path is None:
        pytest.skip(f"real MNIST not found: set {MNIST_ENV} or put it in {_DEFAULT_MNIST}")
    return path
