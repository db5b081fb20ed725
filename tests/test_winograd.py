"""Winograd F(4x4, 3x3) (fastconv._kernels.winograd through fastconv._backend.cpu.ops's private wrappers) against
the independent float64 reference.

Accuracy bar (issue 8): relative error max|err| / max|ref| <= 1e-5 for the forward pass and
<= 5e-5 for grad-input, float32, on every shape here; every SIMD level this CPU has is forced.
"""

import numpy as np
import pytest
from reference import conv2d_backward_ref, conv2d_ref, output_hw

import fastconv
from fastconv._backend.cpu import ops as _cpu
from fastconv._kernels import winograd as winograd_kernels

FORWARD_TOL = 1e-5
GRAD_INPUT_TOL = 5e-5


def _geom(id, N=2, C=3, H=9, W=9, F=4, pad=(1, 1, 1, 1), dilation=(1, 1)):
    return pytest.param((N, C, H, W, F, pad, dilation), id=id)


# (top, bottom, left, right) padding; H or W not a multiple of 4, odd, tiny, non-square, a batch of
# one, one channel, dilation 1/2/3 (also different along H and W), asymmetric padding.
CASES = [
    _geom("basic"),
    _geom("n1_c1", N=1, C=1, F=1),
    _geom("valid_6x6", pad=(0, 0, 0, 0), H=6, W=6),  # exactly one tile
    _geom("tiny_3x3_valid", H=3, W=3, pad=(0, 0, 0, 0)),  # a 1x1 output
    _geom("tiny_1x1_pad1", H=1, W=1),
    _geom("odd_nonsquare", N=3, C=5, H=13, W=7, F=6),
    _geom("wide", N=1, C=4, H=5, W=37, F=3),
    _geom("tall_pad2", N=2, C=3, H=23, W=10, F=5, pad=(2, 2, 2, 2)),
    _geom("asymmetric", N=2, C=4, H=11, W=14, F=7, pad=(0, 2, 1, 0)),
    _geom("asymmetric_big", N=1, C=3, H=10, W=9, F=2, pad=(2, 0, 0, 3)),
    _geom("dil2", N=2, C=3, H=17, W=15, F=4, pad=(2, 2, 2, 2), dilation=(2, 2)),
    _geom("dil3", N=1, C=2, H=19, W=22, F=3, pad=(3, 3, 3, 3), dilation=(3, 3)),
    _geom("dil2_wide", N=2, C=3, H=12, W=40, F=4, pad=(2, 2, 2, 2), dilation=(2, 2)),
    _geom("dil2_valid", N=2, C=3, H=12, W=13, F=4, pad=(0, 0, 0, 0), dilation=(2, 2)),
    _geom("dil_2x3_asym", N=1, C=3, H=16, W=21, F=5, pad=(1, 3, 0, 2), dilation=(2, 3)),
    _geom("pad3_d1", N=2, C=3, H=8, W=9, F=4, pad=(3, 3, 3, 3)),  # grad-input pads by -1
    _geom("channels_64", N=2, C=64, H=14, W=14, F=48),
    _geom("channels_256", N=1, C=256, H=8, W=12, F=32),
    _geom("many_tiles", N=3, C=8, H=30, W=27, F=10),
    _geom("full_tiles", N=2, C=5, H=16, W=32, F=7),  # every tile 4 x 4, rows of 8 tiles
]


def named(id):
    """The CASES entry with this id."""
    return next(c for c in CASES if c.id == id)


@pytest.fixture(params=[(0, 0), (0, 16), (1, 0)], ids=["shared_auto", "shared_block16", "few"])
def block(request):
    """The path and its tiles per block: the shared transformed weights with the shape's block
    size or 16 tiles per block (more blocks), or the few-tiles path (winograd_few.h), which most
    test shapes would take by themselves."""
    few, tiles = request.param
    previous = winograd_kernels.set_block_tiles(tiles), winograd_kernels.set_few_tiles(few)
    yield request.param
    winograd_kernels.set_block_tiles(previous[0])
    winograd_kernels.set_few_tiles(previous[1])


@pytest.fixture(params=range(winograd_kernels.detected_level() + 1), ids=lambda v: f"simd{v}")
def level(request):
    previous = winograd_kernels.set_level(request.param)
    yield request.param
    winograd_kernels.set_level(previous)


def rel_err(actual, ref):
    return np.abs(actual.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30)


def make(geom, rng, grad=False):
    N, C, H, W, F, pad, dilation = geom
    OH, OW = output_hw((H, W), (3, 3), 1, pad, dilation)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((F, C, 3, 3)) / np.sqrt(9 * C)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    g = rng.standard_normal((N, F, OH, OW)).astype(np.float32)
    return x, w, b, g


def forward(x, w, b, geom, relu=False):
    N, C, H, W, F, pad, dilation = geom
    OH, OW = output_hw((H, W), (3, 3), 1, pad, dilation)
    y = np.full((N, F, OH, OW), np.nan, dtype=np.float32)  # every element must be written
    _cpu._winograd_forward(x, w, b, y, (pad[0], pad[2]), dilation, relu)
    return y


def grad_input(g, w, geom):
    N, C, H, W, F, pad, dilation = geom
    gx = np.full((N, C, H, W), np.nan, dtype=np.float32)
    _cpu._winograd_grad_input(g, w, gx, (pad[0], pad[2]), dilation)
    return gx


@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("geom", CASES)
def test_forward(geom, bias, relu, level, block, rng):
    x, w, b, _ = make(geom, rng)
    b = b if bias else None
    pad, dilation = geom[5], geom[6]
    ref = conv2d_ref(x, w, b, 1, pad, dilation)
    if relu:
        ref = np.maximum(ref, 0)
    got = forward(x, w, b, geom, relu)
    assert got.shape == ref.shape
    assert rel_err(got, ref) <= FORWARD_TOL


@pytest.mark.parametrize("geom", CASES)
def test_grad_input(geom, level, block, rng):
    x, w, _, g = make(geom, rng)
    pad, dilation = geom[5], geom[6]
    ref, _, _ = conv2d_backward_ref(g, x, w, 1, pad, dilation)
    got = grad_input(g, w, geom)
    assert rel_err(got, ref) <= GRAD_INPUT_TOL


def test_tolerance_can_fail(rng):
    """The bar catches a real mistake: one wrong tap is far above it."""
    geom = named("basic").values[0]
    x, w, b, _ = make(geom, rng)
    pad, dilation = geom[5], geom[6]
    w_wrong = w.copy()
    w_wrong[0, 0, 1, 1] += 0.01
    assert (
        rel_err(forward(x, w_wrong, b, geom), conv2d_ref(x, w, b, 1, pad, dilation)) > FORWARD_TOL
    )


@pytest.mark.parametrize("block", [16, 48, 128])
def test_block_sizes(block, rng):
    """Blocks of any size, spanning images, with a short last block."""
    geom = (5, 6, 11, 9, 7, (1, 1, 2, 0), (1, 1))
    x, w, b, _ = make(geom, rng)
    previous = winograd_kernels.set_block_tiles(block), winograd_kernels.set_few_tiles(0)
    try:
        got = forward(x, w, b, geom, relu=True)
    finally:
        winograd_kernels.set_block_tiles(previous[0])
        winograd_kernels.set_few_tiles(previous[1])
    ref = np.maximum(conv2d_ref(x, w, b, 1, geom[5], geom[6]), 0)
    assert rel_err(got, ref) <= FORWARD_TOL


@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
def test_few_tiles_chunks(relu, level, rng):
    """The few-tiles path with two blocks of tiles (the last one short), a channel chunk and a
    filter block cut short (70 = 64 + 6 channels, 29 = 24 + 5 filters; the other way round in
    grad-input), on every SIMD level, forward and grad-input."""
    geom = (5, 70, 17, 15, 29, (1, 1, 1, 1), (1, 1))
    x, w, b, g = make(geom, rng)
    previous = winograd_kernels.set_few_tiles(1)
    try:
        got = forward(x, w, b, geom, relu)
        got_gx = grad_input(g, w, geom)
    finally:
        winograd_kernels.set_few_tiles(previous)
    ref = conv2d_ref(x, w, b, 1, geom[5], geom[6])
    assert rel_err(got, np.maximum(ref, 0) if relu else ref) <= FORWARD_TOL
    ref_gx, _, _ = conv2d_backward_ref(g, x, w, 1, geom[5], geom[6])
    assert rel_err(got_gx, ref_gx) <= GRAD_INPUT_TOL


@pytest.mark.parametrize(
    "geom", [named(i) for i in ("tall_pad2", "dil2", "dil2_wide", "channels_64", "full_tiles")]
)
def test_bitwise_identical_across_threads(geom, block, rng):
    x, w, b, g = make(geom, rng)
    previous = fastconv.set_num_threads(1)
    try:
        results = []
        for n in (1, 2, 3):
            fastconv.set_num_threads(n)
            results.append((forward(x, w, b, geom, relu=True), grad_input(g, w, geom)))
    finally:
        fastconv.set_num_threads(previous)
    for y, gx in results[1:]:
        assert np.array_equal(y, results[0][0])
        assert np.array_equal(gx, results[0][1])


def test_inputs_not_modified(rng):
    geom = named("dil2").values[0]
    x, w, b, g = make(geom, rng)
    copies = [a.copy() for a in (x, w, b, g)]
    forward(x, w, b, geom, relu=True)
    grad_input(g, w, geom)
    for a, c in zip((x, w, b, g), copies):
        assert np.array_equal(a, c)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("geom", [named("basic"), named("dil2"), named("dil2_wide")])
def test_non_finite_propagates(geom, value, rng):
    """Every output the exact convolution makes non-finite is non-finite here too (a tile's other
    outputs may turn NaN as well: see src/winograd_f43.h)."""
    x, w, b, _ = make(geom, rng)
    x[0, 1, 4, 5] = value
    x[-1, 0, 0, 0] = value
    with np.errstate(invalid="ignore"):
        ref = conv2d_ref(x, w, b, 1, geom[5], geom[6])
    got = forward(x, w, b, geom)
    assert (~np.isfinite(ref)).any()
    assert not np.isfinite(got[~np.isfinite(ref)]).any()
    # Images without the value are untouched by it.
    clean = np.isfinite(x).all(axis=(1, 2, 3))
    if clean.any():
        assert rel_err(got[clean], ref[clean]) <= FORWARD_TOL


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("geom", [named("basic"), named("dil2"), named("channels_64")])
def test_kernel_reports_non_finite_outputs(geom, value, level, block, rng):
    """The forward kernel's answer (planner.CHECKS_OUTPUT): True on finite data, False when an
    inf or NaN in x (here in a border tile, at every SIMD level and path) or in a weight reached
    an output, ReLU or not (-inf through ReLU is 0 but is reported)."""
    x, w, b, _ = make(geom, rng)
    N, C, H, W, F, pad, dilation = geom
    OH, OW = output_hw((H, W), (3, 3), 1, pad, dilation)
    y = np.empty((N, F, OH, OW), np.float32)
    assert _cpu._winograd_forward(x, w, b, y, (pad[0], pad[2]), dilation, True)
    bad_x = x.copy()
    bad_x[-1, C - 1, H - 1, 0] = value
    assert not _cpu._winograd_forward(bad_x, w, b, y, (pad[0], pad[2]), dilation, True)
    bad_w = w.copy()
    bad_w[F - 1, 0, 1, 2] = value
    assert not _cpu._winograd_forward(x, bad_w, None, y, (pad[0], pad[2]), dilation, False)


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("where", ["x_nan", "x_inf", "x_neg_inf", "weight_nan", "weight_inf"])
@pytest.mark.parametrize("dilation", [1, 2])
def test_non_finite_data_gets_the_exact_result(where, dilation, activation, rng):
    """conv2d with Winograd chosen (forced, and "auto" at a shape it takes) on data holding inf
    or NaN: the kernel reports it and the backend computes the exact path instead, so inf and NaN
    land where the reference puts them (Winograd alone would spread them over whole tiles)."""
    x = rng.standard_normal((2, 32, 14, 13)).astype(np.float32)
    w = (rng.standard_normal((32, 32, 3, 3)) / 17).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    kind, value = where.split("_", 1)
    value = {"nan": np.nan, "inf": np.inf, "neg_inf": -np.inf}[value]
    if kind == "x":
        x[1, 5, 6, 7] = value
    else:
        w[3, 4, 1, 1] = value
    with np.errstate(invalid="ignore"):
        expected = conv2d_ref(x, w, b, 1, (dilation,) * 4, dilation)
        if activation:
            expected = np.where(np.isnan(expected), expected, np.maximum(expected, 0))
    special = ~np.isfinite(expected)
    assert special.any() and not special.all()
    for algorithm in ("winograd", "auto"):
        y = fastconv.conv2d(
            x,
            w,
            b,
            padding=dilation,
            dilation=dilation,
            activation=activation,
            algorithm=algorithm,
        )
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        np.testing.assert_array_equal(np.isposinf(y), np.isposinf(expected))
        np.testing.assert_array_equal(np.isneginf(y), np.isneginf(expected))
        assert rel_err(y[~special], expected[~special]) <= FORWARD_TOL


def test_relu_keeps_nan(rng):
    geom = named("basic").values[0]
    x, w, b, _ = make(geom, rng)
    x[0, 0, 3, 3] = np.nan
    got = forward(x, w, b, geom, relu=True)
    assert np.isnan(got[0, :, 2:5, 2:5]).all()


def test_bad_shapes():
    x = np.zeros((1, 3, 8, 8), np.float32)
    y = np.zeros((1, 4, 8, 8), np.float32)
    with pytest.raises(ValueError, match="weight"):
        _cpu._winograd_forward(
            x, np.zeros((4, 3, 5, 5), np.float32), None, y, (1, 1), (1, 1), False
        )
    with pytest.raises(ValueError, match="weight"):
        _cpu._winograd_forward(
            x, np.zeros((4, 2, 3, 3), np.float32), None, y, (1, 1), (1, 1), False
        )
    with pytest.raises(ValueError, match="y"):
        _cpu._winograd_forward(
            x, np.zeros((5, 3, 3, 3), np.float32), None, y, (1, 1), (1, 1), False
        )
    with pytest.raises(ValueError, match="dilation"):
        _cpu._winograd_forward(
            x, np.zeros((4, 3, 3, 3), np.float32), None, y, (1, 1), (0, 1), False
        )
    with pytest.raises(ValueError, match="multiple"):
        winograd_kernels.set_block_tiles(20)
    with pytest.raises(ValueError, match="-1, 0 or 1"):
        winograd_kernels.set_few_tiles(2)


def test_applies():
    def can(w_shape, stride=1, groups=1, dtype=np.float32):
        algs = fastconv.conv2d_algorithms(
            (2, 3 * groups, 9, 9), w_shape, stride=stride, groups=groups, dtype=dtype
        )
        return "winograd" in algs["forward"] and "winograd" in algs["grad_input"]

    assert can((4, 3, 3, 3))
    assert not can((4, 3, 3, 3), stride=(2, 1))
    assert not can((4, 3, 3, 3), dtype=np.float64)
    assert not can((4, 3, 5, 5))
    assert not can((6, 3, 3, 3), groups=3)
    # grad-weight by F(3x3, 4x4) (float32 and float64): tests/test_winograd_wgrad.py
    assert "winograd" in fastconv.conv2d_algorithms((2, 3, 9, 9), (4, 3, 3, 3))["grad_weight"]
    plan = fastconv.conv2d_plan((8, 64, 56, 56), (64, 64, 3, 3), padding=1)
    assert plan["forward"] == plan["grad_input"] == "winograd"
    plan = fastconv.conv2d_plan((1, 512, 7, 7), (512, 512, 3, 3), padding=1)
    assert plan["forward"] != "winograd"  # 4 tiles: the weight transform would dominate
    plan = fastconv.conv2d_plan((8, 32, 56, 56), (32, 32, 3, 3), padding=1)
    # 32 channels: measured to pay with AVX-512 (planner.py), not measured with AVX2
    assert (plan["forward"] == "winograd") is (fastconv._kernels.direct.level() >= 2)
    plan = fastconv.conv2d_plan((8, 16, 56, 56), (16, 16, 3, 3), padding=1)
    assert plan["forward"] != "winograd"  # below the measured channel counts
