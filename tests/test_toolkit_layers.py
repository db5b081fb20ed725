"""The toolkit layers: ConvTranspose2D, Conv1D, DepthwiseConv2D, SeparableConv2D, GlobalAvgPool2D,
AdaptiveAvgPool2D, ceil-mode pooling layers; backward by central differences, forward against the
functional ops and the references, state_dict round trips, PyTorch equivalents when importable."""

import numpy as np
import pytest
from reference import conv2d_ref, conv_transpose2d_ref

import fastconv as fc
from fastconv import nn
from fastconv.gradcheck import gradcheck_layer


def _x(rng, shape):
    return rng.standard_normal(shape)


LAYERS = {
    "conv_transpose": (
        lambda: nn.ConvTranspose2D(3, 4, 4, stride=2, padding=1, rng=0),
        (2, 3, 4, 3),
    ),
    "conv_transpose_groups_outpad": (
        lambda: nn.ConvTranspose2D(
            4, 2, 3, stride=2, padding=1, output_padding=1, groups=2, bias=False, rng=1
        ),
        (1, 4, 3, 3),
    ),
    "conv1d": (lambda: nn.Conv1D(3, 4, 5, padding="same", rng=2), (2, 3, 9)),
    "conv1d_relu_stride": (
        lambda: nn.Conv1D(2, 4, 3, stride=2, dilation=2, groups=2, activation="relu", rng=3),
        (2, 2, 11),
    ),
    "depthwise": (lambda: nn.DepthwiseConv2D(3, 3, padding=1, rng=4), (2, 3, 5, 5)),
    "depthwise_x2_stride": (
        lambda: nn.DepthwiseConv2D(2, (3, 2), depth_multiplier=2, stride=2, rng=5),
        (1, 2, 6, 5),
    ),
    "separable": (lambda: nn.SeparableConv2D(3, 4, 3, padding="same", rng=6), (2, 3, 5, 4)),
    "separable_x2_relu": (
        lambda: nn.SeparableConv2D(
            2, 3, 3, depth_multiplier=2, stride=2, dilation=1, activation="relu", rng=7
        ),
        (1, 2, 7, 7),
    ),
    "separable_no_bias": (lambda: nn.SeparableConv2D(2, 2, 2, bias=False, rng=8), (1, 2, 4, 4)),
    "global_pool": (lambda: nn.GlobalAvgPool2D(), (2, 3, 4, 5)),
    "adaptive_pool": (lambda: nn.AdaptiveAvgPool2D((2, 3)), (2, 2, 5, 7)),
    "max_pool_ceil": (lambda: nn.MaxPool2D(2, ceil_mode=True), (1, 2, 5, 5)),
    "avg_pool_ceil": (lambda: nn.AvgPool2D(3, 2, 1, ceil_mode=True), (1, 2, 6, 6)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_gradcheck(name, rng):
    make, shape = LAYERS[name]
    layer = make()
    for p in layer.parameters():  # a nonzero bias, so its gradient matters
        p.data[...] = rng.standard_normal(p.shape)
    gradcheck_layer(layer, _x(rng, shape), max_checks=30)
    if layer.parameters():
        gradcheck_layer(layer, _x(rng, shape), max_checks=20, check_input=False)


@pytest.mark.parametrize("name", [n for n in LAYERS if LAYERS[n][0]().parameters()])
def test_state_dict_round_trip(name, rng, tmp_path):
    make, _ = LAYERS[name]
    a, b = make(), make()
    for p in a.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    a.save(tmp_path / "m.npz")
    b.load(tmp_path / "m.npz")
    for (na, pa), (nb, pb) in zip(a.named_parameters().items(), b.named_parameters().items()):
        assert na == nb
        np.testing.assert_array_equal(pa.data, pb.data)


def test_conv_transpose_layer_matches_reference(rng):
    layer = nn.ConvTranspose2D(
        4,
        6,
        (3, 4),
        stride=(2, 3),
        padding=1,
        output_padding=(1, 2),
        groups=2,
        dilation=1,
        dtype=np.float64,
        rng=0,
    )
    layer.bias.data[...] = rng.standard_normal(6)
    assert layer.weight.shape == (4, 3, 3, 4)
    x = _x(rng, (2, 4, 3, 4))
    expected = conv_transpose2d_ref(x, layer.weight.data, layer.bias.data, (2, 3), 1, (1, 2), 2)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-12, atol=1e-12)


def test_separable_is_depthwise_then_pointwise(rng):
    layer = nn.SeparableConv2D(3, 5, 3, depth_multiplier=2, padding=1, dtype=np.float64, rng=0)
    layer.bias.data[...] = rng.standard_normal(5)
    assert layer.depthwise_weight.shape == (6, 1, 3, 3)
    assert layer.pointwise_weight.shape == (5, 6, 1, 1)
    assert sorted(layer.named_parameters()) == ["bias", "depthwise_weight", "pointwise_weight"]
    x = _x(rng, (2, 3, 6, 5))
    mid = conv2d_ref(x, layer.depthwise_weight.data, pad=(1, 1, 1, 1), groups=3)
    expected = conv2d_ref(mid, layer.pointwise_weight.data, layer.bias.data)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-12, atol=1e-12)
    # 6*9 + 6*5 + 5 weights, against 5*3*9 + 5 for a full 3x3 convolution
    assert sum(p.size for p in layer.parameters()) == 89


def test_depthwise_layer(rng):
    layer = nn.DepthwiseConv2D(4, 3, depth_multiplier=3, padding="same", dtype=np.float64, rng=0)
    assert layer.weight.shape == (12, 1, 3, 3) and layer.groups == 4
    x = _x(rng, (1, 4, 5, 5))
    np.testing.assert_allclose(
        layer(x),
        conv2d_ref(x, layer.weight.data, layer.bias.data, pad=(1, 1, 1, 1), groups=4),
        rtol=1e-12,
        atol=1e-12,
    )
    assert "depth_multiplier=3" in repr(layer)
    with pytest.raises(ValueError, match="depth_multiplier"):
        nn.DepthwiseConv2D(4, 3, depth_multiplier=0)
    with pytest.raises(ValueError, match="depth_multiplier"):
        nn.SeparableConv2D(4, 2, 3, depth_multiplier=1.5)


def test_conv1d_layer_matches_functional(rng):
    layer = nn.Conv1D(3, 4, 3, stride=2, padding=(1, 0), activation="relu", rng=0)
    x = _x(rng, (2, 3, 10)).astype(np.float32)
    np.testing.assert_array_equal(
        layer(x),
        fc.conv1d(
            x, layer.weight.data, layer.bias.data, stride=2, padding=(1, 0), activation="relu"
        ),
    )
    assert layer.weight.shape == (4, 3, 3)


def test_layers_match_torch(rng):
    torch = pytest.importorskip("torch")
    x = _x(rng, (2, 4, 5, 5))
    ct = nn.ConvTranspose2D(4, 2, 4, stride=2, padding=1, dtype=np.float64, rng=0)
    tct = torch.nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1).double()
    with torch.no_grad():
        tct.weight.copy_(torch.from_numpy(ct.weight.data))
        tct.bias.copy_(torch.from_numpy(ct.bias.data))
    xt = torch.from_numpy(x).requires_grad_()
    yt = tct(xt)
    g = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(ct(x), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ct.backward(g), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ct.weight.grad, tct.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    pool = nn.AdaptiveAvgPool2D(3)
    np.testing.assert_allclose(
        pool(x), torch.nn.AdaptiveAvgPool2d(3)(torch.from_numpy(x)).numpy(), rtol=1e-12
    )


def test_backward_before_forward_and_eval_keep_nothing(rng):
    for name, (make, shape) in LAYERS.items():
        layer = make()
        with pytest.raises(RuntimeError, match="before forward"):
            layer.backward(np.zeros(1))
        layer.eval()
        y = layer(_x(rng, shape).astype(np.float32))
        with pytest.raises(RuntimeError, match="before forward"):
            layer.backward(np.zeros_like(y))


def test_constructor_errors():
    with pytest.raises(ValueError, match="groups"):
        nn.ConvTranspose2D(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="groups"):
        nn.Conv1D(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="activation"):
        nn.Conv1D(3, 4, 3, activation="tanh")
    with pytest.raises(ValueError, match="activation"):
        nn.SeparableConv2D(3, 4, 3, activation="gelu")
    with pytest.raises(ValueError, match="output_padding"):
        nn.ConvTranspose2D(3, 4, 3, stride=2, output_padding=2)(np.zeros((1, 3, 4, 4)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_identical_across_thread_counts(dtype, rng):
    before = fc.get_num_threads()
    x = rng.standard_normal((5, 16, 13, 11)).astype(dtype)
    w = rng.standard_normal((16, 8, 4, 4)).astype(dtype)
    s = rng.standard_normal((5, 16, 301)).astype(dtype)
    w1 = rng.standard_normal((12, 16, 9)).astype(dtype)
    gy = rng.standard_normal((5, 8, 26, 22)).astype(dtype)
    gs = rng.standard_normal((5, 12, 301)).astype(dtype)

    def run():
        return (
            fc.conv_transpose2d(x, w, None, 2, 1),
            *fc.conv_transpose2d_backward(gy, x, w, 2, 1),
            fc.conv1d(s, w1, padding="same"),
            *fc.conv1d_backward(gs, s, w1, padding="same"),
            fc.adaptive_avg_pool2d(x, (5, 4)),
            fc.sigmoid(x),
        )

    try:
        results = []
        for n in (1, 2, 3):
            fc.set_num_threads(n)
            results.append(run())
    finally:
        fc.set_num_threads(before)
    for other in results[1:]:
        for i, (a, b) in enumerate(zip(results[0], other)):
            np.testing.assert_array_equal(a, b, err_msg=f"result {i}")
