"""Who owns the cores: the thread count of fastconv's kernels, and BLAS held to one thread meanwhile.

fastconv's kernels parallelise with OpenMP and call single-threaded GEMMs from each thread. SciPy's
OpenBLAS is a pthreads build with its own pool: left alone it would start its threads inside ours
(oversubscription) or keep them spinning next to ours. So while a kernel runs, BLAS is limited to one
thread and restored afterwards. The limit is reference-counted so that concurrent calls from several
Python threads neither fight over it nor leave it changed.
"""

import contextlib
import operator
import os
import threading

from ..._kernels import openmp as _openmp

# The kernels take the count as a C int; past any real machine's cores more threads only
# oversubscribe.
MAX_THREADS = 4096

_lock = threading.Lock()


class _Local(threading.local):
    n = None  # this Python thread's count inside `limited` (a class default: no AttributeError)


_local = _Local()
_num_threads = None  # None: OpenMP's default (OMP_NUM_THREADS or the number of cores)
_blas = None  # threadpoolctl controllers of the loaded BLAS libraries, found on first use
_blas_calls = None  # (get_num_threads, set_num_threads) per controller
_blas_depth = 0
_blas_saved = []


def openmp_enabled():
    """True when the kernels were compiled with OpenMP (else they run on one thread)."""
    return _openmp.enabled()


def get_num_threads():
    """The number of threads fastconv's CPU kernels use (from the calling Python thread)."""
    local = _local.n
    if local is not None:
        return local
    if _num_threads is not None:
        return _num_threads
    return max(1, int(_openmp.max_threads()))


def set_num_threads(n):
    """Set the number of threads of fastconv's CPU kernels (process-wide); None restores the default.

    The default honours OMP_NUM_THREADS, else uses every core; n must be in [1, MAX_THREADS]
    (4096). Returns the previous value.
    """
    global _num_threads
    previous = get_num_threads()
    if n is None:
        _num_threads = None
        return previous
    if isinstance(n, bool):
        raise TypeError("n must be an int >= 1 or None, got bool")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"n must be an int >= 1 or None, got {type(n).__name__}") from None
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"n must be in [1, {MAX_THREADS}], got {n}")
    _num_threads = int(n)
    return previous


@contextlib.contextmanager
def limited(n):
    """Within the block, kernels called from this Python thread use at most `n` threads (and
    other threads are unaffected): what a Dask task uses to share the cores with its siblings."""
    previous = _local.n
    _local.n = max(1, min(int(n), get_num_threads()))
    try:
        yield
    finally:
        _local.n = previous


def _blas_controllers():
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
    return _blas


def _thread_calls():
    """(get, set) callables per BLAS library. For OpenBLAS, the C functions themselves, looked up
    once: threadpoolctl's methods look the symbol up on every call (~3 us each, on every kernel)."""
    global _blas_calls
    if _blas_calls is None:
        calls = []
        for c in _blas_controllers():
            try:
                get = c._get_symbol("openblas_get_num_threads")
                set_ = c._get_symbol("openblas_set_num_threads")
                if get is None or set_ is None:
                    raise AttributeError
            except Exception:  # another BLAS, or threadpoolctl's internals changed
                get, set_ = c.get_num_threads, c.set_num_threads
            calls.append((get, set_))
        _blas_calls = calls
    return _blas_calls


def _c_calls():
    """The addresses of the C (get, set) functions per BLAS library, for the compiled
    BlasSingleThread; None when a library has none (not OpenBLAS): _BlasSingleThread then."""
    import ctypes

    calls = _thread_calls()
    if not all(isinstance(f, ctypes._CFuncPtr) for pair in calls for f in pair):
        return None
    return [tuple(ctypes.cast(f, ctypes.c_void_p).value for f in pair) for pair in calls]


class _BlasSingleThread:
    """Context manager: BLAS on one thread while at least one kernel runs (Python calls: where
    a BLAS library is not OpenBLAS)."""

    def __enter__(self):
        global _blas_depth, _blas_saved
        with _lock:
            if _blas_depth == 0:
                calls = _thread_calls()
                _blas_saved = [get() for get, _ in calls]
                for (_, set_), n in zip(calls, _blas_saved):
                    if n != 1:
                        set_(1)
            _blas_depth += 1

    def __exit__(self, *exc):
        global _blas_depth
        with _lock:
            _blas_depth -= 1
            if _blas_depth == 0:
                for (_, set_), n in zip(_thread_calls(), _blas_saved):
                    if n != 1:
                        set_(n)
        return False


# BLAS held to one thread while at least one kernel runs: C calls where every library is
# OpenBLAS, else _BlasSingleThread.
blas_single_thread = _openmp.BlasSingleThread(_c_calls, _BlasSingleThread())


def blas_info():
    """The BLAS libraries SciPy/NumPy loaded, as threadpoolctl reports them (list of dicts)."""
    return [c.info() for c in _blas_controllers()]


def coretype_env():
    return os.environ.get("OPENBLAS_CORETYPE")
