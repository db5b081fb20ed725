"""fastconv: fast 2-D convolution with gradients for NumPy (and CuPy) arrays.

    >>> import numpy as np, fastconv
    >>> x = np.random.rand(8, 3, 32, 32).astype(np.float32)
    >>> w = np.random.rand(16, 3, 3, 3).astype(np.float32)
    >>> fastconv.conv2d(x, w, padding=1).shape
    (8, 16, 32, 32)
"""
from ._version import __version__

try:
    from ._kernels import conv  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "fastconv's compiled kernels are missing: install the package with `pip install .` "
        "(running from the source folder imports the unbuilt sources)"
    ) from exc

del conv  # only imported to check the build
from ._config import show_config
from ._backend.threads import get_num_threads, openmp_enabled, set_num_threads
from ._kernels.workspace import release_workspace
from .functional import *  # noqa: F401,F403
from .functional import __all__ as _functional_all

__all__ = _functional_all + [
    "__version__",
    "get_num_threads",
    "set_num_threads",
    "openmp_enabled",
    "show_config",
    "release_workspace",
]
