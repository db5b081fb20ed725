"""fastconv's compiled kernels: src/<name>.pyx builds fastconv._kernels.<name> (conv: im2col +
GEMM; direct: SIMD few-filter convolution; depthwise; pool; dense; openmp: what OpenMP the build
has), and workspace.py, the per-Python-thread buffers they reuse across calls. Only
fastconv._backend calls them.
"""
