"""fastconv: fast 2-D convolution with gradients for NumPy (and CuPy) arrays.

>>> import numpy as np, fastconv
>>> x = np.random.rand(8, 3, 32, 32).astype(np.float32)
>>> w = np.random.rand(16, 3, 3, 3).astype(np.float32)
>>> fastconv.conv2d(x, w, padding=1).shape
(8, 16, 32, 32)
"""

from ._cli_start import guard_command_start

# The fastconv-lenet command imports this package before its own code runs: in its process a
# Ctrl-C during the ~0.3 s of imports below exits with one line and status 130 (_cli_start).
guard_command_start()
del guard_command_start

from ._version import __version__  # noqa: E402


def _missing_kernels_message(exc):
    """Why the compiled kernels cannot be imported, and what to do about it.

    The usual cause is not a broken install: Python puts the current directory first on
    sys.path, so `python` started in a source checkout imports its unbuilt fastconv/ folder and
    never sees the installed package.
    """
    import os

    package = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.dirname(package)
    in_checkout = os.path.isfile(os.path.join(checkout, "setup.py")) and os.path.isdir(
        os.path.join(checkout, "src")
    )
    from importlib.machinery import EXTENSION_SUFFIXES

    if any(
        os.path.isfile(os.path.join(package, "_kernels", "conv" + suffix))
        for suffix in EXTENSION_SUFFIXES
    ):
        return (
            f"fastconv's compiled kernels in {package} cannot be loaded ({exc}): rebuild "
            f"them with `pip install .` (or `pip install -e .` in a source checkout)"
        )
    if not in_checkout:
        return (
            f"fastconv's compiled kernels (fastconv._kernels.conv) are missing from {package}: "
            f"reinstall the package with `pip install fastconv` (or `pip install .` in a "
            f"source checkout; it needs a C compiler)"
        )
    try:
        from importlib.metadata import PackageNotFoundError, version

        installed = f"fastconv {version('fastconv')} is installed, but "
    except (ImportError, PackageNotFoundError):
        installed = ""
    return (
        f"{installed}Python imported fastconv from the source checkout {checkout}, "
        f"whose fastconv/ folder has no compiled kernels (Python looks in the current "
        f"directory first). Run Python from another directory (e.g. `cd ..`), or build the "
        f"checkout in place with `pip install -e .`"
    )


try:
    from ._kernels import conv  # noqa: F401
except ImportError as exc:
    raise ImportError(_missing_kernels_message(exc)) from exc

del conv  # only imported to check the build
# The rest imports the kernels: only after the check above can say what is wrong.
from ._backend.cpu.autotune import autotune, get_autotune, set_autotune  # noqa: E402
from ._backend.cpu.threads import get_num_threads, openmp_enabled, set_num_threads  # noqa: E402
from ._backend.gpu.precision import get_gpu_precision, gpu_precision, set_gpu_precision  # noqa: E402
from ._config import show_config  # noqa: E402
from ._kernels.workspace import release_workspace  # noqa: E402
from .functional import *  # noqa: E402,F401,F403
from .functional import __all__ as _functional_all  # noqa: E402

__all__ = _functional_all + [
    "__version__",
    "get_num_threads",
    "set_num_threads",
    "openmp_enabled",
    "show_config",
    "release_workspace",
    "set_gpu_precision",
    "get_gpu_precision",
    "gpu_precision",
    "set_autotune",
    "get_autotune",
    "autotune",
]
