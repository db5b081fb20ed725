"""nn.summary / Sequential.summary: shapes match real forward passes, parameter counts, multiply-
adds and receptive fields worked out by hand, the table's text."""

from fractions import Fraction

import numpy as np
import pytest

from fastconv import nn
from fastconv.lenet import LeNet5


def _forward_shapes(model, input_shape):
    """Output shapes (without N) of each layer of a Sequential, by running it on zeros."""
    x = np.zeros((2,) + tuple(input_shape), np.float32)
    shapes = []
    model.eval()
    for layer in model:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    return shapes


def test_lenet5_summary():
    model = LeNet5(rng=0)
    s = model.summary((1, 32, 32))
    assert s.total_params == 61706 == sum(p.size for p in model.parameters())
    # C1 28*28*6*25, C3 10*10*16*150, C5 120*400, F6 120*84, output 84*10
    assert s.total_mult_adds == 117600 + 240000 + 48000 + 10080 + 840
    assert [r["output_shape"] for r in s.rows] == _forward_shapes(model, (1, 32, 32))
    rf = {r["name"]: (r["rf_size"], r["rf_jump"]) for r in s.rows}
    assert rf["c1"] == ((5, 5), (1, 1))
    assert rf["s2"] == ((6, 6), (2, 2))
    assert rf["c3"] == ((14, 14), (2, 2))
    assert rf["s4"] == ((16, 16), (4, 4))
    assert rf["c5"] == ((32, 32), (4, 4))  # C5 sees the whole 32x32 image
    assert rf["f6"] == ("all", "all")
    text = str(s)
    assert "Total params: 61,706" in text
    assert "c1 (Conv2D)" in text and "(N, 6, 28, 28)" in text and "117,600" in text
    assert "Total mult-adds per sample: 416,520" in text
    assert s.param_bytes == 61706 * 4
    tanh = LeNet5(activation="tanh", pooling="avg", rng=0).summary((1, 32, 32))
    assert tanh.total_params == 61706
    assert any(r["kind"] == "Tanh" for r in tanh.rows)


def test_toolkit_layers_summary():
    model = nn.Sequential(
        nn.Conv2D(3, 8, 3, padding=1),
        nn.MaxPool2D(2, ceil_mode=True),
        nn.SeparableConv2D(8, 16, 3, depth_multiplier=2, padding="same"),
        nn.DepthwiseConv2D(16, 3, stride=2, dilation=2, padding=2),
        nn.ConvTranspose2D(16, 4, 4, stride=2, padding=1),
        nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2D((2, 3))),
        nn.GlobalAvgPool2D(),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    s = nn.summary(model, (3, 15, 15))
    leaves = [
        model[0],
        model[1],
        model[2],
        model[3],
        model[4],
        model[5][0],
        model[5][1],
        model[6],
        model[7],
        model[8],
    ]
    x = np.zeros((1, 3, 15, 15), np.float32)
    model.eval()
    shapes = []
    for layer in leaves:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    assert [r["output_shape"] for r in s.rows] == shapes
    assert [r["name"] for r in s.rows][5:7] == ["5.0", "5.1"]  # nested Sequential unrolled
    assert s.total_params == sum(p.size for p in model.parameters())
    macs = [r["mult_adds"] for r in s.rows]
    assert macs[0] == 8 * 15 * 15 * 27
    assert macs[2] == 16 * 8 * 8 * 9 + 16 * 8 * 8 * 16  # depthwise + pointwise
    assert macs[3] == 16 * 4 * 4 * 9
    assert macs[4] == 4 * 4 * 16 * 4 * 16  # every input pixel's 4x4 footprint on 4 channels
    assert macs[-1] == 12
    rf = [(r["rf_size"], r["rf_jump"]) for r in s.rows]
    assert rf[0] == ((3, 3), (1, 1))
    assert rf[1] == ((4, 4), (2, 2))
    assert rf[2] == ((8, 8), (2, 2))
    assert rf[3] == ((16, 16), (4, 4))  # dilation 2: reach 4 at jump 2
    assert rf[4] == ((20, 20), (2, 2))  # transposed: floor(3 / 2) more inputs at jump 4
    assert rf[6][0] != "all" and rf[7] == ("all", "all")


def test_conv1d_and_upsampling_jumps():
    s = nn.Sequential(nn.Conv1D(2, 4, 9, padding="same"), nn.Conv1D(4, 4, 3, stride=2)).summary(
        (2, 50)
    )
    assert [r["output_shape"] for r in s.rows] == [(4, 50), (4, 24)]
    assert [r["rf_size"] for r in s.rows] == [(9,), (11,)]
    assert s.rows[0]["mult_adds"] == 4 * 50 * 2 * 9
    up = nn.Sequential(nn.ConvTranspose2D(1, 1, 2, stride=2)).summary((1, 3, 3))
    assert up.rows[0]["rf_jump"] == (Fraction(1, 2), Fraction(1, 2))
    assert "1/2x1/2" in str(up)


def test_unknown_layer_is_run_once_and_marked():
    class Double(nn.Layer):
        def forward(self, x):
            return np.concatenate([x, x], axis=1)

    s = nn.summary(nn.Sequential(nn.Conv2D(1, 2, 3), Double(), nn.Conv2D(4, 1, 1)), (1, 5, 5))
    assert [r["output_shape"] for r in s.rows] == [(2, 3, 3), (4, 3, 3), (1, 3, 3)]
    assert s.rows[1]["mult_adds"] is None and s.total_mult_adds is None
    assert s.rows[2]["rf_size"] is None
    assert "?" in str(s)


def test_summary_errors_name_the_layer():
    model = nn.Sequential(nn.Conv2D(3, 4, 3), nn.Linear(10, 2))
    with pytest.raises(ValueError, match="'0'.*Conv2D"):
        model.summary((2, 8, 8))  # 2 channels, the conv expects 3
    with pytest.raises(ValueError, match="'1'.*Linear"):
        model.summary((3, 8, 8))
    with pytest.raises(ValueError, match="input_shape"):
        nn.summary(model, 3)
    with pytest.raises(ValueError, match="input_shape"):
        nn.summary(model, (3, 0, 4))
