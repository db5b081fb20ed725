"""A fake ``cupy``, just enough of it for ``fastconv._backend.gpu.ops`` to run its CUDA kernels on the CPU.

For tests only (tests/test_gpu_emulated.py puts the folder holding this package first on
PYTHONPATH of a child process). What it does:

* Arrays are NumPy arrays of a subclass whose type lives in module ``cupy`` (so
  ``fastconv._compat.is_cupy_array`` takes them for CuPy arrays). Every array made here sits
  at the very end of its own memory mapping, followed by an inaccessible guard page, so a
  kernel reading or writing past the end of an array crashes (SIGSEGV) instead of reading
  garbage; ``empty`` fills floating arrays with NaN and integer arrays with -7777, so an output
  element a kernel forgets to write shows up. (Reads before the start are not caught.)
* ``RawModule`` compiles the kernel text fastconv hands it (with ``-std=`` from its options)
  as C++ with g++ against ../../cuda_emu.h, which runs each CUDA thread as a fiber on one OS
  thread; see that header for what the emulation does and does not prove. Builds are cached
  by a hash of the full text and flags in $FAKECUPY_CACHE (a temporary folder otherwise).
* ``RawKernel.__call__`` converts each argument the way CuPy does (a Python int becomes a
  64-bit integer, a float a double, NumPy scalars keep their type, arrays pass their data
  pointer) and the emulator checks each against the kernel's C++ parameter types. Passing a
  plain NumPy array (host memory) or a non-contiguous one is refused.
* ``asarray`` of a host array appends its shape to ``UPLOADS`` (a host-to-device copy).
* The device is described by ``DEVICE`` (launch limits; change it with ``configure_device``),
  and every launch is appended to ``LAUNCHES`` as (name expression, grid, block).
* Streams: ``cuda.Stream()`` (a context manager making it this thread's current stream, as in
  CuPy) and ``cuda.get_current_stream()``, each stream with a distinct ``ptr`` (0 for the
  default stream). Only their identity is modelled: launches still run at once, in order.
* Anything else (``cupy.matmul``, ``cupy.sum``, ...) is NumPy's function, its array results
  turned into the fake array type.

Environment: FAKECUPY_CACHE (build folder), FAKECUPY_CXX (compiler, default g++),
FAKECUPY_CXXFLAGS (extra flags, e.g. -fsanitize=undefined), FAKECUPY_JOBS (parallel builds in
``precompile``, default 2).
"""

import ctypes
import hashlib
import mmap
import os
import re
import shlex
import subprocess
import tempfile
import threading
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__version__ = "0.0.0+fastconv-emulator"
IS_FASTCONV_EMULATOR = True

EMU_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("FAKECUPY_CACHE") or tempfile.mkdtemp(prefix="fakecupy-")
os.makedirs(CACHE, exist_ok=True)
CXX = os.environ.get("FAKECUPY_CXX", "g++")
CXXFLAGS = shlex.split(os.environ.get("FAKECUPY_CXXFLAGS", ""))

LAUNCHES = []  # (name expression, grid, block) per launch

DEVICE = {}


def configure_device(
    max_threads=1024,
    shared_mem=48 * 1024,
    sm_count=2,
    max_grid=(2**31 - 1, 65535, 65535),
    cc_major=9,
):
    """Set the limits the fake device reports (fastconv._backend.gpu.ops caches them: clear
    ``fastconv._backend.gpu._device_infos`` after changing them)."""
    DEVICE.update(
        max_threads=int(max_threads),
        shared_mem=int(shared_mem),
        sm_count=int(sm_count),
        max_grid=tuple(int(g) for g in max_grid),
        cc_major=int(cc_major),
    )


configure_device()

# ----------------------------------------------------------------------------- arrays

_PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


class _Device:
    id = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


SYNCS = []  # (what, array shape) per read-back of device values to the host
OPS = []  # names of the array operations run outside RawKernel (CuPy's own kernels on a GPU)
UPLOADS = []  # shapes of the host arrays copied to the device by asarray


class ndarray(np.ndarray):
    """A NumPy array standing for device memory.

    Reading values back to the host (``get``, ``item``, ``float(a)``, ``int(a)``, ``bool(a)``,
    ``tolist``) appends to ``SYNCS``: on a GPU each one waits for the stream to drain. Ufuncs,
    reductions and ``fill`` append their name to ``OPS`` (each is a CuPy kernel launch there).
    """

    @property
    def device(self):
        return _Device()

    @property
    def data(self):
        """cupy.ndarray.data: a memory pointer whose ``ptr`` is the array's address (here the
        host address the emulated kernels dereference). Kept per array object: NumPy's
        ``__array_interface__`` costs microseconds, CuPy's pointer a fraction of one."""
        pointer = self.__dict__.get("_fake_data")
        if pointer is None:
            pointer = types.SimpleNamespace(ptr=self.__array_interface__["data"][0])
            self.__dict__["_fake_data"] = pointer
        return pointer

    def get(self):
        SYNCS.append(("get", self.shape))
        return np.array(self, copy=True).view(np.ndarray)

    def item(self, *args):
        SYNCS.append(("item", self.shape))
        return np.ndarray.item(self, *args)

    def tolist(self):
        SYNCS.append(("tolist", self.shape))
        return np.ndarray.tolist(self)

    def __float__(self):
        SYNCS.append(("float", self.shape))
        return float(np.ndarray.item(self))

    def __int__(self):
        SYNCS.append(("int", self.shape))
        return int(np.ndarray.item(self))

    def __bool__(self):
        SYNCS.append(("bool", self.shape))
        return bool(np.ndarray.item(self))

    def fill(self, value):
        OPS.append("fill")
        np.ndarray.fill(self, value)

    def __setitem__(self, key, value):
        OPS.append("setitem")
        np.ndarray.__setitem__(self, key, value)

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        OPS.append(ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}")
        args = [_host(a) for a in inputs]
        if out is not None:
            kwargs["out"] = tuple(_host(o) for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        if isinstance(result, tuple):
            return tuple(_device(r) for r in result)
        return _device(result)


def _host(a):
    return a.view(np.ndarray) if isinstance(a, ndarray) else a


def _device(r):
    """A result as a device array; a NumPy scalar becomes a 0-d one, as CuPy returns."""
    if isinstance(r, np.generic):
        r = np.asarray(r)
    return r.view(ndarray) if type(r) is np.ndarray else r


ndarray.__module__ = "cupy"


def _guarded(shape, dtype):
    """A C-contiguous array ending exactly where an inaccessible page begins."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = -(-max(nbytes, 1) // _PAGE) * _PAGE
    buf = mmap.mmap(-1, data + _PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    if _libc.mprotect(base + data, _PAGE, 0) != 0:  # PROT_NONE
        raise OSError(ctypes.get_errno(), "mprotect failed")
    flat = np.frombuffer(buf, dtype=dtype, count=nbytes // dtype.itemsize, offset=data - nbytes)
    return flat.reshape(shape).view(ndarray)


def empty(shape, dtype=np.float64):
    a = _guarded(shape, dtype)
    np.ndarray.fill(a, np.nan if a.dtype.kind in "fc" else -7777)  # not an OPS entry: no kernel
    return a


def zeros(shape, dtype=np.float64):
    a = _guarded(shape, dtype)
    a.fill(0)
    return a


def asarray(a, dtype=None):
    """A device copy; a host array's copy is a host-to-device upload, recorded in UPLOADS."""
    if not isinstance(a, ndarray):
        UPLOADS.append(np.shape(a))
    host = np.asarray(a, dtype=dtype)
    out = _guarded(host.shape, host.dtype)
    np.ndarray.__setitem__(out, Ellipsis, host)  # a copy, not a kernel: not an OPS entry
    return out


def asnumpy(a):
    return np.array(a, copy=True).view(np.ndarray)


def _wrap(r):
    return r.view(ndarray) if type(r) is np.ndarray else r


def matmul(a, b, out=None):
    OPS.append("matmul")
    r = np.matmul(_host(a), _host(b), out=None if out is None else _host(out))
    return out if out is not None else _device(r)


def sum(a, axis=None, out=None):  # cupy.sum
    OPS.append("sum")
    r = np.sum(_host(a), axis=axis, out=None if out is None else _host(out))
    return out if out is not None else _device(r)


float32, float64, int32, int64 = np.float32, np.float64, np.int32, np.int64


def __getattr__(name):
    f = getattr(np, name)
    if callable(f) and not isinstance(f, type):
        return lambda *a, **k: _wrap(f(*a, **k))
    return f


# ----------------------------------------------------------------------------- device


class _Runtime:
    cudaDevAttrMaxThreadsPerBlock = 1
    cudaDevAttrMaxGridDimX = 5
    cudaDevAttrMaxGridDimY = 6
    cudaDevAttrMaxGridDimZ = 7
    cudaDevAttrMaxSharedMemoryPerBlock = 8
    cudaDevAttrMultiProcessorCount = 16
    cudaDevAttrComputeCapabilityMajor = 75

    def getDeviceCount(self):
        return 1

    def getDevice(self):
        return 0

    def deviceGetAttribute(self, attr, device):
        assert device == 0
        return {
            1: DEVICE["max_threads"],
            5: DEVICE["max_grid"][0],
            6: DEVICE["max_grid"][1],
            7: DEVICE["max_grid"][2],
            8: DEVICE["shared_mem"],
            16: DEVICE["sm_count"],
            75: DEVICE["cc_major"],
        }[attr]


_current = threading.local()  # CuPy's current stream is per thread too


class Stream:
    """A CUDA stream's identity: a distinct ``ptr``; ``with stream:`` makes it current."""

    _count = 0

    def __init__(self, null=False, non_blocking=False, ptds=False):
        if null:
            self.ptr = 0
        else:
            Stream._count += 1
            self.ptr = 0x5000 + Stream._count  # distinct handles, never 0

    def __enter__(self):
        _current.__dict__.setdefault("stack", []).append(self)
        return self

    def __exit__(self, *exc):
        _current.stack.pop()
        return False

    def synchronize(self):
        pass


Stream.null = Stream(null=True)


def _get_current_stream():
    stack = _current.__dict__.get("stack")
    return stack[-1] if stack else Stream.null


cuda = types.SimpleNamespace(
    runtime=_Runtime(),
    Device=lambda *a: _Device(),
    Stream=Stream,
    get_current_stream=_get_current_stream,
)

# ----------------------------------------------------------------------------- kernels


class CompileException(Exception):
    def get_message(self):
        return self.args[0]


class RawModule:
    """Compiles lazily (on the first get_function), like CuPy."""

    def __init__(self, code=None, options=(), name_expressions=None):
        self.code = code
        self.options = tuple(options)
        self.exprs = list(name_expressions or ())
        self._lib = None

    def _source_and_flags(self):
        std = [o for o in self.options if re.fullmatch(r"-std=c\+\+\d\d", o)] or ["-std=c++17"]
        lines = ['#include "cuda_emu.h"', self.code, ""]
        for i, expr in enumerate(self.exprs):
            lines.append(
                f'extern "C" int launch_{i}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, '
                f"unsigned by, unsigned bz, void** args, int nargs, const int* codes) {{\n"
                f'    return ::emu::launch("{expr}", &{expr}, gx, gy, gz, bx, by, bz, args, '
                f"nargs, codes);\n}}"
            )
        flags = [
            std[-1],
            "-O1",
            "-fPIC",
            "-shared",
            "-Wno-unknown-pragmas",
            f"-I{EMU_DIR}",
            *CXXFLAGS,
        ]
        return "\n".join(lines), flags

    def compile(self):
        """Build (or find in the cache) the shared library; returns its path."""
        src, flags = self._source_and_flags()
        with open(os.path.join(EMU_DIR, "cuda_emu.h"), "rb") as f:
            header = f.read()
        key = hashlib.sha256(src.encode() + header + " ".join([CXX, *flags]).encode())
        so = os.path.join(CACHE, key.hexdigest()[:24] + ".so")
        if os.path.exists(so):
            return so
        # The source stays next to the library: compiler and UBSan messages point into it.
        cpp = so[:-3] + ".cpp"
        fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=CACHE)
        with os.fdopen(fd, "w") as f:
            f.write(src)
        os.replace(tmp, cpp)  # atomic: concurrent builds of one text write the same bytes
        fd, tmp_so = tempfile.mkstemp(suffix=".so.tmp", dir=CACHE)
        os.close(fd)
        try:
            r = subprocess.run(
                [CXX, *flags, cpp, "-o", tmp_so], capture_output=True, text=True, check=False
            )
            if r.returncode != 0:
                raise CompileException(f"{CXX} {' '.join(flags)} {cpp} failed:\n{r.stderr}")
            os.replace(tmp_so, so)
        finally:
            if os.path.exists(tmp_so):
                os.remove(tmp_so)
        return so

    def get_function(self, expr):
        if self._lib is None:
            self._lib = ctypes.CDLL(self.compile())
        return RawKernel(self._lib, self.exprs.index(expr), expr)


def precompile(modules, jobs=None):
    """Build several RawModules at once (g++ runs outside the GIL), at most ``jobs`` at a time."""
    jobs = jobs or int(os.environ.get("FAKECUPY_JOBS", "2"))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(RawModule.compile, modules))


def _code(dtype):
    dtype = np.dtype(dtype)
    kind = {"i": 10, "u": 10, "b": 10, "f": 20}[dtype.kind]
    return kind + dtype.itemsize


class RawKernel:
    def __init__(self, lib, index, name):
        self._fn = getattr(lib, f"launch_{index}")
        self._fn.restype = ctypes.c_int
        self.name = name

    def __call__(self, grid, block, args, shared_mem=0):
        if not (isinstance(grid, tuple) and isinstance(block, tuple) and isinstance(args, tuple)):
            raise TypeError(f"{self.name}: grid, block and args must be tuples")
        if shared_mem:
            raise ValueError(f"{self.name}: the emulator has no dynamic shared memory")
        grid = tuple(grid) + (1,) * (3 - len(grid))
        block = tuple(block) + (1,) * (3 - len(block))
        for g in grid + block:
            if not isinstance(g, (int, np.integer)) or isinstance(g, bool) or g < 1:
                raise ValueError(f"{self.name}: bad launch configuration {grid} x {block}")
        keep, ptrs, codes = [], [], []
        for a in args:
            if isinstance(a, np.ndarray):
                if type(a) is not ndarray:
                    raise TypeError(f"{self.name}: a host (NumPy) array passed to a kernel")
                if not a.flags.c_contiguous:
                    raise ValueError(f"{self.name}: a non-contiguous array passed to a kernel")
                v, code = ctypes.c_void_p(a.ctypes.data), 100 + _code(a.dtype)
            elif isinstance(a, np.generic):
                v = np.ctypeslib.as_ctypes_type(a.dtype)(a.item())
                code = _code(a.dtype)
            elif isinstance(a, bool):
                raise TypeError(f"{self.name}: a Python bool argument")
            elif isinstance(a, int):
                v, code = ctypes.c_int64(a), 18  # what CuPy does with a Python int
            elif isinstance(a, float):
                v, code = ctypes.c_double(a), 28
            else:
                raise TypeError(f"{self.name}: an argument of type {type(a).__name__}")
            keep.append(v)
            ptrs.append(ctypes.cast(ctypes.pointer(v), ctypes.c_void_p))
            codes.append(code)
        n = len(args)
        parr = (ctypes.c_void_p * max(n, 1))(*ptrs)
        carr = (ctypes.c_int * max(n, 1))(*codes)
        LAUNCHES.append((self.name, grid, block))
        rc = self._fn(*[ctypes.c_uint(int(g)) for g in grid + block], parr, n, carr)
        if rc != 0:
            raise RuntimeError(
                f"emulated launch of {self.name} failed (code {rc}); see the EMU: line on stderr"
            )
