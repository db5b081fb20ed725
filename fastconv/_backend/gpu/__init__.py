"""The GPU backend: ops.py (the backend interface over CuPy RawModule kernels), conv.py and
plans.py (the convolutions and their launch plans), kernels.py (sources, compilation, launches),
optim.py (multi-tensor optimiser steps), precision.py (fp32 / tf32 / 3xtf32); the CUDA C++
sources in cuda/. Importing this package imports no CuPy."""
