"""Winograd grad-weight F(3x3, 4x4) (fastconv._kernels.winograd.grad_weight, through the public
conv2d_grad_weight with algorithm="winograd") against the independent float64 reference.

Bars (issue 23): max|err| / max|ref| <= 5e-5 in float32 and <= 1e-12 in float64 on every shape
here; bitwise identical at 1, 2 and 3 threads; every SIMD level this CPU has is forced, and every
work split the kernel takes (one run with the kernel transform fused into the items, several
runs with partial sums, several blocks of channels and filters, several tile blocks per item).
"""

import numpy as np
import pytest
from reference import conv2d_backward_ref, output_hw, pad_tblr

import fastconv
from fastconv._backend.cpu import planner as _planner
from fastconv._kernels import winograd as winograd_kernels

TOL = {np.dtype(np.float32): 5e-5, np.dtype(np.float64): 1e-12}
DTYPES = [np.float32, np.float64]


def _geom(id, N=2, C=3, H=9, W=9, F=4, padding=1, dilation=1):
    return pytest.param((N, C, H, W, F, padding, dilation), id=id)


# padding as the public functions take it: an int, (ph, pw), ((top, bottom), (left, right)) or
# "same"; H or W not a multiple of 4 (partial tiles), odd, tiny, non-square, a batch of one, one
# channel, one filter, dilation 1/2/3 (also different along H and W), asymmetric padding.
CASES = [
    _geom("basic"),
    _geom("n1_c1_f1", N=1, C=1, F=1),
    _geom("valid_6x6", H=6, W=6, padding=0),  # exactly one tile
    _geom("tiny_3x3_valid", H=3, W=3, padding=0),  # a 1x1 output
    _geom("tiny_1x1_pad1", H=1, W=1),
    _geom("odd_nonsquare", N=3, C=5, H=13, W=7, F=6),
    _geom("wide", N=1, C=4, H=5, W=37, F=3),
    _geom("tall_pad2", N=2, C=3, H=23, W=10, F=5, padding=2),
    _geom("asymmetric", N=2, C=4, H=11, W=14, F=7, padding=((0, 2), (1, 0))),
    _geom("asymmetric_big", N=1, C=3, H=10, W=9, F=2, padding=((2, 0), (0, 3))),
    _geom("same", N=2, C=3, H=12, W=7, F=5, padding="same"),
    _geom("same_dil3", N=1, C=2, H=17, W=16, F=3, padding="same", dilation=3),
    _geom("dil2", N=2, C=3, H=17, W=15, F=4, padding=2, dilation=2),
    _geom("dil3", N=1, C=2, H=19, W=22, F=3, padding=3, dilation=3),
    _geom("dil2_valid", N=2, C=3, H=12, W=13, F=4, padding=0, dilation=2),
    _geom("dil_2x3_asym", N=1, C=3, H=16, W=21, F=5, padding=((1, 3), (0, 2)), dilation=(2, 3)),
    _geom("pad3", N=2, C=3, H=8, W=9, F=4, padding=3),
    # columns 6 apart: grad_y's gathers (AVX-512 loads rows for up to 5), 17 filters: a lane tail
    _geom("dil6_f17", N=1, C=2, H=20, W=29, F=17, padding=6, dilation=6),
    _geom("channels_64x48", N=2, C=64, H=14, W=14, F=48),
    _geom("channels_70x40", N=2, C=70, H=14, W=13, F=40),
    _geom("many_tiles", N=3, C=8, H=30, W=27, F=10),
]


def named(id):
    return next(c for c in CASES if c.id == id).values[0]


# Shapes with enough tiles and channels for every split below to differ from the default.
SPLIT_CASES = [
    pytest.param(named(i), id=i)
    for i in ("channels_70x40", "many_tiles", "dil_2x3_asym", "channels_64x48")
]
# set_wgrad_config(...) per split: several runs of tiles (partial sums, summed at the end), with
# one or several blocks of 16 tiles each; blocks of 32 channels and filters (cut short); one run
# for all tiles (the kernel transform in the items), with several tile blocks, and blocks.
SPLITS = {
    "auto": {},
    "partials": dict(items=64, tiles=16),
    "partials_long_runs": dict(items=3, tiles=16),
    "partials_blocks": dict(channels=32, items=64, tiles=16),
    "one_run": dict(items=1, tiles=16),
    "one_run_blocks": dict(items=1, channels=32, tiles=16),
}


@pytest.fixture(params=list(SPLITS))
def split(request):
    previous = winograd_kernels.set_wgrad_config(**SPLITS[request.param])
    yield request.param
    winograd_kernels.set_wgrad_config(**previous)


@pytest.fixture(params=range(winograd_kernels.detected_level() + 1), ids=lambda v: f"simd{v}")
def level(request):
    previous = winograd_kernels.set_level(request.param)
    yield request.param
    winograd_kernels.set_level(previous)


def make(geom, rng, dtype):
    N, C, H, W, F, padding, dilation = geom
    tblr = pad_tblr(padding, (H, W), (3, 3), 1, dilation)
    OH, OW = output_hw((H, W), (3, 3), 1, tblr, dilation)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    g = rng.standard_normal((N, F, OH, OW)).astype(dtype)
    return x, g, tblr


def winograd(g, x, geom, algorithm="winograd"):
    N, C, H, W, F, padding, dilation = geom
    return fastconv.conv2d_grad_weight(
        g, x, (F, C, 3, 3), padding=padding, dilation=dilation, algorithm=algorithm
    )


def reference(g, x, geom, tblr):
    F, C = geom[4], geom[1]
    _, ref, _ = conv2d_backward_ref(g, x, np.zeros((F, C, 3, 3)), 1, tblr, geom[6])
    return ref


def rel_err(actual, ref):
    return np.abs(actual.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-300)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", CASES)
def test_grad_weight(geom, dtype, level, rng):
    x, g, tblr = make(geom, rng, dtype)
    got = winograd(g, x, geom)
    assert got.dtype == dtype and got.shape == (geom[4], geom[1], 3, 3)
    assert rel_err(got, reference(g, x, geom, tblr)) <= TOL[np.dtype(dtype)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", SPLIT_CASES)
def test_work_splits(geom, dtype, level, split, rng):
    x, g, tblr = make(geom, rng, dtype)
    assert rel_err(winograd(g, x, geom), reference(g, x, geom, tblr)) <= TOL[np.dtype(dtype)]


@pytest.mark.parametrize("itemsize", [4, 8])
def test_splits_are_what_they_say(split, itemsize):
    """SPLITS takes the paths their names say (wgrad_split: the kernel's own plan)."""

    def plan(id):
        N, C, H, W, F, _, _ = named(id)
        return winograd_kernels.wgrad_split(N, C, H, W, F, H, W, 1, 1, 1, 1, itemsize)

    wide, tall = plan("channels_70x40"), plan("many_tiles")
    if split.startswith("partials"):
        assert tall["runs"] > 1
    if split in ("partials", "partials_blocks"):
        assert wide["runs"] > 1
    if split.startswith("one_run"):
        assert wide["runs"] == tall["runs"] == 1
    if split in ("partials_long_runs", "one_run", "one_run_blocks"):
        assert tall["run_tiles"] > tall["tiles"]  # several tile blocks per item
    if split.endswith("blocks"):
        assert wide["filter_blocks"] == 2 and wide["channel_blocks"] == 3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", SPLIT_CASES[:2] + [pytest.param(named("dil3"), id="dil3")])
def test_bitwise_identical_across_threads(geom, dtype, split, restore_threads, rng):
    x, g, _ = make(geom, rng, dtype)
    results = []
    for n in (1, 2, 3, 2):
        fastconv.set_num_threads(n)
        results.append(winograd(g, x, geom))
    for got in results[1:]:
        np.testing.assert_array_equal(got, results[0])


def test_tolerance_can_fail(rng):
    """The float32 bar catches a real mistake: one input value off by 0.01 is far above it."""
    geom = named("basic")
    x, g, tblr = make(geom, rng, np.float32)
    wrong = x.copy()
    wrong[0, 1, 4, 4] += 0.01
    assert rel_err(winograd(g, wrong, geom), reference(g, x, geom, tblr)) > TOL[x.dtype]


def test_matches_torch(rng):
    torch = pytest.importorskip("torch")
    geom = named("dil_2x3_asym")
    x, g, (t, b, left, r) = make(geom, rng, np.float64)
    # torch pads symmetrically: pad x by hand, then no padding
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)))
    ref = torch.ops.aten.convolution_backward(
        torch.from_numpy(g),
        torch.from_numpy(xp),
        torch.zeros((geom[4], geom[1], 3, 3), dtype=torch.float64),
        [geom[4]],
        (1, 1),
        (0, 0),
        geom[6],
        False,
        [0, 0],
        1,
        [False, True, False],
    )[1].numpy()
    assert rel_err(winograd(g, x, geom), ref) <= 1e-12
    got32 = winograd(g.astype(np.float32), x.astype(np.float32), geom)
    assert rel_err(got32, ref) <= 5e-5


@pytest.mark.parametrize("dtype", DTYPES)
def test_listed_and_refused(dtype):
    def algorithms(w_shape, **kw):
        return fastconv.conv2d_algorithms((2, 6, 9, 9), w_shape, dtype=dtype, **kw)["grad_weight"]

    assert "winograd" in algorithms((4, 6, 3, 3))
    assert "winograd" in algorithms((4, 6, 3, 3), padding="same", dilation=(2, 3))
    assert "winograd" not in algorithms((4, 6, 3, 3), stride=(1, 2))
    assert "winograd" not in algorithms((4, 3, 3, 3), groups=2)
    assert "winograd" not in algorithms((4, 6, 3, 5))
    x = np.ones((2, 6, 9, 9), dtype)
    g = np.ones((2, 4, 5, 5), dtype)
    with pytest.raises(ValueError, match=r"algorithm 'winograd' cannot compute the grad_weight"):
        fastconv.conv2d_grad_weight(g, x, (4, 6, 3, 3), stride=2, padding=1, algorithm="winograd")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_planner_choice(dtype):
    """Chosen where the measurements say it pays (planner.py): the ResNet 3x3 layers and the
    dilated one; not for few channels, strides, a 1x1 output of the whole input (one GEMM), or
    without SIMD."""

    def chosen(x_shape, w_shape, **kw):
        plan = fastconv.conv2d_plan(x_shape, w_shape, dtype=dtype, **kw)
        return plan["grad_weight"] == "winograd"

    for c, hw in ((64, 56), (128, 28), (256, 14), (512, 7)):
        assert chosen((8, c, hw, hw), (c, c, 3, 3), padding=1)
    assert chosen((8, 64, 56, 56), (64, 64, 3, 3), padding=2, dilation=2)
    assert chosen((8, 16, 28, 28), (64, 16, 3, 3), padding="same")
    assert not chosen((8, 8, 28, 28), (8, 8, 3, 3), padding=1)
    assert not chosen((8, 3, 56, 56), (64, 3, 3, 3), padding=1)
    assert not chosen((8, 64, 56, 56), (64, 64, 3, 3), stride=2, padding=1)
    assert not chosen((8, 64, 3, 3), (64, 64, 3, 3))  # matmul
    conv = _planner.Conv(
        (8, 64, 56, 56), (64, 64, 3, 3), (8, 64, 56, 56), (1, 1), (1, 1), (1, 1), 1, np.dtype(dtype)
    )
    assert _planner.choose("grad_weight", conv, 1) == "winograd"
    assert _planner.choose("grad_weight", conv, 0) != "winograd"


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_auto(dtype, rng):
    """conv2d_backward ("auto": Winograd for this grad-weight) with its grad-input and grad-bias."""
    x = rng.standard_normal((2, 32, 12, 11)).astype(dtype)
    w = rng.standard_normal((40, 32, 3, 3)).astype(dtype)
    g = rng.standard_normal((2, 40, 12, 11)).astype(dtype)
    assert fastconv.conv2d_plan(x.shape, w.shape, padding="same", dtype=dtype)["grad_weight"] == (
        "winograd" if winograd_kernels.level() > 0 else "gemm"
    )
    gx, gw, gb = fastconv.conv2d_backward(g, x, w, padding="same")
    rx, rw, rb = conv2d_backward_ref(g, x, w, 1, (1, 1, 1, 1))
    assert rel_err(gw, rw) <= TOL[np.dtype(dtype)]
    assert rel_err(gx, rx) <= TOL[np.dtype(dtype)]
    assert rel_err(gb, rb) <= TOL[np.dtype(dtype)]


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite(value, rng):
    """The kernel: every grad_w element the exact sum makes non-finite is non-finite here too
    (a tile's whole window reaches all 9 taps). The public "auto" and forced paths: the exact
    path instead (planner.for_operands), inf and NaN where NumPy puts them."""
    geom = named("odd_nonsquare")
    x, g, tblr = make(geom, rng, np.float32)
    x[1, 2, 0, 0] = value
    with np.errstate(invalid="ignore", over="ignore"):
        ref = reference(g, x, geom, tblr)
    raw = np.empty((geom[4], geom[1], 3, 3), np.float32)
    winograd_kernels.grad_weight(g, x, raw, tblr[0], tblr[2], 1, 1, 1)
    assert (~np.isfinite(ref)).any()
    assert not np.isfinite(raw[~np.isfinite(ref)]).any()
    for algorithm in ("winograd", "auto"):
        got = winograd(g, x, geom, algorithm)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))


def test_inputs_not_modified(rng):
    geom = named("dil2")
    x, g, _ = make(geom, rng, np.float32)
    copies = x.copy(), g.copy()
    winograd(g, x, geom)
    np.testing.assert_array_equal(x, copies[0])
    np.testing.assert_array_equal(g, copies[1])


def test_bad_arguments():
    x = np.zeros((2, 3, 8, 8), np.float32)
    g = np.zeros((2, 4, 8, 8), np.float32)
    gw = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="grad_w"):
        winograd_kernels.grad_weight(g, x, np.zeros((4, 3, 5, 5), np.float32), 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="grad_w"):
        winograd_kernels.grad_weight(g, x, np.zeros((5, 3, 3, 3), np.float32), 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="grad_y"):
        winograd_kernels.grad_weight(g[:1], x, gw, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="dilation"):
        winograd_kernels.grad_weight(g, x, gw, 1, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="tiles"):
        winograd_kernels.set_wgrad_config(tiles=20)
    with pytest.raises(ValueError, match="channels"):
        winograd_kernels.set_wgrad_config(channels=48)
    with pytest.raises(ValueError, match="items"):
        winograd_kernels.set_wgrad_config(items=0)


def test_property_against_reference():
    """Random small geometries (paddings, dilations, partial tiles) in float64."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.given(
        N=st.integers(1, 2),
        C=st.integers(1, 5),
        F=st.integers(1, 5),
        H=st.integers(1, 14),
        W=st.integers(1, 14),
        pads=st.tuples(*[st.integers(0, 3)] * 4),
        dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
        seed=st.integers(0, 2**16),
    )
    def check(N, C, F, H, W, pads, dilation, seed):
        t, b, left, r = pads
        hypothesis.assume(H + t + b > 2 * dilation[0] and W + left + r > 2 * dilation[1])
        geom = (N, C, H, W, F, ((t, b), (left, r)), dilation)
        x, g, tblr = make(geom, np.random.default_rng(seed), np.float64)
        assert rel_err(winograd(g, x, geom), reference(g, x, geom, tblr)) <= 1e-12

    check()


def test_forced_through_backward_and_layer(rng):
    """algorithm="winograd" on conv2d_backward and nn.Conv2D (float32: every pass can run it;
    before grad-weight could, forcing it there raised)."""
    import fastconv.nn

    x = rng.standard_normal((2, 4, 10, 9)).astype(np.float32)
    layer = fastconv.nn.Conv2D(4, 6, 3, padding=1, algorithm="winograd", rng=0)
    y = layer.forward(x)
    g = rng.standard_normal(y.shape).astype(np.float32)
    layer.backward(g)
    rx, rw, rb = conv2d_backward_ref(g, x, layer.weight.data, 1, (1, 1, 1, 1))
    assert rel_err(layer.weight.grad, rw) <= TOL[x.dtype]
    assert rel_err(layer.bias.grad, rb) <= TOL[x.dtype]
    gx, gw, gb = fastconv.conv2d_backward(g, x, layer.weight.data, padding=1, algorithm="winograd")
    np.testing.assert_array_equal(
        gw, fastconv.conv2d_grad_weight(g, x, gw.shape, padding=1, algorithm="winograd")
    )
    assert rel_err(gx, rx) <= TOL[x.dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [np.nan, np.inf, "inf-inf"])
def test_backward_grad_y_not_finite(value, dtype, rng):
    """conv2d_backward where grad-weight chooses Winograd asks whether grad_y is finite through
    grad-bias's sums: NaN, inf, inf and -inf in one plane (a NaN sum) land where NumPy puts
    them (the exact path)."""
    x, w, g = _backward_operands(rng, dtype)
    if value == "inf-inf":
        g[1, 3, 2, 2], g[0, 3, 5, 1] = np.inf, -np.inf
    else:
        g[1, 3, 2, 2] = value
    with np.errstate(invalid="ignore", over="ignore"):
        expected = conv2d_backward_ref(g, x, w, 1, (1, 1, 1, 1))
        got = fastconv.conv2d_backward(g, x, w, padding=1)
    for name, a, ref in zip(("grad_input", "grad_weight", "grad_bias"), got, expected):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(ref), err_msg=name)
        np.testing.assert_array_equal(np.isinf(a), np.isinf(ref), err_msg=name)
        ok = np.isfinite(ref)
        assert rel_err(a[ok], ref[ok]) <= TOL[np.dtype(dtype)], name


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_grad_bias_overflow_keeps_winograd(dtype, rng):
    """Finite grad_y whose grad-bias sums overflow (inf in float32; float64 sums past 1.8e308):
    the full check finds it finite, and grad-weight is Winograd's, bitwise."""
    x, w, g = _backward_operands(rng, dtype)
    g[:, 5] = 1e37 if dtype == np.float32 else 1e307
    x *= 1e-3
    with np.errstate(over="ignore"):
        gx, gw, gb = fastconv.conv2d_backward(g, x, w, padding=1)
    assert np.isinf(gb[5]) and np.isfinite(np.delete(gb, 5)).all()
    forced = fastconv.conv2d_grad_weight(g, x, w.shape, padding=1, algorithm="winograd")
    np.testing.assert_array_equal(gw, forced)
    with np.errstate(over="ignore"):  # the reference's grad-bias overflows too
        _, rw, _ = conv2d_backward_ref(g, x, w, 1, (1, 1, 1, 1))
    others = np.arange(w.shape[0]) != 5  # filter 5's transformed grad_y overflows
    assert rel_err(gw[others], rw[others]) <= TOL[np.dtype(dtype)]


def _backward_operands(rng, dtype):
    """x, w, grad_y of a convolution whose backward the planner gives Winograd grad-weight."""
    N, C, H, W, F = 2, 32, 8, 8, 32
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, 3, 3)).astype(dtype)
    g = rng.standard_normal((N, F, H, W)).astype(dtype)
    assert fastconv.conv2d_plan(x.shape, w.shape, padding=1, dtype=dtype)["grad_weight"] == (
        "winograd"
    )
    return x, w, g
