"""fastconv.set_gpu_precision / get_gpu_precision / gpu_precision: the switch itself (no GPU
needed). What the kernels compute under it: tests/gpu_emulation/tc_cases.py (emulated) and
tests/test_gpu_backend.py (on a GPU)."""

import threading

import pytest

import fastconv
from fastconv._backend.gpu import precision as gpu_precision


@pytest.fixture(autouse=True)
def _restore():
    previous = fastconv.get_gpu_precision()
    yield
    fastconv.set_gpu_precision(previous)


def test_default_is_strict_fp32():
    assert fastconv.get_gpu_precision() == "fp32"
    assert gpu_precision.effective("f", 9) == "fp32"


def test_set_returns_previous_and_rejects_bad_values():
    assert fastconv.set_gpu_precision("tf32") == "fp32"
    assert fastconv.get_gpu_precision() == "tf32"
    assert fastconv.set_gpu_precision("3xtf32") == "tf32"
    for bad in ("TF32", "fp16", "", None, 32, b"tf32"):
        with pytest.raises(ValueError, match="fp32"):
            fastconv.set_gpu_precision(bad)
        with pytest.raises(ValueError, match="fp32"):
            with fastconv.gpu_precision(bad):
                pass  # pragma: no cover
    assert fastconv.get_gpu_precision() == "3xtf32"  # a refused value changes nothing


def test_context_manager_is_per_thread_and_restores():
    seen = {}
    with fastconv.gpu_precision("tf32"):
        assert fastconv.get_gpu_precision() == "tf32"
        other = threading.Thread(target=lambda: seen.update(p=fastconv.get_gpu_precision()))
        other.start()
        other.join()
        with fastconv.gpu_precision("3xtf32"):
            assert fastconv.get_gpu_precision() == "3xtf32"
        assert fastconv.get_gpu_precision() == "tf32"
    assert seen["p"] == "fp32" and fastconv.get_gpu_precision() == "fp32"
    with pytest.raises(KeyError):
        with fastconv.gpu_precision("tf32"):
            raise KeyError("x")
    assert fastconv.get_gpu_precision() == "fp32"


def test_effective_only_float32_on_sm80():
    with fastconv.gpu_precision("tf32"):
        assert gpu_precision.effective("f", 8) == "tf32"
        assert gpu_precision.effective("f", 9) == "tf32"
        assert gpu_precision.effective("d", 9) == "fp32"  # float64: never tensor cores
        assert gpu_precision.effective("f", 7) == "fp32"  # Volta/Turing: no TF32
    assert set(gpu_precision.SUFFIX) == set(gpu_precision.PRECISIONS)


def test_gpu_kernel_names_exist():
    from fastconv._backend.gpu import kernels as gpu_kernels

    tc = gpu_kernels.KERNELS["conv_tc.cu"]
    for base in ("conv_igemm", "conv_wgrad"):
        for mode in ("tf32", "3xtf32"):
            assert base + gpu_precision.SUFFIX[mode] in tc
    exprs = gpu_kernels.name_expressions("conv_tc.cu")
    assert exprs and all("<float," in e for e in exprs)  # float only
