"""fastconv.nn: numerical gradient checks of every layer, state, modes, initialisation, errors."""

import re

import numpy as np
import pytest

from fastconv import functional as F
from fastconv import nn
from fastconv.gradcheck import gradcheck_layer
from fastconv.parameter import Parameter


@pytest.fixture
def x4(rng):
    return rng.standard_normal((2, 4, 7, 6))


# ----------------------------------------------------------------- gradient checks (float64)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=4, out_channels=6, kernel_size=3),
        dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, padding=1),
        dict(
            in_channels=4,
            out_channels=6,
            kernel_size=(2, 3),
            stride=(1, 2),
            padding=(2, 0),
            dilation=(2, 1),
        ),
        dict(in_channels=4, out_channels=6, kernel_size=3, groups=2, padding="same"),
        dict(in_channels=4, out_channels=4, kernel_size=3, groups=4, stride=2),  # depthwise
        dict(in_channels=4, out_channels=5, kernel_size=3, activation="relu", padding=1),
        dict(in_channels=4, out_channels=5, kernel_size=2, bias=False),
        dict(in_channels=4, out_channels=5, kernel_size=(7, 6), activation="relu"),  # a matmul
        dict(in_channels=4, out_channels=5, kernel_size=(7, 6), stride=3, bias=False),
    ],
    ids=[
        "plain",
        "stride-pad",
        "dilated-nonsquare",
        "groups-same",
        "depthwise",
        "relu",
        "nobias",
        "whole-input",
        "whole-input-nobias",
    ],
)
def test_conv2d_gradcheck(kwargs, x4):
    layer = nn.Conv2D(**kwargs, rng=3)
    report = gradcheck_layer(layer, x4)
    expected = {"input", "weight"} | ({"bias"} if kwargs.get("bias", True) else set())
    assert set(report.checks) == expected
    assert report["weight"].checked == layer.weight.size


@pytest.mark.parametrize(
    "layer",
    [
        nn.MaxPool2D(2),
        nn.MaxPool2D((3, 2), stride=(2, 1), padding=1),
        nn.AvgPool2D(2),
        nn.AvgPool2D(3, 2, 1),
        nn.AvgPool2D(3, 2, 1, count_include_pad=False),
        nn.ReLU(),
        nn.Tanh(),
        nn.Sigmoid(),
        nn.Flatten(),
        nn.Dropout(0.4, rng=5),
    ],
    ids=lambda layer: repr(layer),
)
def test_parameter_free_layers_gradcheck(layer, x4):
    report = gradcheck_layer(layer, x4)
    assert list(report.checks) == ["input"] and report["input"].checked == x4.size


@pytest.mark.parametrize("activation", [None, "relu"])
def test_linear_gradcheck(activation, rng):
    report = gradcheck_layer(
        nn.Linear(7, 5, activation=activation, rng=0), rng.standard_normal((4, 7))
    )
    assert set(report.checks) == {"input", "weight", "bias"}


def test_softmax_cross_entropy_gradcheck(rng):
    logits = rng.standard_normal((5, 4)) * 3
    labels = np.array([0, 3, 1, 1, 2])
    report = gradcheck_layer(nn.SoftmaxCrossEntropy(), logits, labels)
    assert report["input"].checked == logits.size


def test_sequential_gradcheck(rng):
    model = nn.Sequential(
        nn.Conv2D(2, 3, 3, activation="relu", rng=0),
        nn.AvgPool2D(2),
        nn.Flatten(),
        nn.Dropout(0.3, rng=1),
        nn.Linear(3 * 3 * 3, 4, rng=2),
        nn.Sigmoid(),
    )
    report = gradcheck_layer(model, rng.standard_normal((3, 2, 8, 8)))
    assert set(report.checks) == {"input", "0.weight", "0.bias", "4.weight", "4.bias"}


# ----------------------------------------------------------------- forward semantics


def test_conv_and_linear_forward_match_functional(rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    conv = nn.Conv2D(3, 4, 3, padding=1, activation="relu", rng=0)
    conv.bias.data[...] = rng.standard_normal(4)
    expected = np.maximum(F.conv2d(x, conv.weight.data, conv.bias.data, padding=1), 0)
    np.testing.assert_allclose(conv(x), expected, rtol=1e-6, atol=1e-6)
    lin = nn.Linear(6, 2, rng=1)
    x2 = rng.standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_allclose(lin(x2), x2 @ lin.weight.data.T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("input_grad", [True, False])
def test_whole_input_conv_matches_conv2d(input_grad, rng):
    # C5-like: the kernel covers the input, so Conv2D runs a matrix product instead of conv2d.
    x = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
    g = rng.standard_normal((3, 6, 1, 1)).astype(np.float32)
    conv = nn.Conv2D(4, 6, 5, rng=0)
    conv.bias.data[...] = rng.standard_normal(6)
    y = conv(x)
    np.testing.assert_allclose(
        y, F.conv2d(x, conv.weight.data, conv.bias.data), rtol=1e-5, atol=1e-5
    )
    assert y.shape == (3, 6, 1, 1)
    grad_x = conv.backward(g, input_grad=input_grad)
    expected = F.conv2d_backward(g, x, conv.weight.data)
    if input_grad:
        np.testing.assert_allclose(grad_x, expected[0], rtol=1e-5, atol=1e-5)
    else:
        assert grad_x is None
    np.testing.assert_allclose(conv.weight.grad, expected[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(conv.bias.grad, expected[2], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="in_channels"):  # a wrong C, in the layer's words
        conv(np.zeros((1, 3, 5, 5), np.float32))


def test_activations_values(rng):
    x = np.array([-1e4, -3.0, 0.0, 2.0, 1e4], dtype=np.float32)
    with np.errstate(all="raise"):  # no overflow for large |x|
        y = nn.Sigmoid()(x)
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(y, 1 / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(nn.Tanh()(x), np.tanh(x))
    np.testing.assert_array_equal(nn.ReLU()(x), [0, 0, 0, 2, 1e4])
    assert nn.Sigmoid()(x).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "layer, f, df",
    [
        (nn.Sigmoid, lambda x: 1 / (1 + np.exp(-x)), lambda y: y * (1 - y)),
        (nn.Tanh, np.tanh, lambda y: 1 - y * y),
        (nn.ReLU, lambda x: np.maximum(x, 0), lambda y: (y > 0).astype(y.dtype)),
    ],
    ids=["Sigmoid", "Tanh", "ReLU"],
)
def test_activation_layers_on_0d_input(layer, f, df, dtype):
    """A 0-d x (the docs promise any shape): Sigmoid crashed on it, the others gave scalars."""
    act = layer()
    x = np.array(0.5, dtype)
    y = act(x)
    grad_x = act.backward(np.array(2.0, dtype))
    for result in (y, grad_x):
        assert type(result) is np.ndarray and result.shape == () and result.dtype == dtype
    np.testing.assert_allclose(y, f(0.5), rtol=1e-6)
    np.testing.assert_allclose(grad_x, 2.0 * df(f(0.5)), rtol=1e-6)


# ---------------------------------------------- input checks in the layer's words (in_channels)

# Every layer that checks its input: in_channels (in_features) 3 and the shape of a valid x.
INPUT_CHECKED = [
    pytest.param(lambda: nn.Conv2D(3, 4, 3), (2, 3, 8, 8), id="Conv2D"),
    pytest.param(lambda: nn.DepthwiseConv2D(3, 3), (2, 3, 8, 8), id="DepthwiseConv2D"),
    pytest.param(lambda: nn.SeparableConv2D(3, 4, 3), (2, 3, 8, 8), id="SeparableConv2D"),
    pytest.param(lambda: nn.ConvTranspose2D(3, 4, 3), (2, 3, 8, 8), id="ConvTranspose2D"),
    pytest.param(lambda: nn.Conv1D(3, 4, 3), (2, 3, 10), id="Conv1D"),
    pytest.param(lambda: nn.Linear(3, 4), (2, 3), id="Linear"),
]
CHANNELS_CHECKED = [p for p in INPUT_CHECKED if p.id != "Linear"]


def input_error(layer, shape):
    """The message of the ValueError the layer's forward raises for x of `shape`."""
    with pytest.raises(ValueError) as info:
        layer(np.zeros(shape, np.float32))
    return str(info.value)


def layer_head(layer):
    """A regex for how the messages start: the layer and the argument x disagrees with."""
    return rf"^{type(layer).__name__}\(in_(channels|features)=3, \.\.\.\) "


@pytest.mark.parametrize("make, shape", INPUT_CHECKED)
def test_layers_name_their_argument_for_wrong_channels(make, shape):
    """conv2d's own message says `x has C=5 channels but weight expects weight[1] * groups`: the
    layer names in_channels (in_features) instead."""
    layer = make()
    wrong = (shape[0], 5) + shape[2:]
    layout = r"\(N, (C|C_in|IN)(, [HWL])*\)"
    message = input_error(layer, wrong)
    assert re.match(
        layer_head(layer)
        + rf"got x with 5 (channels|features) \(axis 1 of {layout} {re.escape(str(wrong))}\)$",
        message,
    ), message


@pytest.mark.parametrize("make, shape", INPUT_CHECKED)
def test_layers_take_one_sample_without_its_batch_axis(make, shape):
    """torch's modules take (C, H, W) / (C, L) / (IN,): one sample, the result and the gradient
    without the batch axis, the same numbers as a batch of one."""
    batched, one = make(), make()
    one.load_state_dict(batched.state_dict())
    x = np.random.default_rng(0).standard_normal(shape[1:]).astype(np.float32)
    y1, yb = one(x), batched(x[None])
    assert y1.shape == yb.shape[1:]
    np.testing.assert_allclose(y1, yb[0], rtol=1e-6, atol=1e-6)
    g = np.random.default_rng(1).standard_normal(y1.shape).astype(np.float32)
    g1, gb = one.backward(g), batched.backward(g[None])
    assert g1.shape == x.shape
    np.testing.assert_allclose(g1, gb[0], rtol=1e-6, atol=1e-6)
    for p1, pb in zip(one.parameters(), batched.parameters()):
        np.testing.assert_allclose(p1.grad, pb.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make, shape", INPUT_CHECKED)
def test_layers_name_both_forms_for_a_wrong_ndim(make, shape):
    layer = make()
    message = input_error(layer, (3,) * (len(shape) - 2) if len(shape) > 2 else ())
    if len(shape) == 2:  # Linear: (*, IN)
        assert (
            message
            == "Linear(in_features=3, ...) takes x (*, IN) with at least one axis, got a 0-d x"
        )
        return
    assert re.match(layer_head(layer) + rf"takes {len(shape)}-D x \(N, ", message), message
    assert f" or {len(shape) - 1}-D (C" in message, message


@pytest.mark.parametrize("make, shape", CHANNELS_CHECKED)
def test_layers_hint_at_channels_last(make, shape):
    layer = make()
    order = (0, len(shape) - 1) + tuple(range(1, len(shape) - 1))
    last = np.zeros(shape, np.float32).transpose((0,) + tuple(range(2, len(shape))) + (1,))
    message = input_error(layer, last.shape)
    assert re.match(layer_head(layer) + "got x with ", message), message
    assert message.endswith(f"; channels last? x.transpose{order} puts them on axis 1")
    assert layer(last.transpose(order)).shape[0] == shape[0]  # the hint's fix runs
    message = input_error(layer, last.shape[1:])  # one sample, channels last
    one = (len(shape) - 2,) + tuple(range(len(shape) - 2))
    assert re.match(layer_head(layer) + r"got x with \d+ channels \(axis 0 of \(C", message)
    assert message.endswith(f"; channels last? x.transpose{one} puts them on axis 0"), message
    assert layer(last[0].transpose(one)).shape[0] == layer(last.transpose(order)).shape[1]


def test_linear_hints_at_flattening_and_other_ndims_get_no_hint():
    message = input_error(nn.Linear(12, 4), (2, 3, 2, 2))
    assert message == (
        "Linear(in_features=12, ...) got x with 2 features (the last axis of (*, IN) "
        "(2, 3, 2, 2)): not flattened? x.reshape(len(x), -1) (or nn.Flatten()) has shape (2, 12)"
    )
    assert input_error(nn.Conv2D(3, 4, 3), (8, 8)) == (
        "Conv2D(in_channels=3, ...) takes 4-D x (N, C, H, W) or 3-D (C, H, W) for one sample, "
        "got 2-D x of shape (8, 8)"
    )


def test_functional_ops_keep_the_kernels_words():
    """Only the layers changed: conv2d itself still speaks of weight and groups."""
    with pytest.raises(ValueError, match=r"weight\[1\] \* groups"):
        F.conv2d(np.zeros((2, 5, 8, 8)), np.zeros((4, 3, 3, 3)))


def test_flatten_is_a_view():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    y = nn.Flatten()(x)
    assert y.shape == (2, 12) and np.shares_memory(x, y)


def test_dropout_train_and_eval(rng):
    x = np.ones((200, 100), dtype=np.float32)
    drop = nn.Dropout(0.25, rng=0)
    y = drop(x)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(drop.backward(x), y)  # backward applies the same mask
    assert y.dtype == np.float32
    np.testing.assert_array_equal(nn.Dropout(0.25, rng=0)(x), y)  # seeded
    assert drop.eval()(x) is x
    assert np.all(nn.Dropout(1.0, rng=0)(x) == 0)
    for bad in (-0.1, 1.5, "0.5"):
        with pytest.raises(ValueError, match="probability"):
            nn.Dropout(bad)


# ----------------------------------------------------------------- backward protocol


def test_gradients_accumulate_and_input_grad_false(rng):
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    conv = nn.Conv2D(3, 2, 3, rng=0)
    g = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    conv(x)
    assert conv.backward(g, input_grad=False) is None
    first = conv.weight.grad.copy()
    assert np.abs(first).sum() > 0
    grad_x = conv.backward(g)
    assert grad_x.shape == x.shape
    np.testing.assert_allclose(conv.weight.grad, 2 * first, rtol=1e-6)
    conv.weight.zero_grad()
    assert not conv.weight.grad.any()
    conv.bias.grad = None  # "no gradient yet": backward assigns it
    conv.backward(g)
    np.testing.assert_allclose(conv.bias.grad, g.sum(axis=(0, 2, 3)), rtol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Conv2D(1, 1, 1),
        lambda: nn.Linear(2, 2),
        lambda: nn.MaxPool2D(2),
        lambda: nn.AvgPool2D(2),
        lambda: nn.ReLU(),
        lambda: nn.Tanh(),
        lambda: nn.Sigmoid(),
        lambda: nn.Flatten(),
        lambda: nn.Dropout(),
        lambda: nn.SoftmaxCrossEntropy(),
        lambda: nn.Sequential(nn.ReLU()),
    ],
)
def test_backward_before_forward_raises(make):
    with pytest.raises(RuntimeError, match="before forward"):
        make().backward(np.ones((1, 1, 2, 2)))


def test_eval_forward_keeps_nothing_for_backward():
    conv = nn.Conv2D(1, 1, 1, rng=0)
    x = np.ones((1, 1, 2, 2), np.float32)
    conv.eval()(x)
    with pytest.raises(RuntimeError, match="eval-mode"):
        conv.backward(x)
    conv.train()(x)
    assert conv.backward(x).shape == x.shape


def test_train_eval_flags_are_recursive():
    model = nn.Sequential(nn.Conv2D(1, 1, 1), nn.Sequential(nn.Dropout(), nn.ReLU()))
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules()) and len(model.modules()) == 5


# ----------------------------------------------------------------- structure and state


def test_named_parameters_and_children():
    seq = nn.Sequential(nn.Conv2D(1, 2, 3, rng=0), nn.ReLU(), nn.Linear(2, 3, bias=False))
    assert list(seq.named_parameters()) == ["0.weight", "0.bias", "2.weight"]
    assert [p.name for p in seq.parameters()] == ["0.weight", "0.bias", "2.weight"]
    named = nn.Sequential({"conv1": nn.Conv2D(1, 2, 3), "act": nn.ReLU()})
    assert list(named.named_parameters()) == ["conv1.weight", "conv1.bias"]
    assert named["conv1"] is named.conv1 is named[0] and len(named) == 2
    with pytest.raises(TypeError, match="Layers"):
        nn.Sequential(nn.ReLU(), np.zeros(3))


def test_state_dict_round_trip_and_copies(rng):
    a = nn.Sequential(nn.Conv2D(1, 2, 3, rng=0), nn.Linear(4, 3, rng=1))
    b = nn.Sequential(nn.Conv2D(1, 2, 3, rng=7), nn.Linear(4, 3, rng=8))
    state = a.state_dict()
    state["0.weight"][...] = 5.0  # a copy: the model is untouched
    assert not np.all(a[0].weight.data == 5.0)
    weight_buffer = b[0].weight.data
    assert b.load_state_dict(a.state_dict()) == ([], [])
    assert b[0].weight.data is weight_buffer  # written in place: optimisers keep working
    for name, p in b.named_parameters().items():
        np.testing.assert_array_equal(p.data, a.named_parameters()[name].data)


def test_load_state_dict_errors_name_the_parameter():
    model = nn.Sequential(nn.Conv2D(1, 2, 3, rng=0), nn.Linear(4, 3, rng=1))
    before = model.state_dict()
    bad = dict(before, **{"0.weight": np.zeros((2, 1, 5, 5))})
    with pytest.raises(ValueError, match=r"'0\.weight'.*\(2, 1, 5, 5\)"):
        model.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"missing parameters \['1\.bias'\]"):
        model.load_state_dict({k: v for k, v in before.items() if k != "1.bias"})
    with pytest.raises(ValueError, match=r"unexpected parameters \['2\.weight'\]"):
        model.load_state_dict(dict(before, **{"2.weight": np.zeros(1)}))
    for name, p in model.named_parameters().items():  # nothing was changed by the failures
        np.testing.assert_array_equal(p.data, before[name])
    missing, unexpected = model.load_state_dict(
        {"0.bias": np.ones(2), "x": np.ones(1)}, strict=False
    )
    assert missing == ["0.weight", "1.weight", "1.bias"] and unexpected == ["x"]
    np.testing.assert_array_equal(model[0].bias.data, [1, 1])


def test_save_load(tmp_path, rng):
    model = nn.Sequential(nn.Conv2D(1, 2, 3, rng=0), nn.Flatten(), nn.Linear(18, 3, rng=1))
    path = tmp_path / "model.npz"
    model.save(path)
    other = nn.Sequential(nn.Conv2D(1, 2, 3, rng=5), nn.Flatten(), nn.Linear(18, 3, rng=6))
    x = rng.standard_normal((4, 1, 5, 5)).astype(np.float32)
    assert not np.array_equal(other(x), model(x))
    assert other.load(path) is other
    np.testing.assert_array_equal(other(x), model(x))


def test_setattr_needs_super_init():
    class Broken(nn.Layer):
        def __init__(self):
            self.weight = Parameter(np.zeros(2))

    with pytest.raises(RuntimeError, match="super"):
        Broken()


def test_bias_none_is_not_a_parameter():
    conv = nn.Conv2D(2, 2, 1, bias=False)
    assert conv.bias is None and list(conv.named_parameters()) == ["weight"]


# ----------------------------------------------------------------- initialisation, dtype, device


def test_seeded_init_is_reproducible():
    a, b, c = (nn.Conv2D(3, 8, 5, rng=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(a.weight.data, c.weight.data)
    assert a.weight.dtype == np.float32 and not a.bias.data.any()
    g1, g2 = np.random.default_rng(4), np.random.default_rng(4)
    np.testing.assert_array_equal(
        nn.Linear(3, 2, rng=g1).weight.data, nn.Linear(3, 2, rng=g2).weight.data
    )


def test_init_schemes_have_their_scale():
    fan_in = 64 * 3 * 3
    relu = nn.Conv2D(64, 64, 3, activation="relu", rng=0)  # default: he_uniform
    assert relu.init == "he_uniform"
    assert np.abs(relu.weight.data).max() <= np.sqrt(6 / fan_in)
    np.testing.assert_allclose(relu.weight.data.std(), np.sqrt(2 / fan_in), rtol=0.02)
    glorot = nn.Linear(300, 100, rng=0)  # default without ReLU: glorot_uniform
    assert glorot.init == "glorot_uniform"
    np.testing.assert_allclose(glorot.weight.data.std(), np.sqrt(2 / 400), rtol=0.02)
    he_normal = nn.Linear(400, 300, init="kaiming_normal", rng=0)
    np.testing.assert_allclose(he_normal.weight.data.std(), np.sqrt(2 / 400), rtol=0.02)
    with pytest.raises(ValueError, match="init must be one of"):
        nn.Linear(2, 2, init="orthogonal")
    with pytest.raises(TypeError, match="rng"):
        nn.Linear(2, 2, rng="seed")


def test_astype_and_device_errors():
    lin = nn.Linear(3, 2, dtype=np.float32, rng=0)
    assert lin.astype(np.float64) is lin and lin.weight.dtype == np.float64
    assert lin.weight.grad.dtype == np.float64
    assert lin(np.ones((1, 3))).dtype == np.float64
    with pytest.raises(ValueError, match="device"):
        lin.to("tpu")
    assert lin.to("cpu") is lin and isinstance(lin.weight.data, np.ndarray)


@pytest.mark.gpu
def test_gpu_layers_match_cpu(rng):
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:
        pytest.skip(f"no CUDA device: {exc}")

    def make():
        return nn.Sequential(
            nn.Conv2D(1, 3, 3, activation="relu", rng=0),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dropout(0.2, rng=1),
            nn.Linear(27, 4, rng=2),
            nn.Tanh(),
        )

    cpu, gpu = make(), make().to("gpu")
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    gpu.eval(), cpu.eval()
    np.testing.assert_allclose(cupy.asnumpy(gpu(cupy.asarray(x))), cpu(x), rtol=1e-4, atol=1e-5)
    gpu.train()
    out = gpu(cupy.asarray(x))
    gx = gpu.backward(cupy.ones_like(out))
    assert isinstance(gx, cupy.ndarray) and gx.shape == x.shape
    assert isinstance(gpu.state_dict()["0.weight"], np.ndarray)
    assert isinstance(gpu.to("cpu")[0].weight.data, np.ndarray)


def _layer_by_layer_backward(model, grad, input_grad):
    """Sequential.backward written out: each layer's own backward, last first."""
    layers = list(model)
    for i in range(len(layers) - 1, -1, -1):
        grad = layers[i].backward(grad, input_grad=input_grad or i > 0)
    return grad


def _grads_both_ways(make, x, grad_y, reuse, input_grad=True):
    """(Sequential.backward's result and parameter grads, the layer-by-layer ones), from two
    equal models (make(): a fresh Sequential) on the same input."""
    results = []
    for run in (
        lambda m, g: m.backward(g, input_grad=input_grad),
        lambda m, g: _layer_by_layer_backward(m, g, input_grad),
    ):
        model = make().reuse_buffers(reuse)
        for _ in range(2):  # with reuse, the second step writes into the first one's buffers
            for p in model.parameters():
                p.grad = None
            model.forward(x)
            grad_x = run(model, grad_y)
        results.append(
            ([] if grad_x is None else [grad_x.copy()])
            + [p.grad.copy() for p in model.parameters()]
        )
    return results


@pytest.mark.parametrize("reuse", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "make",
    [
        # LeNet-5's pairs: fused ReLU, 2x2 max pooling
        lambda dtype: nn.Sequential(
            nn.Conv2D(2, 4, 3, activation="relu", rng=0, dtype=dtype),
            nn.MaxPool2D(2),
            nn.Conv2D(4, 3, 3, activation="relu", rng=1, dtype=dtype),
            nn.MaxPool2D(2),
        ),
        # a ReLU layer; overlapping, padded, ceil-mode windows; a Linear's fused ReLU
        lambda dtype: nn.Sequential(
            nn.Conv2D(2, 4, 3, padding=1, rng=0, dtype=dtype),
            nn.ReLU(),
            nn.MaxPool2D(3, stride=2, padding=1, ceil_mode=True),
            nn.Flatten(),
            nn.Linear(144, 6, activation="relu", rng=2, dtype=dtype),
        ),
        # adaptive max pooling after a ReLU; a pooling after no ReLU
        lambda dtype: nn.Sequential(
            nn.Conv2D(2, 3, 3, activation="relu", rng=0, dtype=dtype),
            nn.AdaptiveMaxPool2D((3, 4)),
            nn.MaxPool2D(2),
        ),
    ],
    ids=["lenet", "relu_layer_overlapping", "adaptive"],
)
def test_relu_derivative_after_max_pooling_is_bitwise_the_same(make, dtype, reuse, rng):
    """Sequential takes a ReLU's derivative on the max pooling's output after it (a quarter
    of the size): the gradients equal those of each layer's own backward bit for bit, with
    ties, zeros, infs and NaNs in the pooled values and the gradients."""
    x = rng.integers(-2, 3, (3, 2, 10, 10)).astype(dtype)
    x[0, 0, 2, 3], x[1, 1, 5, 5], x[2, 0, 7, 1] = np.nan, np.inf, -np.inf
    model = make(dtype)
    y = model.forward(x)
    grad_y = rng.integers(-2, 3, y.shape).astype(dtype)
    grad_y.flat[::7] = np.inf
    grad_y.flat[::11] = -0.0
    grad_y.flat[::13] = np.nan
    for input_grad in (True, False):
        folded, plain = _grads_both_ways(lambda: make(dtype), x, grad_y, reuse, input_grad)
        assert len(folded) == len(plain)
        for a, b in zip(folded, plain):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


def test_relu_derivative_after_max_pooling_skips_the_full_size_one(monkeypatch, rng):
    """In LeNet-5's conv -> max-pool pairs the ReLU's derivative runs on the pooled gradient
    only: relu_backward never sees a conv output's shape."""
    from fastconv.lenet import LeNet5

    model = LeNet5(seed=0)
    x = rng.standard_normal((2, 1, 32, 32)).astype(np.float32)
    logits = model.forward(x)
    shapes = []
    relu_backward = F.relu_backward
    monkeypatch.setattr(
        F, "relu_backward", lambda g, y, **kw: shapes.append(g.shape) or relu_backward(g, y, **kw)
    )
    model.backward(np.ones_like(logits), input_grad=False)
    assert shapes == [(2, 84), (2, 120, 1, 1), (2, 16, 5, 5), (2, 6, 14, 14)]
