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

KERNELS = ["conv", "direct", "depthwise", "pool", "dense", "winograd"]  # src/<name>.pyx -> fastconv._cpu_<name>


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
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args) + cflags
            ext.extra_link_args = list(ext.extra_link_args) + lflags
        super().build_extensions()


extensions = [
    Extension(
        f"fastconv._cpu_{name}",
        [f"src/{name}.pyx"],
        include_dirs=[numpy.get_include(), "src"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name in KERNELS
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["src"],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
