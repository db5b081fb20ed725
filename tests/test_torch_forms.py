"""torch's argument forms (issue 22): the 1-tuples nn.Conv1d and nn.Conv2d store, stride=()
for the pools, and the pooling flags keyword-only so that a verbatim port of torch's positional
order fails loudly instead of meaning something else."""

import numpy as np
import pytest

import fastconv as fc


def test_conv1d_takes_the_module_attributes_of_torch():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3, 11)), rng.standard_normal((4, 3, 3)), np.ones(4)
    stored = dict(stride=(2,), padding=(1,), dilation=(2,), groups=1)  # nn.Conv1d's attributes
    expected = fc.conv1d(x, w, b, 2, 1, 2, 1)
    np.testing.assert_array_equal(fc.conv1d(x, w, b, *stored.values()), expected)
    g = np.ones_like(expected)
    for got, want in zip(
        fc.conv1d_backward(g, x, w, **stored), fc.conv1d_backward(g, x, w, 2, 1, 2)
    ):
        np.testing.assert_array_equal(got, want)


def test_one_element_tuples_for_the_2d_ops_and_pools():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 10, 9)), rng.standard_normal((4, 3, 3, 3))
    np.testing.assert_array_equal(
        fc.conv2d(x, w, None, (2,), (1,), (2,)), fc.conv2d(x, w, None, 2, 1, 2)
    )
    wt = rng.standard_normal((3, 2, 3, 3))
    np.testing.assert_array_equal(
        fc.conv_transpose2d(x, wt, None, (2,), (1,), (1,)),
        fc.conv_transpose2d(x, wt, None, 2, 1, 1),
    )
    np.testing.assert_array_equal(fc.max_pool2d(x, (3,), (2,), (1,)), fc.max_pool2d(x, 3, 2, 1))
    np.testing.assert_array_equal(fc.avg_pool2d(x, (3,), (2,), (1,)), fc.avg_pool2d(x, 3, 2, 1))
    # torch's stride=() means the default (the kernel size)
    np.testing.assert_array_equal(fc.max_pool2d(x, 3, ()), fc.max_pool2d(x, 3))
    np.testing.assert_array_equal(fc.avg_pool2d(x, 2, []), fc.avg_pool2d(x, 2))


def test_verbatim_port_of_torch_avg_pool_means_what_it_means_in_torch():
    """The issue's two cases: torch's 5th positional argument is ceil_mode, its 6th
    count_include_pad (an old fastconv order read the 5th as count_include_pad)."""
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 8))
    np.testing.assert_array_equal(
        fc.avg_pool2d(x, 3, 2, 1, False), fc.avg_pool2d(x, 3, 2, 1, ceil_mode=False)
    )
    assert fc.avg_pool2d(x, 3, 2, 0, True).shape == (2, 3, 3, 4)  # ceil mode: 3, 4 windows
    np.testing.assert_array_equal(
        fc.avg_pool2d(x, 3, 2, 1, True, False, 4),
        fc.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False, divisor_override=4),
    )
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for args in (
        (3, 2, 1, False),
        (3, 2, 0, True),
        (3, 2, 1, True, False),
        (2, 1, 1, False, True, 3),
    ):
        expected = F.avg_pool2d(torch.from_numpy(x), *args).numpy()
        np.testing.assert_allclose(fc.avg_pool2d(x, *args), expected, rtol=1e-12, atol=1e-14)


def test_flags_without_a_torch_order_stay_keyword_only():
    """avg_pool2d_backward has no torch counterpart, and nn.AvgPool2D's 4th positional argument
    was count_include_pad where torch's is ceil_mode: their flags are keyword-only, so a call in
    either order fails loudly instead of meaning something else."""
    from fastconv import nn

    x = np.ones((1, 1, 6, 6))
    with pytest.raises(TypeError):
        fc.avg_pool2d_backward(np.ones((1, 1, 3, 3)), x.shape, 3, 2, 1, False)
    with pytest.raises(TypeError):
        nn.AvgPool2D(3, 2, 1, True)


@pytest.mark.parametrize("bad", [(), (1, 2, 3)])
def test_other_lengths_are_still_refused_naming_the_argument(bad):
    x, w = np.ones((1, 1, 6, 6)), np.ones((1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"\bstride\b"):
        fc.conv2d(x, w, None, bad)
    with pytest.raises((ValueError, TypeError), match=r"\bstride\b"):
        fc.conv1d(x[:, :, 0], w[:, :, 0], None, bad)


def test_layers_and_summary_take_torch_forms():
    from fastconv import nn

    x = np.random.default_rng(2).standard_normal((2, 3, 20)).astype(np.float32)
    torch_like = nn.Conv1D(3, 4, 3, stride=(2,), padding=(1,), dilation=(2,), rng=0)
    plain = nn.Conv1D(3, 4, 3, stride=2, padding=1, dilation=2, rng=0)
    np.testing.assert_array_equal(torch_like.forward(x), plain.forward(x))
    rows = [str(nn.Sequential(layer).summary((3, 20))) for layer in (torch_like, plain)]
    assert rows[0] == rows[1]
    pools = [nn.Sequential(nn.MaxPool2D(2, stride=s)).summary((3, 8, 8)) for s in ((), None, (2,))]
    assert str(pools[0]) == str(pools[1]) == str(pools[2])
