"""conv1d and its gradients against the float64 reference (tests/reference.py), PyTorch when
importable, and central differences; views instead of copies; argument errors."""

import numpy as np
import pytest
from reference import conv1d_ref, conv2d_backward_ref, same_padding

import fastconv as fc
from fastconv.gradcheck import gradcheck

DTYPES = [np.float32, np.float64]

# id: N, C, L, F, K, stride, padding, dilation, groups
CASES = {
    "basic": (2, 3, 11, 4, 3, 1, 0, 1, 1),
    "stride2": (2, 3, 12, 4, 3, 2, 0, 1, 1),
    "pad_int": (2, 3, 9, 4, 5, 1, 2, 1, 1),
    "pad_asym": (2, 2, 9, 3, 4, 1, (0, 3), 1, 1),
    "same": (2, 3, 10, 4, 4, 1, "same", 1, 1),
    "same_stride3_dil2": (2, 3, 13, 2, 3, 3, "same", 2, 1),
    "valid": (1, 2, 8, 3, 3, 1, "valid", 1, 1),
    "dilation3": (2, 2, 15, 3, 3, 1, 1, 3, 1),
    "groups2": (2, 4, 9, 6, 3, 2, 1, 1, 2),
    "depthwise": (2, 5, 16, 5, 3, 1, 1, 1, 5),
    "depthwise_x2": (1, 3, 10, 6, 5, 2, 2, 1, 3),
    "kernel1": (2, 3, 7, 4, 1, 1, 0, 1, 1),
    "kernel_eq_input": (2, 3, 5, 2, 5, 1, 0, 1, 1),
    "batch1_channel1": (1, 1, 9, 1, 3, 1, 1, 1, 1),
    "long": (2, 8, 300, 8, 9, 1, 4, 1, 1),
}


def _make(case, rng):
    N, C, L, F, K, s, p, d, g = CASES[case]
    x = rng.standard_normal((N, C, L))
    w = rng.standard_normal((F, C // g, K))
    b = rng.standard_normal(F)
    return x, w, b, dict(stride=s, padding=p, dilation=d, groups=g)


def _pad(kw, L, K):
    p = kw["padding"]
    if p == "same":
        return same_padding(L, K, kw["stride"], kw["dilation"])
    if p == "valid":
        return (0, 0)
    return tuple(p) if isinstance(p, tuple) else (p, p)


def _ref(x, w, b, kw):
    return conv1d_ref(
        x, w, b, kw["stride"], _pad(kw, x.shape[2], w.shape[2]), kw["dilation"], kw["groups"]
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_forward_matches_reference(case, dtype, rng, backend, assert_close):
    x, w, b, kw = _make(case, rng)
    expected = _ref(x, w, b, kw)
    xs, ws, bs = (backend.to_device(a.astype(dtype)) for a in (x, w, b))
    assert fc.conv1d_output_shape(x.shape, w.shape, **kw) == expected.shape
    assert_close(fc.conv1d(xs, ws, bs, **kw), expected, dtype, reduction=w[0].size)
    assert_close(
        fc.conv1d(xs, ws, bs, activation="relu", **kw),
        np.maximum(expected, 0),
        dtype,
        reduction=w[0].size,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_backward_matches_reference(case, dtype, rng, backend, assert_close):
    x, w, b, kw = _make(case, rng)
    gy = rng.standard_normal(_ref(x, w, b, kw).shape)
    # the 2-D reference's gradients on height-1 arrays (its own correctness: test_conv_backward)
    left, right = _pad(kw, x.shape[2], w.shape[2])
    gx_ref, gw_ref, gb_ref = (
        a.squeeze(2) if a.ndim == 4 else a
        for a in conv2d_backward_ref(
            gy[:, :, None],
            x[:, :, None],
            w[:, :, None],
            (1, kw["stride"]),
            (0, 0, left, right),
            (1, kw["dilation"]),
            kw["groups"],
        )
    )
    gys, xs, ws = (backend.to_device(a.astype(dtype)) for a in (gy, x, w))
    gx, gw, gb = fc.conv1d_backward(gys, xs, ws, **kw)
    assert_close(gx, gx_ref, dtype, reduction=gy.shape[1] * w.shape[2])
    assert_close(gw, gw_ref, dtype, reduction=gy.shape[0] * gy.shape[2])
    assert_close(gb, gb_ref, dtype, reduction=gy[:, 0].size)
    assert_close(
        fc.conv1d_grad_input(gys, ws, x.shape, **kw),
        gx_ref,
        dtype,
        reduction=gy.shape[1] * w.shape[2],
    )
    assert_close(
        fc.conv1d_grad_weight(gys, xs, w.shape, **kw),
        gw_ref,
        dtype,
        reduction=gy.shape[0] * gy.shape[2],
    )


@pytest.mark.parametrize("case", ["same_stride3_dil2", "groups2"])
def test_gradients_match_central_differences(case, rng):
    x, w, b, kw = _make(case, rng)
    gradcheck(
        lambda x, w, b: fc.conv1d(x, w, b, **kw),
        [x, w, b],
        lambda g: fc.conv1d_backward(g, x, w, **kw),
        rtol=1e-6,
        atol=1e-8,
    )


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [c for c in CASES if not isinstance(CASES[c][6], tuple)])
def test_matches_torch(case, dtype, rng):
    torch = pytest.importorskip("torch")
    x, w, b, kw = _make(case, rng)
    x, w, b = (a.astype(dtype) for a in (x, w, b))
    if kw["padding"] == "same" and kw["stride"] != 1:
        pytest.skip("torch refuses padding='same' with stride > 1")
    xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    yt = torch.nn.functional.conv1d(
        xt, wt, bt, kw["stride"], kw["padding"], kw["dilation"], kw["groups"]
    )
    gy = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.from_numpy(gy))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(fc.conv1d(x, w, b, **kw), yt.detach().numpy(), **tol)
    for ours, theirs in zip(fc.conv1d_backward(gy, x, w, **kw), (xt, wt, bt)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), **tol)


def test_views_not_copies_and_out(rng):
    x = rng.standard_normal((2, 3, 20)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3)).astype(np.float32)
    y = fc.conv1d(x, w)
    assert y.flags.c_contiguous and y.base is not None  # a reshaped view of conv2d's result
    out = np.empty((2, 4, 18), np.float32)
    assert fc.conv1d(x, w, out=out) is out
    np.testing.assert_array_equal(out, y)
    with pytest.raises(ValueError, match="out"):
        fc.conv1d(x, w, out=np.empty((2, 4, 17), np.float32))
    copies = (x.copy(), w.copy())
    fc.conv1d_backward(np.ones_like(y), x, w)
    np.testing.assert_array_equal(copies[0], x)
    np.testing.assert_array_equal(copies[1], w)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(stride=0), ValueError, "stride"),
        (dict(stride=(1, 2)), TypeError, "stride"),
        (dict(dilation=0), ValueError, "dilation"),
        (dict(padding=-1), ValueError, "padding"),
        (dict(padding=(1, 2, 3)), ValueError, "padding"),
        (dict(padding="full"), ValueError, "padding"),
        (dict(groups=2), ValueError, "groups"),
        (dict(padding=0, dilation=5), ValueError, "output length"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        fc.conv1d(np.zeros((1, 3, 8)), np.zeros((4, 3, 3)), **kwargs)


def test_bad_arrays_name_the_argument():
    with pytest.raises(ValueError, match="x must be 3-D"):
        fc.conv1d(np.zeros((1, 3, 1, 8)), np.zeros((4, 3, 3)))
    with pytest.raises(ValueError, match="weight must be 3-D"):
        fc.conv1d(np.zeros((1, 3, 8)), np.zeros((4, 3, 1, 3)))
    with pytest.raises(ValueError, match="channels"):
        fc.conv1d(np.zeros((1, 3, 8)), np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match="bias"):
        fc.conv1d(np.zeros((1, 3, 8)), np.zeros((4, 3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="grad_out"):
        fc.conv1d_backward(np.zeros((1, 4, 5)), np.zeros((1, 3, 8)), np.zeros((4, 3, 3)))
