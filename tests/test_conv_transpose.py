"""conv_transpose2d and its gradients against the scatter-loop reference (tests/reference.py),
PyTorch when importable, and central differences; argument errors."""

import numpy as np
import pytest
from reference import conv_transpose2d_backward_ref, conv_transpose2d_ref

import fastconv as fc
from fastconv.gradcheck import gradcheck

DTYPES = [np.float32, np.float64]

# id: N, C_in, H, W, C_out, KH, KW, stride, padding, output_padding, groups, dilation
CASES = {
    "basic": (2, 3, 5, 4, 4, 3, 3, 1, 0, 0, 1, 1),
    "upsample_4x4_s2": (2, 4, 5, 6, 3, 4, 4, 2, 1, 0, 1, 1),
    "stride3_outpad2": (1, 2, 4, 3, 3, 3, 2, 3, 1, 2, 1, 1),
    "stride_2x1_outpad_1x0": (2, 3, 4, 5, 2, 3, 3, (2, 1), (1, 0), (1, 0), 1, 1),
    "pad_pair": (2, 2, 5, 5, 3, 4, 3, 2, (2, 1), 1, 1, 1),
    "dilation2": (2, 3, 4, 4, 2, 3, 3, 1, 1, 0, 1, 2),
    "dilation3_outpad_from_dilation": (1, 2, 4, 3, 2, 2, 3, 1, 0, 2, 1, 3),  # op >= p + stride
    "dil_stride_pad": (2, 2, 5, 4, 4, 3, 2, 2, 1, 1, 1, (2, 3)),
    "groups2": (2, 4, 4, 5, 6, 3, 3, 2, 1, 1, 2, 1),
    "depthwise": (2, 3, 5, 5, 3, 3, 3, 2, 1, 0, 3, 1),
    "depthwise_x2": (1, 2, 4, 4, 4, 2, 2, 2, 0, 0, 2, 1),
    "kernel_1x1_s2": (2, 3, 4, 4, 5, 1, 1, 2, 0, 1, 1, 1),
    "kernel_2x5": (1, 2, 3, 4, 3, 2, 5, (1, 2), (0, 2), (0, 1), 1, 1),
    "batch1_channel1": (1, 1, 4, 4, 1, 3, 3, 2, 1, 1, 1, 1),
    "c_out1": (2, 3, 3, 3, 1, 4, 4, 2, 1, 0, 1, 1),
    "pad_crops_a_lot": (1, 2, 6, 6, 2, 3, 3, 1, 2, 0, 1, 1),
    # every output row lies in output_padding: no input reaches it (0 + bias, zero gradients)
    "output_in_output_padding_only": (1, 1, 1, 1, 1, 1, 1, 1, (1, 0), (2, 0), 1, (3, 1)),
    "rows_in_output_padding_only": (2, 2, 1, 3, 3, 1, 2, 1, (1, 0), (2, 0), 1, (3, 1)),
}


def _make(case, rng):
    N, C_in, H, W, C_out, KH, KW, s, p, op, g, d = CASES[case]
    x = rng.standard_normal((N, C_in, H, W))
    w = rng.standard_normal((C_in, C_out // g, KH, KW))
    b = rng.standard_normal(C_out)
    return x, w, b, dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)


def _ref_kwargs(kw):
    return dict(
        stride=kw["stride"],
        padding=kw["padding"],
        output_padding=kw["output_padding"],
        groups=kw["groups"],
        dilation=kw["dilation"],
    )


def test_reference_is_the_adjoint_of_conv2d_ref(rng):
    # The scatter reference against the gather reference of conv2d (both in tests/reference.py):
    # <conv_transpose(x), y> = <x, conv(y)> for the same weight and geometry.
    from reference import conv2d_ref

    x = rng.standard_normal((2, 4, 4, 5))
    w = rng.standard_normal((4, 3, 3, 2))  # C_in = 4 = conv's F; conv input channels 3
    y = conv_transpose2d_ref(x, w, stride=2, padding=1, output_padding=1)
    u = rng.standard_normal(y.shape)
    # The conv of the (OH, OW) output with bottom/right padding p - op maps back to (H, W).
    conv_u = conv2d_ref(u, w, stride=2, pad=(1, 0, 1, 0))
    assert conv_u.shape == x.shape
    np.testing.assert_allclose(np.sum(y * u), np.sum(x * conv_u), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_forward_matches_reference(case, dtype, rng, backend, assert_close):
    x, w, b, kw = _make(case, rng)
    expected = conv_transpose2d_ref(x, w, b, **_ref_kwargs(kw))
    xs, ws, bs = (backend.to_device(a.astype(dtype)) for a in (x, w, b))
    y = fc.conv_transpose2d(xs, ws, bs, **kw)
    assert fc.conv_transpose_output_shape(x.shape, w.shape, **kw) == expected.shape
    assert_close(y, expected, dtype, reduction=w.shape[0] * w.shape[2] * w.shape[3])
    y_nobias = fc.conv_transpose2d(xs, ws, None, **kw)
    assert_close(
        y_nobias,
        expected - b[None, :, None, None],
        dtype,
        reduction=w.shape[0] * w.shape[2] * w.shape[3],
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_backward_matches_reference(case, dtype, rng, backend, assert_close):
    x, w, b, kw = _make(case, rng)
    y_shape = fc.conv_transpose_output_shape(x.shape, w.shape, **kw)
    gy = rng.standard_normal(y_shape)
    gx_ref, gw_ref, gb_ref = conv_transpose2d_backward_ref(gy, x, w, **_ref_kwargs(kw))
    gys, xs, ws = (backend.to_device(a.astype(dtype)) for a in (gy, x, w))
    gx, gw, gb = fc.conv_transpose2d_backward(gys, xs, ws, **kw)
    assert_close(gx, gx_ref, dtype, reduction=gy.shape[1] * w.shape[2] * w.shape[3])
    assert_close(gw, gw_ref, dtype, reduction=gy.shape[0] * x.shape[2] * x.shape[3])
    assert_close(gb, gb_ref, dtype, reduction=gy[:, 0].size)
    only = fc.conv_transpose2d_backward(gys, xs, ws, needs=("weight",), **kw)
    assert only[0] is None and only[2] is None
    assert_close(only[1], gw_ref, dtype, reduction=gy.shape[0] * x.shape[2] * x.shape[3])


@pytest.mark.parametrize("case", ["upsample_4x4_s2", "dilation3_outpad_from_dilation", "groups2"])
def test_gradients_match_central_differences(case, rng):
    x, w, b, kw = _make(case, rng)

    def f(x, w, b):
        return fc.conv_transpose2d(x, w, b, **kw)

    def grads(g):
        return fc.conv_transpose2d_backward(g, x, w, **kw)

    gradcheck(f, [x, w, b], grads, eps=1e-6, rtol=1e-6, atol=1e-8, max_checks=40)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch(case, dtype, rng):
    torch = pytest.importorskip("torch")
    x, w, b, kw = _make(case, rng)
    x, w, b = (a.astype(dtype) for a in (x, w, b))
    xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    yt = torch.nn.functional.conv_transpose2d(
        xt, wt, bt, kw["stride"], kw["padding"], kw["output_padding"], kw["groups"], kw["dilation"]
    )
    gy = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.from_numpy(gy))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(fc.conv_transpose2d(x, w, b, **kw), yt.detach().numpy(), **tol)
    for ours, theirs in zip(fc.conv_transpose2d_backward(gy, x, w, **kw), (xt, wt, bt)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), **tol)


def test_inputs_not_modified_and_noncontiguous_accepted(rng):
    x, w, b, kw = _make("upsample_4x4_s2", rng)
    xw = np.asfortranarray(x)
    copies = [a.copy() for a in (xw, w, b)]
    y = fc.conv_transpose2d(xw, w[:, ::-1][:, ::-1], b, **kw)
    for a, c in zip((xw, w, b), copies):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(
        y, conv_transpose2d_ref(x, w, b, **_ref_kwargs(kw)), rtol=1e-10, atol=1e-10
    )


def test_empty_batch_and_dtype_rule(rng):
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    y = fc.conv_transpose2d(np.zeros((0, 3, 4, 4), np.float32), w, stride=2)
    assert y.shape == (0, 2, 9, 9) and y.dtype == np.float32
    y = fc.conv_transpose2d(np.ones((1, 3, 2, 2), np.float32), w.astype(np.float64))
    assert y.dtype == np.float64
    y = fc.conv_transpose2d(np.ones((1, 3, 2, 2), np.int64), np.ones((3, 2, 1, 1), np.int32))
    assert y.dtype == np.float64


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(output_padding=2, stride=2), ValueError, "output_padding"),
        (dict(output_padding=(0, 1)), ValueError, r"output_padding \(w\)"),
        (dict(output_padding=-1), ValueError, "output_padding"),
        (dict(stride=0), ValueError, "stride"),
        (dict(dilation=0), ValueError, "dilation"),
        (dict(padding=-1), ValueError, "padding"),
        (dict(padding="same"), ValueError, "padding"),
        (dict(padding=3), ValueError, "output size"),
        (dict(groups=2), ValueError, "groups"),
        (dict(groups=0), ValueError, "groups"),
        (dict(groups=1.0), TypeError, "groups"),
        (dict(stride=1.5), TypeError, "stride"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    x = np.zeros((1, 3, 3, 3))
    w = np.zeros((3, 2, 3, 3))
    with pytest.raises(error, match=match):
        fc.conv_transpose2d(x, w, **kwargs)


def test_bad_arrays_name_the_argument():
    x = np.zeros((1, 3, 3, 3))
    w = np.zeros((3, 2, 3, 3))
    with pytest.raises(ValueError, match="weight"):
        fc.conv_transpose2d(x, np.zeros((4, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"x must be 4-D \(N, C_in, H, W\) or 3-D \(C_in, H, W\)"):
        fc.conv_transpose2d(x[0, 0], w)
    with pytest.raises(ValueError, match="bias"):
        fc.conv_transpose2d(x, w, np.zeros(3))
    with pytest.raises(TypeError, match="x"):
        fc.conv_transpose2d(x.astype(complex), w)
    with pytest.raises(ValueError, match="grad_out"):
        fc.conv_transpose2d_backward(np.zeros((1, 2, 4, 4)), x, w)
    with pytest.raises(ValueError, match="needs"):
        fc.conv_transpose2d_backward(np.zeros((1, 2, 5, 5)), x, w, needs=("bias", "x"))
