"""fastconv.gradcheck: it passes correct gradients and catches wrong ones, with a useful report."""

import numpy as np
import pytest

from fastconv import nn
from fastconv.gradcheck import GradcheckReport, gradcheck, gradcheck_layer
from fastconv.nn.layer import accumulate_grad
from fastconv.parameter import Parameter


class Scale(nn.Layer):
    """y = x * w (w per feature); `bug` breaks one of its gradients on purpose."""

    def __init__(self, n, bug=None):
        super().__init__()
        self.w = Parameter(np.linspace(0.5, 2.0, n))
        self.bug = bug
        self._x = None

    def forward(self, x):
        self._x = x
        return x * self.w.data

    def backward(self, grad, *, input_grad=True):
        x = self._cached(self._x)
        grad_w = (grad * x).sum(axis=0)
        if self.bug == "weight":
            grad_w = grad_w * 1.01
        accumulate_grad(self.w, grad_w)
        if not input_grad:
            return None
        grad_x = grad * self.w.data
        if self.bug == "input":
            grad_x = grad_x.copy()
            grad_x[1, 2] += 1e-3
        return grad_x


def test_correct_layer_passes_with_report(rng):
    report = gradcheck_layer(Scale(4), rng.standard_normal((3, 4)))
    assert isinstance(report, GradcheckReport) and report.passed
    assert set(report.checks) == {"input", "w"}
    assert report["w"].checked == 4 and report["input"].total == 12
    assert report["w"].max_abs_error < 1e-8
    assert "max abs err" in str(report) and "ok" in str(report)


@pytest.mark.parametrize("bug, tensor", [("input", "input"), ("weight", "w")])
def test_wrong_gradient_is_caught(bug, tensor, rng):
    x = rng.standard_normal((3, 4))
    with pytest.raises(AssertionError, match=f"{tensor} .*FAILED"):
        gradcheck_layer(Scale(4, bug=bug), x)
    report = gradcheck_layer(Scale(4, bug=bug), x, raise_on_failure=False)
    assert not report.passed and not report[tensor].passed
    other = "w" if tensor == "input" else "input"
    assert report[other].passed
    if bug == "input":
        assert report["input"].worst_index == (1, 2)
        assert report["input"].max_abs_error == pytest.approx(1e-3, rel=1e-3)


def test_layer_under_test_is_left_untouched(rng):
    conv = nn.Conv2D(2, 3, 3, rng=0)
    weight = conv.weight.data.copy()
    conv.eval()
    gradcheck_layer(conv, rng.standard_normal((1, 2, 5, 5)).astype(np.float32))
    assert conv.weight.dtype == np.float32 and not conv.training
    np.testing.assert_array_equal(conv.weight.data, weight)
    assert not conv.weight.grad.any()


def test_max_checks_samples_elements(rng):
    report = gradcheck_layer(nn.Linear(30, 20, rng=0), rng.standard_normal((2, 30)), max_checks=7)
    assert report["weight"].checked == 7 and report["weight"].total == 600
    assert report["bias"].checked == 7 and report["input"].checked == 7


def test_check_input_false_checks_parameters_only(rng):
    report = gradcheck_layer(nn.Linear(3, 2, rng=0), rng.standard_normal((2, 3)), check_input=False)
    assert set(report.checks) == {"weight", "bias"}


def test_generic_gradcheck_with_dict_and_sequence(rng):
    a, b = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    report = gradcheck(
        lambda a, b: a * b + np.sin(a),
        {"a": a, "b": b},
        lambda g: {"a": g * (b + np.cos(a)), "b": g * a},
    )
    assert report.passed and set(report.checks) == {"a", "b"}
    # None: not checked; a deliberately wrong gradient of the other input fails.
    report = gradcheck(lambda a, b: a * b, [a, b], lambda g: (None, g * b), raise_on_failure=False)
    assert list(report.checks) == ["1"] and not report.passed
    # A 0-d output and a given output gradient.
    report = gradcheck(
        lambda a: (a**2).sum(), [a], lambda g: (2 * a * g,), grad_output=np.array(3.0)
    )
    assert report.passed


def test_inputs_restored_after_check(rng):
    a = rng.standard_normal(5)
    before = a.copy()
    gradcheck(lambda a: np.exp(a), [a], lambda g: (g * np.exp(a),))
    np.testing.assert_array_equal(a, before)


def test_argument_errors(rng):
    a = rng.standard_normal(3)
    with pytest.raises(TypeError, match="grad_inputs_fn"):
        gradcheck(lambda a: a, [a])
    with pytest.raises(TypeError, match="floating-point"):
        gradcheck(lambda a: a, [np.arange(3)], lambda g: (g,))
    with pytest.raises(ValueError, match="shape"):
        gradcheck(lambda a: a, [a], lambda g: (g[:2],))
    with pytest.raises(TypeError, match="Layer"):
        gradcheck_layer(lambda x: x, a)
