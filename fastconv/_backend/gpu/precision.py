"""How float32 GPU convolutions multiply: strict fp32 (the default), TF32 or 3xTF32 tensor cores.

Opt-in, like PyTorch's ``torch.backends.cudnn.allow_tf32`` but off by default:
``fastconv.set_gpu_precision("tf32")`` for the process, or ``with fastconv.gpu_precision("tf32"):``
for the calling Python thread inside a block. It applies to the implicit-GEMM convolution
passes (forward, grad-input, grad-weight) on float32 CuPy arrays and devices of compute
capability 8.0 (Ampere) or later; float64, depthwise convolutions, the dense layers, NumPy
arrays and older GPUs keep strict fp32 whatever the setting (no error, as in PyTorch).

* ``"fp32"``: FMAs in fp32 (bitwise the same results as before this switch existed).
* ``"tf32"``: each operand rounded to TF32 (10-bit mantissa) on the tensor cores, sums in fp32:
  each product is off by up to ~1e-3 relative, a sum of K products by up to ~1e-3 of the sum of
  their magnitudes (tests/gpu_emulation: measured against the CPU backend under emulation).
* ``"3xtf32"``: operands split into two TF32 parts, three tensor-core products: close to fp32
  (the dropped small*small term is ~2^-22 relative), at three times the tensor-core work.

This module imports no CuPy.
"""

import contextlib
import threading

PRECISIONS = ("fp32", "tf32", "3xtf32")
# Kernel-name suffix of each tensor-core precision (kernels/conv_tc.cu).
SUFFIX = {"fp32": "", "tf32": "_tf32", "3xtf32": "_3xtf32"}
MIN_CC_MAJOR = 8  # mma.sync .tf32 needs sm_80

_precision = "fp32"
_local = threading.local()  # .precision: this Python thread's setting inside gpu_precision()


def _check(mode):
    if not isinstance(mode, str) or mode not in PRECISIONS:
        raise ValueError(
            f"GPU precision must be one of {', '.join(map(repr, PRECISIONS))}, got {mode!r}"
        )
    return mode


def get_gpu_precision():
    """The precision of float32 GPU convolutions for the calling Python thread: "fp32" (default),
    "tf32" or "3xtf32"."""
    local = getattr(_local, "precision", None)
    return local if local is not None else _precision


def set_gpu_precision(mode):
    """Set how float32 GPU convolutions multiply, process-wide: "fp32" (default: strict fp32 FMAs),
    "tf32" (TF32 tensor cores, products ~1e-3 relative) or "3xtf32" (three TF32 products per
    product: close to fp32). Only on compute capability >= 8.0; float64, depthwise convolutions
    and older GPUs stay fp32. Returns the previous value; ValueError for anything else."""
    global _precision
    previous = get_gpu_precision()
    _precision = _check(mode)
    return previous


@contextlib.contextmanager
def gpu_precision(mode):
    """Within the block, float32 GPU convolutions called from this Python thread use ``mode``
    (see :func:`set_gpu_precision`); other threads and the process setting are unaffected."""
    mode = _check(mode)
    previous = getattr(_local, "precision", None)
    _local.precision = mode
    try:
        yield
    finally:
        _local.precision = previous


def effective(dtype_char, cc_major):
    """The precision a convolution pass of this dtype runs with on a device of this compute
    capability: the setting for float32 on sm_80+, else "fp32"."""
    mode = get_gpu_precision()
    if mode == "fp32" or dtype_char != "f" or cc_major < MIN_CC_MAJOR:
        return "fp32"
    return mode
