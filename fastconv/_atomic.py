"""Atomic file writes: a reader sees the old file or the complete new one, never a part.

The data goes to a temporary file in the target's directory (same file system, so
the final ``os.replace`` is an atomic rename), is flushed and ``fsync``-ed, and only
then replaces the target. On any exception (KeyboardInterrupt included) the
temporary file is deleted and the target is left untouched.
"""

import contextlib
import os
import tempfile

import numpy as np

__all__ = ["atomic_write", "save_npz_atomic"]

_WRITE_MODES = ("wb", "w", "wt", "w+b", "wb+", "w+", "w+t")


def _umask():
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no way to read it but to set it; restored at once
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path, mode="wb", **open_kwargs):
    """Open a temporary file that atomically replaces ``path`` when the block succeeds.

    Parameters
    ----------
    path : str or os.PathLike
        The target, used exactly as given (no suffix is added).
    mode : str, default ``"wb"``
        A write mode: ``"wb"``/``"w+b"`` (binary) or ``"w"``/``"wt"``/``"w+"`` (text).
    **open_kwargs
        Passed to ``open`` (e.g. ``encoding="utf-8"`` for text modes).

    Yields
    ------
    file object
        Write to it inside the ``with`` block. On normal exit it is flushed,
        ``fsync``-ed, closed and renamed onto ``path`` (``os.replace``). On an
        exception the temporary file is removed, ``path`` is untouched and the
        exception propagates.

    Notes
    -----
    The temporary file is ``.<name>.<random>.tmp`` beside the target. The new file
    keeps the permission bits of the file it replaces, or gets the usual
    ``0o666 & ~umask`` when the target is new (``mkstemp`` alone would give 0o600).
    """
    if mode not in _WRITE_MODES:
        raise ValueError(f"atomic_write: mode must be one of {_WRITE_MODES}, got {mode!r}")
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        try:
            perm = os.stat(path).st_mode & 0o7777
        except OSError:
            perm = 0o666 & ~_umask()
        try:
            os.chmod(tmp, perm)
        except OSError:  # e.g. file systems without permission bits
            pass
        with os.fdopen(fd, mode, **open_kwargs) as f:
            fd = None  # owned by f now
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    # Make the rename itself durable (POSIX; directories cannot be opened on Windows).
    if hasattr(os, "O_DIRECTORY"):
        try:
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)


def save_npz_atomic(path, /, **arrays):
    """``np.savez`` to ``path`` atomically (uncompressed).

    Parameters
    ----------
    path : str or os.PathLike
        Used exactly as given: unlike ``np.savez(str_path, ...)``, no ``".npz"`` is
        appended when it is missing (the archive is written through a file object).
    **arrays : array_like
        Saved under their keyword names; read back with ``np.load(path)[name]``.
        Scalars and strings are stored as 0-d arrays (no pickling needed).
    """
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)
