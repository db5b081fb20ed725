"""show_config(): what was compiled in and what runs, for bug reports and benchmark headers."""

import numpy as np
import scipy

from . import _compat
from ._backend.cpu import autotune as _autotune
from ._backend.cpu import threads as _threads
from ._backend.gpu import precision as _gpu_precision
from ._kernels import direct as _direct
from ._version import __version__

_SIMD_NAMES = {0: "baseline (direct kernels unused)", 1: "AVX2 + FMA", 2: "AVX-512"}


def config():
    """The facts show_config prints, as a dict."""
    return {
        "fastconv": __version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "openmp": _threads.openmp_enabled(),
        "threads": _threads.get_num_threads(),
        "blas": [
            {
                k: info.get(k)
                for k in (
                    "internal_api",
                    "version",
                    "architecture",
                    "threading_layer",
                    "num_threads",
                    "filepath",
                )
            }
            for info in _threads.blas_info()
        ],
        "openblas_coretype_env": _threads.coretype_env(),
        "cpu": _autotune.cpu_model(),
        "simd": _SIMD_NAMES[_direct.level()],
        "autotune": _autotune.get_autotune(),
        "autotune_cache": _autotune.cache_path(),
        "cupy": getattr(_compat.cupy, "__version__", None),
        "gpu_available": _compat.gpu_available(),
        "gpu_precision": _gpu_precision.get_gpu_precision(),
    }


def show_config():
    """Print fastconv's version, OpenMP, thread count, BLAS (core type), CPU (and the SIMD level of
    the direct kernels), autotuning and GPU support."""
    c = config()
    print(f"fastconv {c['fastconv']} (numpy {c['numpy']}, scipy {c['scipy']})")
    print(f"  OpenMP compiled in: {c['openmp']}")
    print(f"  threads: {c['threads']} (fastconv.set_num_threads; default honours OMP_NUM_THREADS)")
    for b in c["blas"]:
        print(
            f"  BLAS: {b['internal_api']} {b['version']}, core type {b['architecture']}, "
            f"{b['threading_layer']}, {b['num_threads']} threads, {b['filepath']}"
        )
    env = c["openblas_coretype_env"]
    print(
        f"  OPENBLAS_CORETYPE: {env if env else '(unset)'}"
        + ("  <- forces OpenBLAS's kernels for that core; unset it for full speed" if env else "")
    )
    print(f"  CPU: {c['cpu']}")
    print(f"  direct kernels (few-filter convolutions): {c['simd']}")
    cache = c["autotune_cache"]
    print(
        f"  autotune: {'on' if c['autotune'] else 'off'} (fastconv.set_autotune), disk cache: "
        + (cache if cache else "none")
    )
    print(
        f"  GPU: cupy {c['cupy']}, device available: {c['gpu_available']}, float32 convolution "
        f"precision: {c['gpu_precision']} (fastconv.set_gpu_precision)"
    )
