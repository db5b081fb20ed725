"""The IDX file format MNIST is stored in: a strict, streaming reader.

The header states the payload's size, so a file (raw or gzip-compressed) is read up to that size
plus one byte and no further: a gzip bomb costs at most one read chunk past what it declares.
"""

import gzip
import math
import os
import zlib
from typing import Union

import numpy as np


class DatasetError(ValueError):
    """A data file is malformed (bad header, wrong size, corrupt gzip, unexpected contents).

    Attributes
    ----------
    path : str
        The offending file.
    """

    def __init__(self, path, message):
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: {message}")


_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
# Payload bytes read per step: never more than the header promises plus this, so a gzip bomb
# (1 MiB expanding to 1 GiB) is stopped as soon as it passes the size its header declares.
_CHUNK = 1 << 22


def _read_upto(stream, n):
    """Up to `n` bytes from `stream`, in chunks: a header claiming terabytes costs nothing
    (``read(n)`` would allocate n bytes first)."""
    parts, got = [], 0
    while got < n:
        part = stream.read(min(_CHUNK, n - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_idx(path: Union[str, "os.PathLike[str]"]) -> np.ndarray:
    """Read an IDX file into a native-endian NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        An IDX file, raw or gzip-compressed (detected from the magic bytes
        ``1f 8b``, whatever the file name).

    Returns
    -------
    ndarray, shape (d0, d1, ...) as stored in the header
        dtype from the header's type code: 0x08 uint8, 0x09 int8, 0x0B int16,
        0x0C int32, 0x0D float32, 0x0E float64 (converted from big-endian to the
        native byte order). A fresh, writable array.

    Raises
    ------
    DatasetError (a ValueError)
        The message names the file and the problem: not an IDX file (magic number
        not ``00 00 <type> <ndim>``), unknown type code, ndim 0, header cut short,
        a payload shorter ("truncated") or longer ("trailing bytes") than
        ``prod(dims) * itemsize``, or a corrupt gzip stream.
    FileNotFoundError
        ``path`` does not exist.
    """
    with open(path, "rb") as raw:
        gz = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not gz:
            return _parse_idx(raw, path, "file")
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _parse_idx(stream, path, "decompressed data")
        except (EOFError, zlib.error, OSError) as e:  # gzip.BadGzipFile is an OSError
            raise DatasetError(path, f"corrupt gzip stream ({type(e).__name__}: {e})") from e


def _parse_idx(stream, path, what):
    """Read the header, then exactly the payload it declares (plus one byte, to detect trailing
    data) from `stream`; `what` names the stream in messages."""
    data = _read_upto(stream, 4)
    if len(data) < 4:
        raise DatasetError(path, f"too short for an IDX header: {what} has {len(data)} bytes")
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(
            path,
            f"not an IDX file: magic number starts with bytes {data[0]:#04x} {data[1]:#04x}, "
            "expected 0x00 0x00",
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"{c:#04x} ({d.name})" for c, d in _IDX_DTYPES.items())
        raise DatasetError(path, f"unknown IDX type code {code:#04x} (known: {known})")
    if ndim < 1:
        raise DatasetError(path, "IDX header says ndim 0 (at least 1 dimension expected)")
    header = 4 + 4 * ndim
    data += _read_upto(stream, header - 4)
    if len(data) < header:
        raise DatasetError(
            path,
            f"truncated header: {ndim} dimensions need a {header}-byte header, "
            f"{what} has {len(data)} bytes",
        )
    dims = tuple(int(x) for x in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    if any(n < 0 for n in dims):
        raise DatasetError(path, f"negative dimension in IDX header: {dims}")
    dtype = _IDX_DTYPES[code]
    count = math.prod(dims)
    expected = header + count * dtype.itemsize
    payload = _read_upto(stream, expected - header + 1)
    size = header + len(payload)
    if size != expected:
        problem = "truncated" if size < expected else "trailing bytes"
        has = f"has {size}" if size < expected else f"has at least {size}"
        raise DatasetError(
            path,
            f"{problem}: expected {expected} bytes ({header}-byte header + {count} x "
            f"{dtype.itemsize}-byte {dtype.name} for shape {dims}), {what} {has}",
        )
    arr = np.frombuffer(payload, dtype=dtype, count=count).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))  # copy: writable, native byte order
