"""Build fastconv's compiled kernels: extension list, OpenMP probe, per-compiler flags."""

import os
import shutil
import sys
import tempfile
import textwrap
import warnings

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNELS = [
    "conv",
    "direct",
    "depthwise",
    "pool",
    "dense",
    "openmp",
    "winograd",
    "optim",
]  # src/<name>.pyx -> fastconv._kernels.<name>


def _openmp_flags(compiler):
    """Compile and link a tiny OpenMP program; return (compile, link) flags or None."""
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"]), (["-Xpreprocessor", "-fopenmp"], ["-lomp"])]
    source = textwrap.dedent(
        """
        #include <omp.h>
        int main(void) {
            int n = 0;
            #pragma omp parallel reduction(+:n)
            n += 1;
            return n == omp_get_max_threads() ? 0 : 1;
        }
        """
    )
    tmp = tempfile.mkdtemp()
    try:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(source)
        for cflags, lflags in candidates:
            try:
                objs = compiler.compile([path], output_dir=tmp, extra_postargs=cflags)
                compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=lflags)
                return cflags, lflags
            except Exception:
                continue
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _release_flags(compiler):
    """(compile, link) flags that leave the debug info out of the extension modules.

    Python's own CFLAGS usually carry -g: with it the five modules ship ~6x larger (_kernels.conv
    1.85 MB instead of 0.32 MB). -g0 comes after them and wins; the link strips the symbol
    table as well (the module's entry point PyInit_* is in the dynamic symbol table, which
    stripping keeps). FASTCONV_DEBUG=1 keeps the debug info (for gdb, perf annotate).
    """
    if os.environ.get("FASTCONV_DEBUG", "") not in ("", "0") or compiler.compiler_type == "msvc":
        return [], []  # MSVC writes debug info to a separate .pdb only when asked (/Zi)
    if sys.platform == "darwin":
        return ["-g0"], ["-Wl,-S,-x"]  # Apple's ld: -s is obsolete; -S -x drop debug, locals
    return ["-g0"], ["-s"]


class BuildExt(build_ext):
    def build_extensions(self):
        flags = _openmp_flags(self.compiler)
        if flags is None:
            message = (
                "fastconv: no working OpenMP found; building the kernels serial. "
                "fastconv.openmp_enabled() will return False."
            )
            if os.environ.get("FASTCONV_REQUIRE_OPENMP", "") not in ("", "0"):
                sys.exit("error: FASTCONV_REQUIRE_OPENMP is set but " + message)
            warnings.warn(message)
            cflags, lflags = [], []
        else:
            cflags, lflags = flags
        if self.compiler.compiler_type == "msvc":
            cflags = cflags + ["/O2"]
        else:
            cflags = cflags + ["-O3", "-fno-math-errno", "-Wno-unused-function"]
        release_cflags, release_lflags = _release_flags(self.compiler)
        cflags, lflags = cflags + release_cflags, lflags + release_lflags
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args) + cflags
            ext.extra_link_args = list(ext.extra_link_args) + lflags
        super().build_extensions()


def ext_modules(names=KERNELS, nthreads=0):
    """The kernels as cythonized Extensions (src/<name>.pyx -> fastconv._kernels.<name>);
    `nthreads` > 1 runs Cython in that many processes."""
    extensions = [
        Extension(
            f"fastconv._kernels.{name}",
            [f"src/{name}.pyx"],
            include_dirs=[numpy.get_include(), "src"],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for name in names
    ]
    return cythonize(
        extensions,
        include_path=["src"],
        nthreads=nthreads,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
        },
    )


# setup() only when run: pip and `python -m build` run this file as __main__ (setuptools'
# build_meta does), and benchmarks/build_inplace.py imports the two definitions above to build
# the kernels without the project metadata (pyproject's PEP 639 fields need setuptools >= 77).
if __name__ == "__main__":
    setup(ext_modules=ext_modules(), cmdclass={"build_ext": BuildExt})
