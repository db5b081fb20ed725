"""The GPU backend's optimiser ops (re-exported by fastconv._backend.gpu.ops): an Adam or SGD step
over all parameters as one multi-tensor kernel launch (kernels/optim.cu) per device, dtype,
per-step constant (Adam's step count, SGD's first-step flag: one value for every parameter in the
usual case) and MAX_PARAMS parameters, scalars rounded to the parameter's dtype.

The kernel finds the parameters' lasting state (data, moments or momentum buffer) through a small
int64 table on the device (their addresses and a chunk list), built on the host and uploaded
once per parameter set: it is cached by those arrays' addresses and sizes, which an optimiser
keeps. The gradients, new arrays after every backward with ``zero_grad(set_to_none=True)``, are
passed as kernel arguments (addresses), so a step makes no host-to-device copy and reads nothing
back.
"""

from collections import OrderedDict

import numpy as np

from ... import _compat
from .kernels import _i32, _i64, _launch, device_info

CHUNK = 2048  # elements per chunk: 8 per thread of a 256-thread block
MAX_PARAMS = 16  # gradient address arguments per launch (OPTIM_PARAMS in optim.cu)
TABLE_CACHE = 16  # tables kept per process (a few parameter sets)
_tables: "OrderedDict[tuple, object]" = OrderedDict()


def _address(a):
    return a.data.ptr  # cupy.ndarray.data: a MemoryPointer


def _table(cupy, key, width, sizes):
    """(device table, its chunk count) of one parameter set: len(sizes) rows of ``width``
    addresses, then the chunk rows (parameter, begin, end). Cached by ``key`` (device, kernel,
    addresses, sizes)."""
    hit = _tables.get(key)
    if hit is not None:
        _tables.move_to_end(key)
        return hit
    addresses = np.array(key[2], dtype=np.int64).reshape(len(sizes), width)
    chunks = [(k, b, min(b + CHUNK, n)) for k, n in enumerate(sizes) for b in range(0, n, CHUNK)]
    host = np.concatenate([addresses.ravel(), np.array(chunks, dtype=np.int64).ravel()])
    hit = _tables[key] = (cupy.asarray(host), len(chunks))
    while len(_tables) > TABLE_CACHE:
        _tables.popitem(last=False)
    return hit


def _check(name, dtype, arrays, size):
    """The kernel reads these through raw addresses: refuse what it would misread."""
    for a in arrays:
        if a.dtype != dtype or not a.flags.c_contiguous or a.size != size:
            raise ValueError(
                f"fastconv: kernel {name} needs C-contiguous {dtype} arrays of one size per "
                f"parameter, got {a.dtype} of size {a.size} (parameter size {size})"
            )


def _groups(params, per_step):
    """Lists of parameter indices, one per launch: same device, dtype and per-step value, at
    most MAX_PARAMS each; empty parameters left out."""
    out = {}
    for k, (p, s) in enumerate(zip(params, per_step)):
        if p.size:
            out.setdefault((p.device.id, p.dtype, s), []).append(k)
    return [
        (key, ks[i : i + MAX_PARAMS])
        for key, ks in out.items()
        for i in range(0, len(ks), MAX_PARAMS)
    ]


def _launch_multi(cupy, name, grads, state, per_step, scalars_of):
    """Launch kernel ``name`` over every group of ``_groups``. ``state``: columns (lists, one
    array per parameter, the data first) whose addresses go in the cached table; ``grads`` go as
    arguments; ``scalars_of(T, value)``: the scalar arguments for a dtype and per-step value."""
    for (dev, dtype, value), picked in _groups(state[0], per_step):
        sizes = tuple(state[0][k].size for k in picked)
        rows, grad_args = [], []
        for k, size in zip(picked, sizes):
            _check(name, dtype, [c[k] for c in state] + [grads[k]], size)
            rows += [_address(c[k]) for c in state]
            grad_args.append(_address(grads[k]))
        with state[0][picked[0]].device:
            info = device_info()
            tab, n_chunks = _table(cupy, (dev, name, tuple(rows), sizes), len(state), sizes)
            grid = (max(1, min(n_chunks, 32 * info.sm_count, info.max_grid[0])),)
            block = (min(256, info.max_threads),)
            grad_args += [0] * (MAX_PARAMS - len(grad_args))
            args = (tab, *_i32(len(sizes), n_chunks), *scalars_of(dtype.type, value))
            _launch("optim.cu", name, dtype, grid, block, args + _i64(*grad_args))


def adam_update(params, grads, exp_avgs, exp_avg_sqs, steps, lr, beta1, beta2, eps, weight_decay):
    """One Adam step over every parameter, in place (see the CPU backend): one launch per device,
    dtype and step count (and MAX_PARAMS parameters)."""
    cupy = _compat.require_cupy()

    def scalars(T, t):
        step_size = lr / (1.0 - beta1**t)
        bias2_root = (1.0 - beta2**t) ** 0.5
        hyper = (weight_decay, 1.0 - beta1, beta2, 1.0 - beta2, bias2_root, eps, -step_size)
        return tuple(T(h) for h in hyper)

    state = (params, exp_avgs, exp_avg_sqs)
    _launch_multi(cupy, "adam_update", grads, state, steps, scalars)


def sgd_update(params, grads, buffers, firsts, lr, momentum, nesterov, weight_decay):
    """One SGD step over every parameter, in place (see the CPU backend): one launch per device,
    dtype and first-step flag (and MAX_PARAMS parameters)."""
    cupy = _compat.require_cupy()

    def scalars(T, first):
        return (T(weight_decay), T(momentum), *_i32(first, nesterov), T(-lr))

    bufs = [p if b is None else b for p, b in zip(params, buffers)]
    _launch_multi(cupy, "sgd_update", grads, (params, bufs), [bool(f) for f in firsts], scalars)
