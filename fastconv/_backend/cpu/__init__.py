"""The CPU backend: ops.py (the backend interface over the compiled kernels of fastconv._kernels),
planner.py (which algorithm computes each pass), fft.py (FFT convolution), threads.py (the one
owner of the cores: fastconv's thread count, BLAS held to one thread while OpenMP works)."""
