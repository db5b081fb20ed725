"""The GEMM and direct CPU algorithms against the reference, whichever the planner would pick.

The planner (fastconv._backend.cpu.planner) sends one-group convolutions with few filters to the SIMD direct
kernel (fastconv._kernels.direct) and the rest to im2col + GEMM. Most test shapes are small, so the
other test files mostly see the direct path on a CPU with AVX2; here every case is forced
(`algorithm=`) onto the GEMM path and onto the direct kernel compiled for each instruction set
this CPU has. A pass the forced algorithm cannot compute must raise ValueError.
"""

import numpy as np
import pytest
from reference import (
    CASES,
    MEDIUM_CASES,
    _case,
    case_kwargs,
    case_tblr,
    conv2d_backward_ref,
    conv2d_ref,
    make_inputs,
    output_hw,
)

import fastconv
from fastconv._backend.cpu import planner as _planner
from fastconv._kernels import conv as conv_kernels
from fastconv._kernels import direct as direct_kernels

DTYPES = [np.float32, np.float64]
# The direct forward vectorises along filters or along output rows (direct_rows.h, chosen by
# shape; its register block two vectors of one row, "rows1", or one vector of two rows, "rows2");
# each is forced at every level (rows only where the stride along W is 1).
LAYOUTS = ("filters", "rows1", "rows2")
PATHS = ["gemm"] + [
    f"direct{level}-{layout}"
    for level in range(direct_kernels.detected_level() + 1)
    for layout in LAYOUTS
]
EXTRA_CASES = [
    _case("many_filters", N=2, C=3, H=9, W=8, F=37, padding=1),  # several blocks, a partial one
    _case("lenet_conv2", N=3, C=6, H=14, W=14, F=16, KH=5, KW=5),
    _case("lenet_conv1_pad", N=2, C=1, H=28, W=28, F=6, KH=5, KW=5, padding=2),
    _case("rgb_7x7_s2", N=1, C=3, H=33, W=31, F=20, KH=7, KW=7, stride=2, padding=3),
]
ONE_GROUP = [pytest.param(c, id=c.id) for c in CASES + MEDIUM_CASES + EXTRA_CASES if c.groups == 1]


@pytest.fixture(params=PATHS)
def path(request):
    """Force one algorithm: "gemm", or "direct" at one instruction-set level and layout."""
    if request.param == "gemm":
        return "gemm"
    level, layout = request.param[len("direct") :].split("-")
    previous = direct_kernels.set_level(int(level))
    previous_layout = direct_kernels.set_layout(layout)
    request.addfinalizer(lambda: direct_kernels.set_level(previous))
    request.addfinalizer(lambda: direct_kernels.set_layout(previous_layout))
    return "direct"


def forced(fn, case, algorithm, pass_, *args, **kwargs):
    """fn(*args, algorithm=algorithm) if the planner says `algorithm` computes `pass_` of `case`,
    else check that forcing it raises ValueError naming it, and return None."""
    can = fastconv.conv2d_algorithms(
        (case.N, case.C, case.H, case.W),
        (case.F, case.C // case.groups, case.KH, case.KW),
        **case_kwargs(case),
    )[pass_]
    if algorithm in can:
        return fn(*args, **kwargs, algorithm=algorithm)
    with pytest.raises(ValueError, match=r"algorithm 'direct' cannot compute the " + pass_):
        fn(*args, **kwargs, algorithm=algorithm)
    return None


def inputs(case, rng, dtype):
    x, w, b = (a.astype(dtype) for a in make_inputs(case, rng))
    OH, OW = output_hw(
        (case.H, case.W), (case.KH, case.KW), case.stride, case_tblr(case), case.dilation
    )
    g = rng.standard_normal((case.N, case.F, OH, OW)).astype(dtype)
    return x, w, b, g


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ONE_GROUP)
def test_forward(case, dtype, path, rng, assert_close):
    x, w, b, _ = inputs(case, rng, dtype)
    expected = conv2d_ref(x, w, b, case.stride, case_tblr(case), case.dilation)
    reduction = case.C * case.KH * case.KW
    kw = dict(case_kwargs(case), algorithm=path)
    assert_close(fastconv.conv2d(x, w, b, **kw), expected, dtype, reduction)
    relu = fastconv.conv2d(x, w, b, **kw, activation="relu")
    assert_close(relu, np.maximum(expected, 0), dtype, reduction)
    assert_close(fastconv.conv2d(x, w, **kw), expected - b[:, None, None], dtype, reduction)


@pytest.mark.parametrize("level", range(direct_kernels.detected_level() + 1))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ONE_GROUP)
def test_direct_row_reuse(case, dtype, level, rng, assert_close, request):
    """The filter-vectorised forward and grad-weight over whole output rows (each input value
    broadcast once per kernel row: fc_forward_rr and fc_grad_weight_rr, AVX-512's choice) forced
    at every level, for the forward, grad-input's forward pass and grad-weight (with grad-bias
    from the same pass): the same sums in the same order as tap by tap."""
    previous, previous_level = direct_kernels.set_row_reuse("on"), direct_kernels.set_level(level)
    previous_layout = direct_kernels.set_layout("filters")
    request.addfinalizer(lambda: direct_kernels.set_row_reuse(previous))
    request.addfinalizer(lambda: direct_kernels.set_level(previous_level))
    request.addfinalizer(lambda: direct_kernels.set_layout(previous_layout))
    x, w, b, g = inputs(case, rng, dtype)
    expected = conv2d_ref(x, w, b, case.stride, case_tblr(case), case.dilation)
    kw = dict(case_kwargs(case), algorithm="direct")
    y = fastconv.conv2d(x, w, b, **kw, activation="relu")
    assert_close(y, np.maximum(expected, 0), dtype, case.C * case.KH * case.KW)
    gx = forced(
        fastconv.conv2d_grad_input, case, "direct", "grad_input", g, w, x.shape, **case_kwargs(case)
    )
    parameter_grads = dict(needs=("weight", "bias"), **kw)
    _, gw, gb = fastconv.conv2d_backward(g, x, w, **parameter_grads)
    _, gw_ref, gb_ref = conv2d_backward_ref(g, x, w, case.stride, case_tblr(case), case.dilation)
    OH, OW = g.shape[2:]
    assert_close(gw, gw_ref, dtype, case.N * OH * OW)
    assert_close(gb, gb_ref, dtype, case.N * OH * OW)
    direct_kernels.set_row_reuse("off")
    np.testing.assert_array_equal(y, fastconv.conv2d(x, w, b, **kw, activation="relu"))
    _, gw_off, gb_off = fastconv.conv2d_backward(g, x, w, **parameter_grads)
    np.testing.assert_array_equal(gw, gw_off)
    np.testing.assert_array_equal(gb, gb_off)
    if gx is not None:
        gx_ref, _, _ = conv2d_backward_ref(g, x, w, case.stride, case_tblr(case), case.dilation)
        assert_close(gx, gx_ref, dtype, case.F * case.KH * case.KW)
        gx_off = fastconv.conv2d_grad_input(g, w, x.shape, **kw)
        np.testing.assert_array_equal(gx, gx_off)


@pytest.mark.parametrize("dtype", DTYPES)
def test_direct_row_reuse_bitwise_identical_across_threads(dtype, rng, request):
    previous = direct_kernels.set_row_reuse("on")
    request.addfinalizer(lambda: direct_kernels.set_row_reuse(previous))
    case = EXTRA_CASES[1]._replace(N=5)  # LeNet-5 conv2: rows of 2 x 5 pixels
    x, w, b, _ = inputs(case, rng, dtype)
    old = fastconv.set_num_threads(1)
    request.addfinalizer(lambda: fastconv.set_num_threads(old))
    g = rng.standard_normal((case.N, case.F, 10, 10)).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        fastconv.set_num_threads(threads)
        y = fastconv.conv2d(x, w, b, algorithm="direct", activation="relu")
        _, gw, gb = fastconv.conv2d_backward(g, x, w, needs=("weight", "bias"), algorithm="direct")
        results.append((y, gw, gb))
    for other in results[1:]:
        for first, result in zip(results[0], other):
            np.testing.assert_array_equal(first, result)


def test_set_row_reuse_refuses_unknown_names():
    with pytest.raises(ValueError, match="name must be one of"):
        direct_kernels.set_row_reuse("always")
    assert direct_kernels.set_row_reuse("auto") == "auto"


@pytest.mark.parametrize("level", range(conv_kernels.detected_level() + 1))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ONE_GROUP)
def test_simd_gemm(case, dtype, level, rng, assert_close, request):
    """The GEMM path's forward and grad-input with the SIMD GEMM (conv_gemm.h) forced at every
    level, and with BLAS: tiles of part of an image, of several images, 1x1 on the input itself,
    channel chunks, partial register blocks of filters and of columns."""
    previous, previous_level = conv_kernels.set_gemm("simd"), conv_kernels.set_level(level)
    request.addfinalizer(lambda: conv_kernels.set_gemm(previous))
    request.addfinalizer(lambda: conv_kernels.set_level(previous_level))
    x, w, b, g = inputs(case, rng, dtype)
    expected = conv2d_ref(x, w, b, case.stride, case_tblr(case), case.dilation)
    gx_ref, _, _ = conv2d_backward_ref(g, x, w, case.stride, case_tblr(case), case.dilation)
    kw = dict(case_kwargs(case), algorithm="gemm")
    reduction = case.C * case.KH * case.KW
    for gemm in ("simd", "blas"):
        conv_kernels.set_gemm(gemm)
        relu = fastconv.conv2d(x, w, b, **kw, activation="relu")
        assert_close(relu, np.maximum(expected, 0), dtype, reduction)
        gx = fastconv.conv2d_grad_input(g, w, x.shape, **kw)
        assert_close(gx, gx_ref, dtype, case.F * case.KH * case.KW)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ONE_GROUP)
def test_grad_input(case, dtype, path, rng, assert_close):
    x, w, _, g = inputs(case, rng, dtype)
    expected, _, _ = conv2d_backward_ref(g, x, w, case.stride, case_tblr(case), case.dilation)
    got = forced(
        fastconv.conv2d_grad_input, case, path, "grad_input", g, w, x.shape, **case_kwargs(case)
    )
    if got is not None:
        assert_close(got, expected, dtype, case.F * case.KH * case.KW)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ONE_GROUP)
def test_grad_weight(case, dtype, path, rng, assert_close):
    x, w, _, g = inputs(case, rng, dtype)
    _, expected, _ = conv2d_backward_ref(g, x, w, case.stride, case_tblr(case), case.dilation)
    got = forced(
        fastconv.conv2d_grad_weight, case, path, "grad_weight", g, x, w.shape, **case_kwargs(case)
    )
    if got is not None:
        OH, OW = g.shape[2:]
        assert_close(got, expected, dtype, case.N * OH * OW)


@pytest.mark.parametrize("layout", ["filters", "rows"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in EXTRA_CASES])
def test_grad_weight_and_bias_in_one_pass(case, dtype, layout, rng, assert_close, request):
    """conv2d_backward's grad_weight and grad_bias together ("auto"): one pass of the direct
    kernels where the planner picks them (conv2d_grad_weight_bias), on both layouts."""
    previous = direct_kernels.set_layout(layout)
    request.addfinalizer(lambda: direct_kernels.set_layout(previous))
    x, w, _, g = inputs(case, rng, dtype)
    _, gw_ref, gb_ref = conv2d_backward_ref(g, x, w, case.stride, case_tblr(case), case.dilation)
    _, gw, gb = fastconv.conv2d_backward(g, x, w, needs=("weight", "bias"), **case_kwargs(case))
    OH, OW = g.shape[2:]
    assert_close(gw, gw_ref, dtype, case.N * OH * OW)
    assert_close(gb, gb_ref, dtype, case.N * OH * OW)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N", [1, 3, 20])  # one part, one image per part, several per part
def test_direct_bitwise_identical_across_threads(N, dtype, layout, rng):
    case = EXTRA_CASES[0]._replace(N=N)
    x, w, b, g = inputs(case, rng, dtype)
    kw = dict(case_kwargs(case), algorithm="direct" if direct_kernels.level() else "gemm")
    results = []
    old = fastconv.set_num_threads(1)
    old_layout = direct_kernels.set_layout(layout)
    try:
        for threads in (1, 2, 3):
            fastconv.set_num_threads(threads)
            results.append(
                (fastconv.conv2d(x, w, b, **kw),)
                + fastconv.conv2d_backward(g, x, w, needs=("input", "weight"), **kw)
                + fastconv.conv2d_backward(g, x, w, needs=("weight", "bias"), **case_kwargs(case))[
                    1:
                ]
            )
    finally:
        fastconv.set_num_threads(old)
        direct_kernels.set_layout(old_layout)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("path_name", ["gemm"] + [f"direct-{layout}" for layout in LAYOUTS])
def test_nonfinite_weights_meet_padding_as_in_numpy(path_name, rng, request):
    """A padded tap is 0 * w: with w = inf that is NaN on both paths (as torch gives), and
    grad_input (where the direct reuse would multiply padding) stays on the GEMM path."""
    if path_name != "gemm":
        if not direct_kernels.level():
            pytest.skip("no SIMD direct kernels on this CPU")
        path_name, layout = path_name.split("-")
        previous = direct_kernels.set_layout(layout)
        request.addfinalizer(lambda: direct_kernels.set_layout(previous))
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    w[1, 0, 0, 0] = np.inf
    y = fastconv.conv2d(x, w, padding=1, algorithm=path_name)
    assert np.isnan(y[0, 1, 0, :]).all()  # the top row reads the padding with the inf tap
    assert not np.isnan(y[0, [0, 2]]).any()
    g = np.ones_like(y)
    expected, _, _ = conv2d_backward_ref(g, x, np.where(np.isinf(w), 0.0, w), 1, (1, 1, 1, 1), 1)
    gx = fastconv.conv2d_grad_input(g, w, x.shape, padding=1, algorithm=path_name)
    # inf reaches the input cells that tap touches, and nothing else becomes NaN
    assert not np.isnan(gx).any()
    finite = np.isfinite(gx)
    np.testing.assert_allclose(gx[finite], expected[finite], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", ["filters", "rows"])
def test_direct_grad_weight_nonfinite_x_as_in_numpy(layout, rng, request):
    """An inf in x reaches exactly the weight gradients whose sums contain it (a row's last,
    partial vector re-reads counted columns: they must add nothing, not 0 * inf)."""
    if not direct_kernels.level():
        pytest.skip("no SIMD direct kernels on this CPU")
    previous = direct_kernels.set_layout(layout)
    request.addfinalizer(lambda: direct_kernels.set_layout(previous))
    x = rng.standard_normal((2, 2, 7, 21))
    g = rng.standard_normal((2, 3, 5, 19))
    for col in (0, 9, 12, 18, 20):
        xi = x.copy()
        xi[1, 1, 3, col] = np.inf
        got = fastconv.conv2d_grad_weight(g, xi, (3, 2, 3, 3), algorithm="direct")
        with np.errstate(invalid="ignore"):
            _, expected, _ = conv2d_backward_ref(g, xi, np.zeros((3, 2, 3, 3)), 1, (0, 0, 0, 0), 1)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))


def test_dispatch_picks_direct_for_small_filter_counts():
    level = direct_kernels.level()
    assert _planner.direct_fits(16, 150, np.float32, level) is (level > 0)  # LeNet-5 conv2
    assert _planner.direct_fits(64, 147, np.float32, level) is (level > 0)  # 7x7 on RGB
    assert _planner.direct_fits(256, 2304, np.float32, level) is False  # wide: GEMM
    assert _planner.direct_fits(16, 150, np.float32, 0) is False  # no SIMD: GEMM


def test_rows_layout_is_chosen_where_it_fills_more_lanes():
    """LeNet-5 at AVX2: conv1 (6 filters, 28 columns) and conv2's grad-input (6 output channels,
    14 columns) vectorise along rows; conv2 (16 filters, 10 columns) along filters."""
    if direct_kernels.level() != 1:
        pytest.skip("the measured choice is for AVX2")
    assert direct_kernels.uses_rows((64, 1, 32, 32), (6, 1, 5, 5), (64, 6, 28, 28), 1, 1)
    assert direct_kernels.uses_rows((64, 16, 10, 10), (6, 16, 5, 5), (64, 6, 14, 14), 1, 4)
    assert not direct_kernels.uses_rows((64, 6, 14, 14), (16, 6, 5, 5), (64, 16, 10, 10), 1, 0)
    assert not direct_kernels.uses_rows((64, 1, 32, 32), (6, 1, 5, 5), (64, 6, 14, 14), 2, 0)
    # grad-weight: conv1's along rows, conv2's along filters
    assert direct_kernels.uses_rows((64, 1, 32, 32), (6, 1, 5, 5), (64, 6, 28, 28), 1, 0, True)
    assert not direct_kernels.uses_rows(
        (64, 6, 14, 14), (16, 6, 5, 5), (64, 16, 10, 10), 1, 0, True
    )
    with pytest.raises(ValueError, match="name must be one of"):
        direct_kernels.set_layout("columns")


def test_rows_register_block_is_chosen_where_it_fills_more_lanes():
    """Rows of a vector or less take one vector of two rows per register block (LeNet-5's conv2
    grad-input, 14 columns, at AVX-512); wider rows two vectors of one (conv1's 28 columns)."""
    if direct_kernels.level() != 2:
        pytest.skip("the choice shown is AVX-512's")
    assert direct_kernels.uses_two_rows((64, 16, 10, 10), (6, 16, 5, 5), (64, 6, 14, 14), 1, 4)
    assert not direct_kernels.uses_two_rows((64, 1, 32, 32), (6, 1, 5, 5), (64, 6, 28, 28), 1, 0)


@pytest.mark.parametrize("level", range(direct_kernels.detected_level() + 1))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "N, C, H, W, F, padding, rows",
    [
        (3, 16, 10, 10, 6, 4, 14),  # LeNet-5's conv2 grad-input: kernel rows skipped per row
        (2, 3, 9, 13, 5, (3, 1), 11),  # odd row count: a block's second row missing; FB < 6
        (2, 2, 8, 37, 7, 2, 8),  # rows of several vectors, a partial last block; two filter blocks
        (1, 1, 601, 5, 3, 2, 601),  # several runs of rows per image, of 101 rows each
    ],
)
def test_rows_register_blocks_give_the_same_bits(
    N, C, H, W, F, padding, rows, dtype, level, rng, assert_close, request
):
    """Both register blocks of the row-vectorised forward sum the same products in the same
    order: bitwise equal results, with and without ReLU, where rows skip padded kernel rows."""
    if not direct_kernels.level():
        pytest.skip("no SIMD direct kernels on this CPU")
    previous, previous_level = direct_kernels.set_layout("rows1"), direct_kernels.set_level(level)
    request.addfinalizer(lambda: direct_kernels.set_layout(previous))
    request.addfinalizer(lambda: direct_kernels.set_level(previous_level))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, 5, 5)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    kw = dict(padding=padding, algorithm="direct")
    one_row = [fastconv.conv2d(x, w, b, **kw, activation=act) for act in (None, "relu")]
    assert one_row[0].shape[2] == rows
    direct_kernels.set_layout("rows2")
    two_rows = [fastconv.conv2d(x, w, b, **kw, activation=act) for act in (None, "relu")]
    for got_one, got_two in zip(one_row, two_rows):
        np.testing.assert_array_equal(got_one, got_two)
    ph, pw = padding if isinstance(padding, tuple) else (padding, padding)
    expected = conv2d_ref(x, w, b, 1, (ph, ph, pw, pw), 1)
    assert_close(one_row[0], expected, dtype, C * 25)


def test_set_level_refuses_what_the_cpu_lacks():
    with pytest.raises(ValueError, match="level must be in"):
        direct_kernels.set_level(direct_kernels.detected_level() + 1)
    with pytest.raises(ValueError, match="level must be in"):
        direct_kernels.set_level(-1)
    assert direct_kernels.level() == direct_kernels.detected_level()


DEPTHWISE = [
    pytest.param(c, id=c.id)
    for c in CASES
    + MEDIUM_CASES
    + [
        _case(
            "depthwise_wide", N=2, C=3, H=9, W=70, F=3, groups=3, padding=(1, 2)
        ),  # SIMD runs + tail
        _case("depthwise_crop", N=1, C=2, H=8, W=40, F=2, groups=2, KH=2, KW=3, padding=3),
        # stride 2 down, 1 across (the SIMD grad-weight), 2 filters a channel, column tails
        _case(
            "depthwise_sh2_x2", N=2, C=3, H=11, W=37, F=6, groups=3, stride=(2, 1), padding=(1, 2)
        ),
        # 49 taps: the grad-weight kernel's passes of at most 9
        _case("depthwise_7x7", N=2, C=2, H=12, W=40, F=2, groups=2, KH=7, KW=7, padding=3),
    ]
    if c.groups > 1 and c.C == c.groups
]


@pytest.fixture(params=range(direct_kernels.detected_level() + 1), ids=lambda v: f"level{v}")
def simd_level(request):
    """Level 0 runs the scalar depthwise kernels; above, the SIMD plane kernel (stride 1 in W)."""
    previous = direct_kernels.set_level(request.param)
    yield request.param
    direct_kernels.set_level(previous)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", DEPTHWISE)
def test_depthwise_forward_and_grad_input(case, dtype, simd_level, rng, assert_close):
    x, w, b, g = inputs(case, rng, dtype)
    tblr = case_tblr(case)
    kw = dict(case_kwargs(case), algorithm="depthwise")
    expected = conv2d_ref(x, w, b, case.stride, tblr, case.dilation, case.groups)
    reduction = case.KH * case.KW
    assert_close(fastconv.conv2d(x, w, b, **kw), expected, dtype, reduction)
    relu = fastconv.conv2d(x, w, b, **kw, activation="relu")
    assert_close(relu, np.maximum(expected, 0), dtype, reduction)
    gx, gw, _ = conv2d_backward_ref(g, x, w, case.stride, tblr, case.dilation, case.groups)
    got = fastconv.conv2d_grad_input(g, w, x.shape, **kw)
    assert_close(got, gx, dtype, case.F // case.groups * reduction)
    got = fastconv.conv2d_grad_weight(g, x, w.shape, **kw)
    assert_close(got, gw, dtype, case.N * g.shape[2] * g.shape[3])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", DEPTHWISE)
def test_depthwise_grad_weight_and_bias_in_one_pass(case, dtype, simd_level, rng, assert_close):
    """conv2d_backward's grad_weight and grad_bias ("auto": the depthwise kernels, one pass over
    grad_y with SIMD), at every SIMD level."""
    x, w, _, g = inputs(case, rng, dtype)
    tblr = case_tblr(case)
    _, gw_ref, gb_ref = conv2d_backward_ref(g, x, w, case.stride, tblr, case.dilation, case.groups)
    _, gw, gb = fastconv.conv2d_backward(g, x, w, needs=("weight", "bias"), **case_kwargs(case))
    terms = case.N * g.shape[2] * g.shape[3]
    assert_close(gw, gw_ref, dtype, terms)
    assert_close(gb, gb_ref, dtype, terms)


@pytest.mark.parametrize("where", ["grad_y_border", "x_tail"])
def test_depthwise_grad_weight_nonfinite_as_in_numpy(where, simd_level, rng):
    """An inf meets the padding as 0 * inf = NaN, as on the GEMM path (the SIMD kernel multiplies
    a zero-padded copy; the scalar one skips padded taps and is not given such operands), and
    reaches exactly the sums that contain it, also from the columns past the last whole vector."""
    x = rng.standard_normal((2, 3, 9, 37))
    w = rng.standard_normal((3, 1, 3, 3))
    g = rng.standard_normal((2, 3, 9, 37))
    if where == "grad_y_border":
        g[1, 1, 0, 5] = np.inf  # the top row: its kh = 0 taps read padding
    else:
        x[0, 2, 4, 35] = np.inf  # a column past the last whole vector at any level
    _, gw, gb = fastconv.conv2d_backward(g, x, w, padding=1, groups=3, needs=("weight", "bias"))
    with np.errstate(invalid="ignore"):
        _, gw_ref, gb_ref = conv2d_backward_ref(g, x, w, 1, (1, 1, 1, 1), 1, 3)
    assert not np.isfinite(gw_ref).all()
    for got, expected in ((gw, gw_ref), (gb, gb_ref)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))


@pytest.mark.parametrize("level", range(conv_kernels.detected_level() + 1))
@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_gemm_any_alignment(dtype, level, rng, assert_close, request):
    """A 1x1 convolution's SIMD GEMM reads x in place and starts its blocks at a vector
    boundary: x starting 0..15 elements past a cache line gives the same results."""
    previous, previous_level = conv_kernels.set_gemm("simd"), conv_kernels.set_level(level)
    request.addfinalizer(lambda: conv_kernels.set_gemm(previous))
    request.addfinalizer(lambda: conv_kernels.set_level(previous_level))
    shape, w = (2, 5, 9, 16), rng.standard_normal((7, 5, 1, 1)).astype(dtype)
    size = int(np.prod(shape))
    base = rng.standard_normal(size + 16).astype(dtype)
    for offset in range(16):
        x = base[offset : offset + size].reshape(shape)
        assert x.flags.c_contiguous
        y = fastconv.conv2d(x, w, algorithm="gemm")
        assert_close(y, conv2d_ref(x, w, None, 1, (0, 0, 0, 0), 1), dtype, 5)


@pytest.mark.parametrize("level", range(conv_kernels.detected_level() + 1))
def test_simd_gemm_fused_bias_relu_keeps_nan(level, rng, request):
    """The SIMD GEMM adds the bias and applies ReLU in its last pass: NaN stays NaN (as
    np.maximum and torch.relu give), -inf becomes 0, in whole blocks, single vectors and the
    last columns alike."""
    previous, previous_level = conv_kernels.set_gemm("simd"), conv_kernels.set_level(level)
    request.addfinalizer(lambda: conv_kernels.set_gemm(previous))
    request.addfinalizer(lambda: conv_kernels.set_level(previous_level))
    x = rng.standard_normal((1, 3, 9, 67))
    w, b = rng.standard_normal((10, 3, 3, 3)), rng.standard_normal(10)
    x[0, 1, 4, [3, 40, 66]] = np.nan
    x[0, 2, 0, 20] = -np.inf
    y = fastconv.conv2d(x, w, b, padding=1, activation="relu", algorithm="gemm")
    with np.errstate(invalid="ignore"):
        expected = np.maximum(conv2d_ref(x, w, b, 1, (1, 1, 1, 1), 1), 0)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    finite = ~np.isnan(expected)
    np.testing.assert_allclose(y[finite], expected[finite], rtol=1e-10, atol=1e-10)


def test_set_gemm_refuses_unknown_names():
    with pytest.raises(ValueError, match="name must be one of"):
        conv_kernels.set_gemm("mkl")
    assert conv_kernels.set_gemm("auto") == "auto"
