"""Cross-check against torch.nn.functional.conv2d: forward and all three gradients."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402
from reference import CASES, MEDIUM_CASES, case_kwargs, case_tblr, make_inputs  # noqa: E402

import fastconv  # noqa: E402

DTYPES = [np.float32, np.float64]
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}

# torch's own cases on top of the shared grid: wider channels, bigger kernels, everything at once
EXTRA = [
    (
        "wide_groups4",
        dict(N=2, C=16, H=9, W=10, F=8, KH=3, KW=3, stride=1, padding=1, dilation=1, groups=4),
    ),
    (
        "all_at_once",
        dict(
            N=3,
            C=6,
            H=11,
            W=9,
            F=9,
            KH=3,
            KW=2,
            stride=(2, 1),
            padding=((2, 0), (1, 3)),
            dilation=(1, 2),
            groups=3,
        ),
    ),
    (
        "big_kernel",
        dict(N=1, C=2, H=12, W=12, F=3, KH=7, KW=5, stride=2, padding="same", dilation=1, groups=1),
    ),
    (
        "depthwise_same_s2",
        dict(
            N=2, C=8, H=10, W=11, F=16, KH=3, KW=3, stride=2, padding="same", dilation=1, groups=8
        ),
    ),
]
GRID = [pytest.param(c, id=c.id) for c in CASES + MEDIUM_CASES] + [
    pytest.param(CASES[0]._replace(id=name, **kw), id=name) for name, kw in EXTRA
]


@pytest.fixture(autouse=True)
def strict_torch_fp32():
    """Keep torch in true fp32 (no TF32) while these tests run; irrelevant on CPU but harmless."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def torch_conv(case, x, w, b, g, relu=False):
    """torch forward and gradients; asymmetric padding through F.pad, then padding=0."""
    t, bottom, l, r = case_tblr(case)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = TF.conv2d(
        TF.pad(xt, (l, r, t, bottom)),
        wt,
        bt,
        stride=case.stride,
        dilation=case.dilation,
        groups=case.groups,
    )
    if relu:
        y = TF.relu(y)
    y.backward(torch.tensor(g))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


def torch_out_shape(case):
    t, bottom, l, r = case_tblr(case)
    x = torch.zeros(case.N, case.C, case.H + t + bottom, case.W + l + r)
    w = torch.zeros(case.F, case.C // case.groups, case.KH, case.KW)
    return tuple(
        TF.conv2d(x, w, stride=case.stride, dilation=case.dilation, groups=case.groups).shape
    )


def tol(dtype, reduction):
    """Both sides round: twice the suite's per-dtype tolerance for a sum of `reduction` products."""
    scale = np.sqrt(reduction)
    if dtype == np.float64:
        return dict(rtol=1e-9, atol=1e-9 * scale)
    return dict(rtol=2e-4, atol=2e-5 * scale)


def reductions(case, out_shape):
    """Products summed per element of y, grad_input, grad_weight, grad_bias."""
    N, F, OH, OW = out_shape
    k = case.KH * case.KW
    return case.C // case.groups * k, F // case.groups * k, N * OH * OW, N * OH * OW


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", GRID)
def test_matches_torch(case, dtype, rng):
    x, w, b = (a.astype(dtype) for a in make_inputs(case, rng))
    g = rng.standard_normal(torch_out_shape(case)).astype(dtype)
    ty, tgx, tgw, tgb = torch_conv(case, x, w, b, g)
    kw = case_kwargs(case)
    y = fastconv.conv2d(x, w, b, **kw)
    gx, gw, gb = fastconv.conv2d_backward(g, x, w, **kw)
    names = ("y", "grad_input", "grad_weight", "grad_bias")
    for name, got, want, red in zip(
        names, (y, gx, gw, gb), (ty, tgx, tgw, tgb), reductions(case, g.shape)
    ):
        assert got.dtype == dtype, name
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, err_msg=name, **tol(dtype, red))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "case", [p for p in GRID if p.id in ("basic", "groups3_stride_dil", "depthwise_same_s2")]
)
def test_relu_matches_torch(case, dtype, rng):
    x, w, b = (a.astype(dtype) for a in make_inputs(case, rng))
    g = rng.standard_normal(torch_out_shape(case)).astype(dtype)
    ty, tgx, tgw, tgb = torch_conv(case, x, w, b, g, relu=True)
    kw = case_kwargs(case)
    y = fastconv.conv2d(x, w, b, activation="relu", **kw)
    # the ReLU gradient is the mask of the fused output applied to grad_out
    gx, gw, gb = fastconv.conv2d_backward(g * (y > 0), x, w, **kw)
    for got, want, red in zip((y, gx, gw, gb), (ty, tgx, tgw, tgb), reductions(case, g.shape)):
        np.testing.assert_allclose(got, want, **tol(dtype, red))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
@pytest.mark.parametrize(
    "case", [p for p in GRID if p.values[0].padding == "same" and p.values[0].stride == 1]
)
def test_same_padding_matches_torch_same(case, rng):
    """torch supports padding='same' at stride 1; both must agree (including even kernels)."""
    x, w, b = make_inputs(case, rng)
    ty = TF.conv2d(
        torch.tensor(x),
        torch.tensor(w),
        torch.tensor(b),
        padding="same",
        dilation=case.dilation,
        groups=case.groups,
    ).numpy()
    y = fastconv.conv2d(x, w, b, **case_kwargs(case))
    np.testing.assert_allclose(y, ty, rtol=1e-9, atol=1e-9)
