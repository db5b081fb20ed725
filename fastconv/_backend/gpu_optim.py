"""The GPU backend's optimiser ops (re-exported by fastconv._backend.gpu): Adam and SGD steps as
one fused kernel launch per parameter (kernels/optim.cu), scalars rounded to the parameter's dtype."""

from .. import _compat
from .gpu_kernels import _i32, _i64, _launch_1d


def adam_update(params, grads, exp_avgs, exp_avg_sqs, steps, lr, beta1, beta2, eps, weight_decay):
    """One Adam step over every parameter, in place (see the CPU backend); one launch each."""
    _compat.require_cupy()
    for p, g, m, v, t in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
        T = p.dtype.type
        step_size = lr / (1.0 - beta1**t)
        bias2_root = (1.0 - beta2**t) ** 0.5
        with p.device:
            _launch_1d(
                "optim.cu",
                "adam_update",
                p.dtype,
                p.size,
                (p, g, m, v, *_i64(p.size), T(weight_decay), T(1.0 - beta1), T(beta2))
                + (T(1.0 - beta2), T(bias2_root), T(eps), T(-step_size)),
            )


def sgd_update(params, grads, buffers, firsts, lr, momentum, nesterov, weight_decay):
    """One SGD step over every parameter, in place (see the CPU backend); one launch each."""
    _compat.require_cupy()
    for p, g, buf, first in zip(params, grads, buffers, firsts):
        T = p.dtype.type
        with p.device:
            _launch_1d(
                "optim.cu",
                "sgd_update",
                p.dtype,
                p.size,
                (p, g, p if buf is None else buf, *_i64(p.size), T(weight_decay), T(momentum))
                + (*_i32(first, nesterov), T(-lr)),
            )
