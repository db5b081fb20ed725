"""One LeNet-5 training step (forward, backward, Adam step) on the emulated GPU backend.

Run by run_cases.py (case ``lenet-step``) with the fake ``cupy``. Checks, for the second step
(the first builds the launch plans and Adam's state):

* no host synchronisation at all: the fake cupy records every read-back of device values
  (``get``, ``item``, ``float``/``int``/``bool`` of a device array) in ``cupy.SYNCS``;
* no host-to-device copy either (``cupy.UPLOADS``): launch plans and the optimiser's device
  table are built in the first step, and the gradients' new addresses are kernel arguments;
* fastconv kernel launches (``cupy.LAUNCHES``) within ``KERNEL_BUDGET``;
* the parameters after two steps equal those of the same model trained on the CPU backend.

The other array operations of the step (CuPy's own kernels on a GPU: fills, ``+=`` of the
gradients, Adam's element-wise arithmetic, cuBLAS products) are counted in ``cupy.OPS`` and
reported; their number belongs to the layers and the optimiser, not to the GPU backend.
"""

import collections

import numpy as np

BATCH = 8
# fastconv kernels per step, without split sums: forward 10 (c1 depthwise, 2 max pools, c3 and
# c5 GEMMs, 2 bias+ReLU epilogues of the linear layers, softmax) and backward 15 (softmax,
# 4 relu_backward, c5/c3 grad_input and grad_weight GEMMs, 3 grad_bias, 2 x 2 max-pool passes,
# c1's depthwise grad_weight). A split reduction adds one launch: at most 10 (the 6 GEMM
# passes, c1's grad_weight, 3 grad_bias), how many depends on the SM count. conv2d_backward
# takes grad_weight and grad_bias together (gpu.conv2d_grad_weight_bias): 2 launches fewer, so
# backward makes 13 (28 measured with the split sums on the emulator's 4 SMs).
# Adam: one multi-tensor launch over all 10 parameters (kernels/optim.cu), in place of one
# launch per parameter (38 launches per step before) and, before that, ~130 element-wise CuPy
# operations.
KERNEL_BUDGET = 23 + 10 + 1
# The other array operations: with the trainer's zero_grad(set_to_none=True) the backward assigns
# the gradients (no fills, no +=) and Adam is fused, which leaves the layers' cuBLAS products, the
# loss's mean and its gradient's scale (10 measured: 6 matmul, 3 sums, 1 divide).
OTHER_OPS_BUDGET = 12


def _model(device, cupy_mod):
    from fastconv import nn, optim
    from fastconv.lenet import LeNet5

    model = LeNet5(seed=0)
    if device == "gpu":
        model.to("gpu")
    model.train()
    return model, optim.Adam(model.parameters(), lr=1e-3), nn.SoftmaxCrossEntropy()


def _step(model, opt, loss_fn, x, y):
    opt.zero_grad(set_to_none=True)  # as fastconv.lenet's trainer does
    logits = model.forward(x)
    loss = loss_fn.forward(logits, y)
    model.backward(loss_fn.backward(), input_grad=False)
    opt.step()
    return loss


def run(spec, rng, cupy):
    x = rng.standard_normal((BATCH, 1, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int64)
    gpu = _model("gpu", cupy)
    cpu = _model("cpu", None)
    xd, yd = cupy.asarray(x), cupy.asarray(y)
    _step(*gpu, xd, yd)
    _step(*cpu, x, y)
    for record in (cupy.LAUNCHES, cupy.SYNCS, cupy.OPS, cupy.UPLOADS):
        del record[:]
    _step(*gpu, xd, yd)
    launches = [name.split("<")[0] for name, _, _ in cupy.LAUNCHES]
    syncs, ops, uploads = list(cupy.SYNCS), collections.Counter(cupy.OPS), list(cupy.UPLOADS)
    _step(*cpu, x, y)
    assert not syncs, f"host synchronisations inside a training step: {syncs}"
    assert not uploads, f"host-to-device copies inside a training step: {uploads}"
    assert launches.count("adam_update") == 1, collections.Counter(launches)
    assert len(launches) <= KERNEL_BUDGET, (
        f"{len(launches)} fastconv kernel launches per step (budget {KERNEL_BUDGET}): "
        f"{collections.Counter(launches)}"
    )
    assert sum(ops.values()) <= OTHER_OPS_BUDGET, (
        f"{sum(ops.values())} other array operations per step (budget {OTHER_OPS_BUDGET}): {ops}"
    )
    for (name, p_gpu), p_cpu in zip(
        gpu[0].named_parameters().items(), cpu[0].named_parameters().values()
    ):
        np.testing.assert_allclose(
            cupy.asnumpy(p_gpu.data), p_cpu.data, rtol=1e-4, atol=1e-5, err_msg=name
        )
    return (
        f"{len(launches)} fastconv kernel launches (budget {KERNEL_BUDGET}), 0 host syncs, "
        "0 uploads, "
        f"{sum(ops.values())} other array operations per step: "
        f"{dict(collections.Counter(launches))}; {dict(ops)}"
    )


def run_tf32(spec, rng, cupy):
    """Two SGD steps (lr 0.1, so that gradient errors show in the parameters) with
    ``gpu_precision("tf32")`` and ``("3xtf32")``: the same launches as fp32 with the convolution
    GEMMs on the tensor-core kernels, no host synchronisation or upload, and parameter updates
    close to the CPU's, relative to their size: 3xTF32 within 1e-5 (fp32's ~1e-6); TF32 within
    0.5 only, because its ~1e-3 per product flips a ReLU gate or a max-pool winner now and then,
    which sends a gradient elsewhere (measured 5e-5 to 0.2 over seeds; a wrong kernel gives ~1)."""
    import fastconv
    from fastconv import nn, optim
    from fastconv.lenet import LeNet5

    x = rng.standard_normal((BATCH, 1, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int64)
    runs = {}
    for device in ("cpu", "fp32", "tf32", "3xtf32"):
        model = LeNet5(seed=0)
        init = [np.array(p.data) for p in model.parameters()]
        if device != "cpu":
            model.to("gpu")
        model.train()
        opt, loss_fn = optim.SGD(model.parameters(), lr=0.1), nn.SoftmaxCrossEntropy()
        xs, ys = (x, y) if device == "cpu" else (cupy.asarray(x), cupy.asarray(y))
        with fastconv.gpu_precision("fp32" if device == "cpu" else device):
            _step(model, opt, loss_fn, xs, ys)
            for record in (cupy.LAUNCHES, cupy.SYNCS, cupy.UPLOADS):
                del record[:]
            _step(model, opt, loss_fn, xs, ys)
        launches = collections.Counter(name.split("<")[0] for name, _, _ in cupy.LAUNCHES)
        assert not cupy.SYNCS and not cupy.UPLOADS, (device, cupy.SYNCS, cupy.UPLOADS)
        params = [np.asarray(cupy.asnumpy(p.data)) for p in model.parameters()]
        runs[device] = (launches, params)
    fp32 = runs["fp32"][0]
    detail = []
    for mode, limit in (("tf32", 0.5), ("3xtf32", 1e-5)):
        tc = runs[mode][0]
        assert sum(fp32.values()) == sum(tc.values()), (fp32, tc)
        for kernel in ("conv_igemm", "conv_wgrad"):
            assert tc[f"{kernel}_{mode}"] == fp32[kernel] and kernel not in tc, (mode, tc)
        worst = max(
            float(np.linalg.norm(p - c) / np.linalg.norm(c - p0))
            for p, c, p0 in zip(runs[mode][1], runs["cpu"][1], init)
        )
        assert worst <= limit, f"{mode}: |update - cpu's| / |cpu's update| = {worst:.3g}"
        detail.append(f"{mode}: {sum(tc.values())} launches, update error {worst:.2g}")
    return "; ".join(detail) + f" (fp32 {sum(fp32.values())} launches)"
