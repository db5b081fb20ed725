"""The GEMM path on rows longer than a tile (src/tiles.pxd): one output row is then cut into runs
of columns, each its own im2col + GEMM. 1-D convolutions (H = 1) with long sequences and many
channels take it. Checked against the float64 reference for the forward pass and both gradients,
with padding, stride and dilation along W, and bitwise across thread counts."""

import numpy as np
import pytest
from reference import conv2d_backward_ref, conv2d_ref

import fastconv

# (x shape, weight shape, stride, padding ((t, b), (l, r)), dilation): K = C * KH * KW is large
# enough that a tile holds fewer columns than one output row.
CASES = {
    # K = 576: 455 columns per tile, rows of 1092 columns -> 3 runs; grad-weight in partial sums
    "1d_k9": ((2, 64, 1, 1100), (8, 64, 1, 9), 1, ((0, 0), (0, 0)), 1),
    "1d_pad_stride_dilation": ((2, 64, 1, 1201), (8, 64, 1, 9), (1, 2), ((0, 0), (5, 3)), (1, 2)),
    # two rows (H = 2), a 3x3 kernel: runs of columns of each row
    "2rows_3x3": ((1, 64, 4, 700), (4, 64, 3, 3), 1, ((1, 1), (1, 1)), 1),
    # F * C * KK > 131072: grad-weight split by channel chunks (16 channels: K = 144 per chunk,
    # 1820 columns per tile), rows of 1900
    "1d_weight_chunks": ((1, 256, 1, 1908), (64, 256, 1, 9), 1, ((0, 0), (0, 0)), 1),
}
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _run(x, w, b, gy, stride, padding, dilation):
    kw = dict(stride=stride, padding=padding, dilation=dilation, algorithm="gemm")
    y = fastconv.conv2d(x, w, b, activation="relu", **kw)
    gx = fastconv.conv2d_grad_input(gy, w, x.shape, **kw)
    gw = fastconv.conv2d_grad_weight(gy, x, w.shape, **kw)
    return y, gx, gw


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CASES))
def test_long_rows_against_reference(name, dtype):
    x_shape, w_shape, stride, padding, dilation = CASES[name]
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    pad = (*padding[0], *padding[1])
    ref_y = np.maximum(conv2d_ref(x, w, b, stride, pad, dilation), 0)
    gy = rng.standard_normal(ref_y.shape).astype(dtype)
    ref_gx, ref_gw, _ = conv2d_backward_ref(gy, x, w, stride, pad, dilation)
    before = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(1)
        one = _run(x, w, b, gy, stride, padding, dilation)
        fastconv.set_num_threads(3)
        three = _run(x, w, b, gy, stride, padding, dilation)
    finally:
        fastconv.set_num_threads(before)
    for got, ref in zip(one, (ref_y, ref_gx, ref_gw)):
        assert got.dtype == dtype
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(got, ref, rtol=0, atol=TOL[dtype] * scale * 10)
    for a, c in zip(one, three):  # the cut depends on the shapes only
        assert a.tobytes() == c.tobytes()


def test_conv1d_long_sequence_matches_conv2d_reference():
    """conv1d hands (N, C, 1, L) to the 2-D kernels: the public 1-D call on a long sequence."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 64, 1500)).astype(np.float32)
    w = rng.standard_normal((16, 64, 9)).astype(np.float32)
    y = fastconv.conv1d(x, w, None, 1, "same")
    ref = conv2d_ref(x[:, :, None, :], w[:, :, None, :], None, 1, (0, 0, 4, 4))[:, :, 0, :]
    np.testing.assert_allclose(y, ref, rtol=0, atol=2e-4 * float(np.abs(ref).max()))
