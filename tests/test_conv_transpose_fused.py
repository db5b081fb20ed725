"""conv_transpose2d_backward's two gradients in one CPU call (conv2d_forward_and_grad_weight: one
im2col per tile serves grad-input's and grad-weight's GEMMs): bitwise the results of computing
them one at a time, and right against the reference, on the GEMM path, on the fallbacks (another
algorithm chosen, grad-weight split by channel chunks) and for every thread count."""

import numpy as np
import pytest
from reference import conv_transpose2d_backward_ref

import fastconv as fc
from fastconv._backend.cpu import ops as cpu

# (x shape, weight shape (C_in, C_out // groups, KH, KW), stride, padding, output_padding, groups,
# dilation)
CASES = {
    # both passes on GEMM, grad-weight in partial sums: the shared im2col
    "k4s2_upsample": ((3, 64, 9, 7), (64, 16, 4, 4), 2, 1, 0, 1, 1),
    "groups_dilation_outpad": ((2, 8, 6, 5), (8, 3, 3, 3), 2, 1, 1, 2, (2, 1)),
    # 3 filters: float32 on GEMM, float64 on the direct kernels (the two calls)
    "few_filters": ((4, 3, 10, 10), (3, 8, 3, 3), 1, 1, 0, 1, 1),
    # 256 x 64 x 16 weights: grad-weight by channel chunks (the two calls)
    "weight_by_chunks": ((1, 256, 5, 5), (256, 64, 4, 4), 2, 1, 0, 1, 1),
}


def _inputs(case, dtype, seed=0):
    x_shape, w_shape, stride, padding, output_padding, groups, dilation = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    kw = dict(
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
    )
    y = fc.conv_transpose2d(x, w, None, **kw)
    gy = rng.standard_normal(y.shape).astype(dtype)
    return x, w, gy, kw


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CASES))
def test_one_call_is_bitwise_the_separate_calls(name, dtype):
    x, w, gy, kw = _inputs(CASES[name], dtype)
    assert hasattr(cpu, "conv2d_forward_and_grad_weight")
    gx, gw, gb = fc.conv_transpose2d_backward(gy, x, w, **kw)
    gx1 = fc.conv_transpose2d_backward(gy, x, w, **kw, needs=("input",))[0]
    gw1 = fc.conv_transpose2d_backward(gy, x, w, **kw, needs=("weight",))[1]
    assert gx.tobytes() == gx1.tobytes() and gw.tobytes() == gw1.tobytes()
    ref_gx, ref_gw, ref_gb = conv_transpose2d_backward_ref(gy, x, w, **kw)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for got, ref in ((gx, ref_gx), (gw, ref_gw), (gb, ref_gb)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol * max(1.0, float(np.abs(ref).max())))


@pytest.mark.parametrize("name", ["k4s2_upsample", "weight_by_chunks"])
def test_same_bits_for_any_thread_count(name):
    x, w, gy, kw = _inputs(CASES[name], np.float32, seed=1)
    before = fc.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 5):
            fc.set_num_threads(threads)
            results.append(fc.conv_transpose2d_backward(gy, x, w, **kw))
    finally:
        fc.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a.tobytes() == b.tobytes()
