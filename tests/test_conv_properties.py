"""Hypothesis: random valid convolutions match the reference; random invalid ones raise cleanly."""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from reference import conv2d_backward_ref, conv2d_ref, output_hw, pad_tblr  # noqa: E402

import fastconv  # noqa: E402

small = st.integers(0, 2)
pair_or_int = lambda s: st.one_of(s, st.tuples(s, s))  # noqa: E731

PADDINGS = st.one_of(
    small,
    st.tuples(small, small),
    st.tuples(st.tuples(small, small), st.tuples(small, small)),
    st.just("valid"),
    st.just("same"),
)


@st.composite
def conv_problems(draw):
    """A valid problem: (x, weight, bias, kwargs, (top, bottom, left, right)) with output >= 1."""
    groups = draw(st.integers(1, 3))
    C = groups * draw(st.integers(1, 3))
    F = groups * draw(st.integers(1, 3))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(pair_or_int(st.integers(1, 3)))
    dilation = draw(pair_or_int(st.integers(1, 3)))
    padding = draw(PADDINGS)
    N = draw(st.integers(0, 3))
    dh, dw = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    # the smallest H, W giving one output cell under this padding (extra rows/cols are fine too)
    if isinstance(padding, str):
        min_h = 1 if padding == "same" else (KH - 1) * dh + 1
        min_w = 1 if padding == "same" else (KW - 1) * dw + 1
    else:
        t, b, l, r = pad_tblr(padding, (1, 1), (KH, KW))
        min_h = max((KH - 1) * dh + 1 - t - b, 1)
        min_w = max((KW - 1) * dw + 1 - l - r, 1)
    H = draw(st.integers(min_h, min_h + 7))
    W = draw(st.integers(min_w, min_w + 7))
    tblr = pad_tblr(padding, (H, W), (KH, KW), stride, dilation)
    assert min(output_hw((H, W), (KH, KW), stride, tblr, dilation)) >= 1
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C // groups, KH, KW))
    b = draw(st.one_of(st.none(), st.just(rng.standard_normal(F))))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x, w, b, kwargs, tblr


def _ref_args(x, w, kwargs, tblr):
    return kwargs["stride"], tblr, kwargs["dilation"], kwargs["groups"]


@given(conv_problems())
def test_forward_matches_reference(problem):
    x, w, b, kwargs, tblr = problem
    y = fastconv.conv2d(x, w, b, **kwargs)
    OH, OW = output_hw(x.shape[2:], w.shape[2:], kwargs["stride"], tblr, kwargs["dilation"])
    assert y.shape == (x.shape[0], w.shape[0], OH, OW)
    assert y.dtype == np.float64
    assert fastconv.conv_output_shape(x.shape, w.shape, **kwargs) == y.shape
    if x.shape[0]:
        np.testing.assert_allclose(
            y, conv2d_ref(x, w, b, *_ref_args(x, w, kwargs, tblr)), rtol=1e-10, atol=1e-10
        )


@given(conv_problems(), st.sampled_from([np.float32, np.float64]))
def test_relu_forward_matches_reference(problem, dtype):
    x, w, b, kwargs, tblr = problem
    x, w = x.astype(dtype), w.astype(dtype)
    b = None if b is None else b.astype(dtype)
    y = fastconv.conv2d(x, w, b, activation="relu", **kwargs)
    assert y.dtype == dtype
    if x.shape[0]:
        expected = np.maximum(conv2d_ref(x, w, b, *_ref_args(x, w, kwargs, tblr)), 0)
        tol = 1e-4 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)


@given(conv_problems(), st.data())
def test_backward_matches_reference(problem, data):
    x, w, _, kwargs, tblr = problem
    OH, OW = output_hw(x.shape[2:], w.shape[2:], kwargs["stride"], tblr, kwargs["dilation"])
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    g = rng.standard_normal((x.shape[0], w.shape[0], OH, OW))
    gx, gw, gb = fastconv.conv2d_backward(g, x, w, **kwargs)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (w.shape[0],)
    if x.shape[0]:
        rx, rw, rb = conv2d_backward_ref(g, x, w, *_ref_args(x, w, kwargs, tblr))
    else:
        rx, rw, rb = np.zeros(x.shape), np.zeros(w.shape), np.zeros(w.shape[0])
    for got, want in ((gx, rx), (gw, rw), (gb, rb)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    gi = fastconv.conv2d_grad_input(g, w, x.shape, **kwargs)
    gwt = fastconv.conv2d_grad_weight(g, x, w.shape, **kwargs)
    np.testing.assert_allclose(gi, rx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gwt, rw, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------------------------
# Invalid parameters: always ValueError or TypeError, never anything else
# --------------------------------------------------------------------------------------------

BAD_INTS = st.one_of(
    st.integers(-3, 0),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
BAD_PAIRS = st.one_of(
    BAD_INTS,
    st.tuples(BAD_INTS, st.integers(1, 3)),
    st.tuples(st.integers(1, 3), BAD_INTS),
    st.tuples(BAD_INTS),
    # lengths other than 1 (torch's 1-tuple form, valid since issue 22) and 2
    st.lists(st.integers(1, 3), min_size=0, max_size=5)
    .filter(lambda v: len(v) not in (1, 2))
    .map(tuple),
)
BAD_PADDING = st.one_of(
    st.integers(-5, -1),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=6).filter(lambda s: s not in ("same", "valid")),
    st.tuples(st.integers(-3, -1), st.integers(0, 2)),
    st.tuples(
        st.tuples(st.integers(0, 2), st.integers(-3, -1)),
        st.tuples(st.integers(0, 2), st.integers(0, 2)),
    ),
    st.lists(st.integers(0, 2), min_size=3, max_size=4).map(tuple),
    st.tuples(st.tuples(st.integers(0, 2)), st.tuples(st.integers(0, 2), st.integers(0, 2))),
)


@st.composite
def invalid_calls(draw):
    """A valid problem with one thing broken: returns (kwargs, x, weight, bias)."""
    x, w, b, kwargs, _ = draw(conv_problems())
    what = draw(
        st.sampled_from(
            [
                "stride",
                "dilation",
                "padding",
                "groups",
                "x_ndim",
                "w_ndim",
                "channels",
                "filters",
                "tiny_input",
                "bias",
                "dtype",
            ]
        )
    )
    if what in ("stride", "dilation"):
        kwargs[what] = draw(BAD_PAIRS)
    elif what == "padding":
        kwargs["padding"] = draw(BAD_PADDING)
    elif what == "groups":
        kwargs["groups"] = draw(
            st.one_of(st.integers(-3, 0), st.floats(), st.booleans(), st.none())
        )
    elif what == "x_ndim":
        x = np.zeros(draw(st.sampled_from([x.shape[1:], x.shape + (1,), (x.size,), ()])))
    elif what == "w_ndim":
        w = np.zeros(draw(st.sampled_from([w.shape[1:], w.shape + (1,), (w.size,)])))
    elif what == "channels":
        extra = draw(st.integers(1, 2))
        x = np.zeros((x.shape[0], x.shape[1] + extra) + x.shape[2:])
    elif what == "filters":
        kwargs["groups"] = draw(st.integers(2, 3))
        F = kwargs["groups"] * draw(st.integers(1, 2)) + 1  # never divisible
        C = kwargs["groups"] * w.shape[1]
        x = np.zeros((x.shape[0], C) + x.shape[2:])
        w = np.zeros((F,) + w.shape[1:])
        b = None
    elif what == "tiny_input":
        kwargs["padding"] = 0
        kwargs["dilation"] = 1
        w = np.zeros(w.shape[:2] + (x.shape[2] + draw(st.integers(1, 3)), w.shape[3]))
    elif what == "bias":
        b = np.zeros(draw(st.sampled_from([(w.shape[0] + 1,), (w.shape[0], 1), ()])))
    else:
        which = draw(st.sampled_from(["x", "w", "b"]))
        dtype = draw(st.sampled_from([np.complex64, np.complex128, object, "U1"]))
        if which == "x":
            x = x.astype(dtype)
        elif which == "w":
            w = w.astype(dtype)
        else:
            b = np.zeros(w.shape[0], dtype=dtype)
    return kwargs, x, w, b


@given(invalid_calls())
def test_invalid_parameters_raise_cleanly(call):
    kwargs, x, w, b = call
    with pytest.raises((ValueError, TypeError)):
        fastconv.conv2d(x, w, b, **kwargs)
    g = np.zeros((1, 1, 1, 1))
    if b is None or (b.ndim == 1 and b.shape[0] == w.shape[0] and b.dtype.kind == "f"):
        # everything but the bias is in play for the backward pass and conv_output_shape
        with pytest.raises((ValueError, TypeError)):
            fastconv.conv2d_backward(g, x, w, **kwargs)
        if x.dtype.kind == "f" and w.dtype.kind == "f":
            with pytest.raises((ValueError, TypeError)):
                fastconv.conv_output_shape(x.shape, w.shape, **kwargs)
