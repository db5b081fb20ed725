"""The tensor-core (TF32 / 3xTF32) convolution kernels on the emulated GPU backend.

Run by run_cases.py (cases ``conv_tc-*``) with the fake ``cupy``. For each pass (forward,
grad_input, grad_weight) of a float32 convolution:

* the default precision is fp32 and launches the fp32 kernels, bitwise equal to an explicit
  ``gpu_precision("fp32")``;
* under ``gpu_precision("tf32")`` / ``("3xtf32")`` the tensor-core kernels run, and the error
  against a float64 reference, divided by the same pass on |inputs| (the sum of |products| each
  output adds up), stays within the documented bounds: TF32 2^-10 (each operand rounded to 10
  mantissa bits, 2^-11 relative) plus fp32 summation, 3xTF32 2^-20 plus fp32 summation; and
  TF32 is measurably coarser than 3xTF32 (the rounding really happens);
* on a device below compute capability 8.0 the setting is ignored (fp32 kernels, same bits).
"""

import numpy as np

import fastconv

PASSES = (
    # op, inputs (from x, w, gy), output like, extra arguments, arrays whose |.| bound the error
    ("conv2d_forward", ("x", "w", None), "gy", (False, "auto"), "conv_igemm"),
    ("conv2d_grad_input", ("gy", "w"), "x", ("auto",), "conv_igemm"),
    ("conv2d_grad_weight", ("gy", "x"), "w", ("auto",), "conv_wgrad"),
)


def bounds(K):
    """(TF32, 3xTF32) bounds on |error| / sum of |products| for a reduction of length K: the
    products' rounding plus fp32 summation (K terms; three per product for 3xTF32)."""
    u32 = 2.0**-24
    return 2.0**-10 + K * u32, 2.0**-20 + 3 * K * u32


def run(spec, rng, cupy, cpu, gpu, conv_inputs):
    x, w, b, gy, params = conv_inputs(spec["geom"], np.float32, rng)
    if spec.get("nonfinite"):
        w[1, 0, 0, 1] = np.nan  # grad_input's exact re-computation path, tensor-core kernels
    arrays = dict(x=x, w=w, gy=gy)
    detail = []
    for op, names, out_name, extra, kernel in PASSES:
        ins = [None if n is None else arrays[n] for n in names]
        like = arrays[out_name]
        groups = params[-1]  # reduction lengths: C/groups*KH*KW, F/groups*KH*KW, N*OH*OW
        K = {"conv2d_forward": w[0].size, "conv2d_grad_input": w.size // w.shape[1] // groups}
        K = K.get(op, gy[:, 0].size)

        def on_gpu(mode=None):
            out = cupy.empty(like.shape, np.float32)
            dev_in = [None if a is None else cupy.asarray(a) for a in ins]
            first = len(cupy.LAUNCHES)
            if mode is None:
                getattr(gpu, op)(*dev_in, out, *params, *extra)
            else:
                with fastconv.gpu_precision(mode):
                    getattr(gpu, op)(*dev_in, out, *params, *extra)
            names = [n.split("<")[0] for n, _, _ in cupy.LAUNCHES[first:]]
            return cupy.asnumpy(out), names

        def on_cpu(arrs):
            out = np.empty(like.shape, np.float64)
            getattr(cpu, op)(*arrs, out, *params, *extra)
            return out

        as64 = [None if a is None else a.astype(np.float64) for a in ins]
        with np.errstate(invalid="ignore"):
            ref = on_cpu(as64)
            mag = on_cpu([None if a is None else np.abs(a) for a in as64])
        default, launched = on_gpu()
        assert kernel in launched and not any("tf32" in n for n in launched), launched
        explicit, _ = on_gpu("fp32")
        np.testing.assert_array_equal(default, explicit, err_msg=f"{op}: fp32 default vs explicit")
        finite = np.isfinite(ref) & (mag > 0)
        ratios = {}
        for mode, bound in zip(("tf32", "3xtf32"), bounds(K)):
            got, launched = on_gpu(mode)
            assert f"{kernel}_{mode}" in launched, (mode, launched)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{op} {mode}")
            ratio = float(np.max(np.abs(got - ref)[finite] / mag[finite], initial=0.0))
            assert ratio <= bound, f"{op} {mode}: error {ratio:.3g} of sum |products| > {bound:.3g}"
            ratios[mode] = ratio
        fp32 = float(np.max(np.abs(default - ref)[finite] / mag[finite], initial=0.0))
        assert ratios["tf32"] > 2.0**-16 and ratios["3xtf32"] < ratios["tf32"] / 64, ratios
        detail.append(
            f"{op} K={K}: max |err|/sum|products| fp32 {fp32:.2g}, tf32 {ratios['tf32']:.2g}, "
            f"3xtf32 {ratios['3xtf32']:.2g}"
        )
    return "; ".join(detail)


def run_old_device(spec, rng, cupy, cpu, gpu, conv_inputs):
    """Compute capability 7.x: "tf32" is ignored (fp32 kernels, the same bits)."""
    cupy.configure_device(**{**spec["device"], "cc_major": 7})
    gpu._device_infos.clear()
    x, w, b, gy, params = conv_inputs(spec["geom"], np.float32, rng)
    outs = []
    for mode in ("fp32", "tf32"):
        y = cupy.empty(gy.shape, np.float32)
        first = len(cupy.LAUNCHES)
        with fastconv.gpu_precision(mode):
            gpu.conv2d_forward(cupy.asarray(x), cupy.asarray(w), None, y, *params, False, "auto")
        assert not any("tf32" in n for n, _, _ in cupy.LAUNCHES[first:])
        outs.append(cupy.asnumpy(y))
    np.testing.assert_array_equal(outs[0], outs[1])
    return "sm_70: tf32 ignored, fp32 kernels"
