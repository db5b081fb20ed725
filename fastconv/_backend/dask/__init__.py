"""The Dask backend (ops.py: the array interface over Dask arrays, lazily; conv.py, pool.py and
dense.py: how each kind of op is cut into blocks; _common.py: the block backends, threads per
task, chunk geometry)."""
