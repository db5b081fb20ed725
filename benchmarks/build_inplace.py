#!/usr/bin/env python3
"""Build fastconv's compiled kernels in place (fastconv/_kernels/) without the project metadata.

    python3 benchmarks/build_inplace.py [-j N] [NAME ...]

`python3 setup.py build_ext --inplace` and pip read pyproject.toml's [project] table, whose PEP 639
fields (an SPDX `license` string, `license-files`) need setuptools >= 77: an older setuptools
stops on them before building anything. This runs setuptools' build_ext on a distribution that
holds only setup.py's extensions and its BuildExt (OpenMP probe, release flags), so any setuptools
with build_ext builds the same modules (benchmarks/gpu_verify.sh uses it on machines whose
setuptools nobody chose). Needs Cython, NumPy, SciPy and a C compiler. NAME: only these kernels
(default: setup.py's KERNELS, all of them); -j: Cython processes and parallel compiles (default:
the CPUs).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_setup_py():
    """setup.py as a module: its definitions only (it calls setup() only when run as __main__)."""
    spec = importlib.util.spec_from_file_location("fastconv_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    setup_py = load_setup_py()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", metavar="NAME", help=f"of {', '.join(setup_py.KERNELS)}")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    unknown = sorted(set(args.names) - set(setup_py.KERNELS))
    if unknown:
        p.error(f"unknown kernels {unknown} (choose from {', '.join(setup_py.KERNELS)})")
    import setuptools
    from setuptools.dist import Distribution

    start = time.perf_counter()
    os.chdir(ROOT)  # setup.py's paths (src/...) are relative to the repository root
    jobs = max(1, args.jobs)
    extensions = setup_py.ext_modules(args.names or setup_py.KERNELS, nthreads=jobs)
    took = time.perf_counter() - start
    print(f"cythonized {len(extensions)} modules in {took:.1f} s", flush=True)
    # Not setup(): that would read pyproject.toml. A Distribution made from these attributes
    # reads no configuration file.
    dist = Distribution({"ext_modules": extensions, "cmdclass": {"build_ext": setup_py.BuildExt}})
    cmd = dist.get_command_obj("build_ext")
    cmd.inplace = True
    cmd.parallel = jobs
    dist.run_command("build_ext")
    print(
        f"built {len(extensions)} modules in place in {time.perf_counter() - start:.1f} s "
        f"(setuptools {setuptools.__version__}, {jobs} jobs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
