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


def test_verbatim_port_of_torch_avg_pool_fails_loudly():
    x = np.ones((1, 1, 6, 6))
    with pytest.raises(TypeError):  # torch: (x, kernel, stride, padding, ceil_mode, ...)
        fc.avg_pool2d(x, 3, 2, 1, False)
    with pytest.raises(TypeError):
        fc.avg_pool2d_backward(np.ones((1, 1, 3, 3)), x.shape, 3, 2, 1, False)


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
