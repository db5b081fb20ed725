"""CUDA kernel machinery for the GPU backend (fastconv._backend.gpu.ops): sources, compilation, launches.

The kernels are C++ templates (float, double) in ``fastconv/_backend/gpu/cuda/*.cu``, read at run time
and compiled with NVRTC through ``cupy.RawModule`` the first time a file is needed on a device
(CuPy also caches the binaries on disk). RawKernel checks nothing about its arguments: every
launch here passes C-contiguous arrays and scalars of the exact C++ type (``int`` ->
numpy.int32, ``idx_t``/``long long`` -> numpy.int64, ``T`` -> the array's dtype), since a
Python int would be passed as a 64-bit integer and a float as a double.

Launch configurations are sized from the current device's limits (:func:`device_info`,
cached per device). Importing this module never imports CuPy (only ``_compat`` does).
"""

from __future__ import annotations

import functools
import re
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ... import _compat
from .plans import tiles

KERNEL_DIR = Path(__file__).resolve().parent / "cuda"  # package data beside this module

# Kernel file -> its __global__ templates; each is instantiated for float and double.
KERNELS = {
    "conv_igemm.cu": ("conv_igemm", "splitk_reduce"),
    "conv_wgrad.cu": ("conv_wgrad", "wgrad_reduce"),
    "conv_depthwise.cu": ("depthwise_forward", "depthwise_grad_input", "depthwise_grad_weight"),
    "reduce.cu": ("sum_splits", "conv2d_grad_bias_partial"),
    "pool.cu": (
        "max_pool2d_forward",
        "adaptive_max_pool2d_forward",
        "max_pool2d_backward_link",
        "max_pool2d_backward_gather",
        "avg_pool2d_forward",
        "avg_pool2d_backward",
    ),
    "elementwise.cu": (
        "relu_backward",
        "bias_act",
        "softmax_xent_forward",
        "softmax_xent_backward",
    ),
    "optim.cu": ("adam_update", "sgd_update"),
    # tensor-core (TF32 / 3xTF32) conv_igemm and conv_wgrad: compiled only when asked for
    "conv_tc.cu": ("conv_igemm_tf32", "conv_igemm_3xtf32", "conv_wgrad_tf32", "conv_wgrad_3xtf32"),
}
# Kernels templated on the tile shape too: name<T, BM, BN> for each tile of gpu_plans.TILES.
TILED = frozenset({"conv_igemm", "conv_wgrad", *KERNELS["conv_tc.cu"]})
FLOAT_ONLY = frozenset({"conv_tc.cu"})  # files instantiated for float only
NVRTC_OPTIONS = ("-std=c++17",)
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_INDEX_DTYPES = (np.dtype(np.int64), np.dtype(np.int32))  # indices/labels, tables, workspaces

REDUCE_THREADS = 256  # must match common.cuh

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.MULTILINE)


def expression(name, dtype, tile=None):
    """The NVRTC name expression of kernel ``name`` for dtype (and tile (BM, BN) if tiled)."""
    ctype = _CTYPES[np.dtype(dtype)]
    return f"{name}<{ctype}, {tile[0]}, {tile[1]}>" if tile else f"{name}<{ctype}>"


def name_expressions(filename):
    """The NVRTC name expressions compiled for a kernel file: ``name<float>``, ``name<double>``
    (``name<float, BM, BN>`` ... for the tiled kernels; float only for FLOAT_ONLY files)."""
    out = []
    dtypes = [np.dtype(np.float32)] if filename in FLOAT_ONLY else list(_CTYPES)
    for name in KERNELS[filename]:
        for dtype in dtypes:
            shapes = tiles(dtype) if name in TILED else (None,)
            out += [expression(name, dtype, t) for t in shapes]
    return out


def kernel_source(filename):
    """The text of kernels/<filename> with its local ``#include "x.cuh"`` lines pasted in.

    Pasting (rather than passing -I to NVRTC) makes the headers part of the text CuPy hashes
    for its on-disk cache, so editing a header can never reuse a stale binary.
    """
    seen = set()

    def expand(name):
        if name in seen:  # each header once, like #pragma once
            return ""
        seen.add(name)
        text = (KERNEL_DIR / name).read_text(encoding="utf-8")
        text = re.sub(r"^[ \t]*#[ \t]*pragma[ \t]+once[ \t]*$", "", text, flags=re.MULTILINE)
        return _INCLUDE.sub(lambda m: expand(m.group(1)), text)

    return expand(filename)


_modules = {}  # (filename, device id) -> {name expression: cupy.RawKernel}
_modules_lock = threading.Lock()


def _kernel(filename, name, dtype, modules=_modules, tile=None):
    """The compiled ``name<T>`` (``name<T, BM, BN>``) of kernels/<filename> for the current
    device, T from dtype.

    ``modules`` is the cache (``_modules`` unless given: ``fastconv._backend.gpu._kernel`` passes its own
    ``_modules`` name, so that a test swapping that attribute gets a fresh cache)."""
    cupy = _compat.require_cupy()
    expr = expression(name, dtype, tile)
    key = (filename, cupy.cuda.runtime.getDevice())
    kernels = modules.get(key)
    if kernels is None:
        with _modules_lock:
            kernels = modules.get(key)
            if kernels is None:
                kernels = _compile(cupy, filename, expr)
                modules[key] = kernels
    return kernels[expr]


def _compile(cupy, filename, wanted):
    exprs = name_expressions(filename)
    try:
        module = cupy.RawModule(
            code=kernel_source(filename), options=NVRTC_OPTIONS, name_expressions=exprs
        )
        # get_function triggers the (lazy) compilation: do it now, inside the try.
        return {expr: module.get_function(expr) for expr in exprs}
    except Exception as exc:
        log = exc.get_message() if hasattr(exc, "get_message") else str(exc)
        raise RuntimeError(
            f"fastconv: CUDA kernel file {KERNEL_DIR / filename} failed to compile or load "
            f"(needed for kernel {wanted}; NVRTC options {' '.join(NVRTC_OPTIONS)}):\n{log}"
        ) from exc


class DeviceInfo(NamedTuple):
    max_threads: int  # per block
    shared_mem: int  # bytes per block (static + dynamic, without opt-in)
    sm_count: int
    max_grid: tuple  # (x, y, z)
    cc_major: int  # compute capability major (8: Ampere, 9: Hopper)


_device_infos = {}


def device_info():
    """Launch limits of the current device (cached per device)."""
    cupy = _compat.require_cupy()
    rt = cupy.cuda.runtime
    dev = rt.getDevice()
    info = _device_infos.get(dev)
    if info is None:
        attr = lambda a: int(rt.deviceGetAttribute(a, dev))  # noqa: E731
        info = DeviceInfo(
            max_threads=attr(rt.cudaDevAttrMaxThreadsPerBlock),
            shared_mem=attr(rt.cudaDevAttrMaxSharedMemoryPerBlock),
            sm_count=attr(rt.cudaDevAttrMultiProcessorCount),
            max_grid=tuple(
                attr(a)
                for a in (
                    rt.cudaDevAttrMaxGridDimX,
                    rt.cudaDevAttrMaxGridDimY,
                    rt.cudaDevAttrMaxGridDimZ,
                )
            ),
            cc_major=attr(rt.cudaDevAttrComputeCapabilityMajor),
        )
        _device_infos[dev] = info
    return info


def current_stream():
    """The handle (``ptr``) of this thread's current CUDA stream (0: the legacy default stream).

    Part of the key of every cached workspace a kernel writes (split-K partial sums, the
    max-pool backward lists): work queued on two streams may overlap, so each stream gets its
    own buffers. A handle can be reused by a new stream once the old one is destroyed; CUDA
    finishes the old stream's work first, so the reuse is as safe as on one stream."""
    return _compat.require_cupy().cuda.get_current_stream().ptr


def _cdiv(a, b):
    return -(-a // b)


def _i32(*values):
    """numpy.int32 scalars for the kernels' ``int`` parameters (refusing silent wrap-around)."""
    for v in values:
        if not -(2**31) <= int(v) < 2**31:
            raise ValueError(f"fastconv GPU kernels need this size to fit in int32: {v}")
    return tuple(np.int32(v) for v in values)


def _i64(*values):
    """numpy.int64 scalars for the kernels' ``idx_t`` (long long) parameters."""
    return tuple(np.int64(v) for v in values)


def _launch(filename, name, dtype, grid, block, args, tile=None):
    """Launch ``name<T>``. RawKernel reads whatever it is given, so refuse here what it would
    misread: an array that is not C-contiguous, or not of dtype T (int64 for indices/labels,
    int32 for tables and workspaces)."""
    dtype = np.dtype(dtype)
    for a in args:
        if isinstance(a, np.generic):
            continue
        if (a.dtype != dtype and a.dtype not in _INDEX_DTYPES) or not a.flags.c_contiguous:
            raise ValueError(
                f"fastconv: kernel {name} needs C-contiguous {dtype} arrays, got "
                f"{'' if a.flags.c_contiguous else 'non-contiguous '}{a.dtype}"
            )
    _kernel(filename, name, dtype, tile=tile)(grid, block, args)


def _launch_1d(filename, name, dtype, n, args):
    """Launch a grid-stride kernel over ``n`` elements (none when n == 0: CUDA refuses empty
    grids); a few waves of blocks per SM are enough."""
    if n == 0:
        return
    grid, block = _grid_1d(n, device_info())
    _launch(filename, name, dtype, grid, block, args)


@functools.lru_cache(maxsize=1024)  # keyed by the DeviceInfo too: a changed device misses
def _grid_1d(n, info):
    threads = min(256, info.max_threads)
    return (max(1, min(_cdiv(n, threads), 32 * info.sm_count, info.max_grid[0])),), (threads,)


def _launch_fixed(filename, name, dtype, grid, threads, shared_bytes, args):
    """Launch a kernel written for exactly ``threads`` threads and ``shared_bytes`` of static
    shared memory per block, after checking that this device allows them and the grid."""
    info = device_info()
    if threads > info.max_threads or shared_bytes > info.shared_mem:
        raise RuntimeError(
            f"fastconv: this GPU allows {info.max_threads} threads and {info.shared_mem} bytes of "
            f"shared memory per block; kernel {name} needs {threads} and {shared_bytes}"
        )
    if any(g > m for g, m in zip(grid, info.max_grid)):
        raise RuntimeError(f"fastconv: input too large for one launch of {name} (grid {grid})")
    _launch(filename, name, dtype, tuple(grid), (threads,), args)


def _launch_rows(filename, name, dtype, rows, splits, args):
    """A block-reduction kernel: x = rows (grid-strided), y = splits of each row's reduction."""
    grid = (min(rows, device_info().max_grid[0]), splits)
    shared = REDUCE_THREADS * np.dtype(dtype).itemsize
    _launch_fixed(filename, name, dtype, grid, REDUCE_THREADS, shared, args)


def _splits(total, base_blocks, min_per_split, align=1):
    """Cut a reduction over ``total`` items into contiguous splits for a deterministic 2-pass sum.

    Aims at ~4 blocks per SM in all (``base_blocks`` per split), each split holding at least
    ``min_per_split`` items (a multiple of ``align``). Returns (splits, items per split).
    """
    want = _cdiv(4 * device_info().sm_count, max(base_blocks, 1))
    splits = max(1, min(want, total // max(min_per_split, 1), 1024))
    per_split = _cdiv(_cdiv(max(total, 1), splits), align) * align
    return _cdiv(max(total, 1), per_split), per_split
