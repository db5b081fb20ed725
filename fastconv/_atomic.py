"""Atomic file writes: a reader sees the old file or the complete new one, never a part.

The data goes to a temporary file in the target's directory (same file system, so
the final ``os.replace`` is an atomic rename), is flushed and ``fsync``-ed, and only
then replaces the target. On any exception (KeyboardInterrupt included) the
temporary file is deleted and the target is left untouched. A writer killed outright
(SIGKILL, power loss) cannot delete its temporary file: its name carries the host and process
id, and the next write to the same target removes those whose process is gone.
"""

import contextlib
import os
import socket
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


def _owner_tag():
    """``host-pid`` of this process, as written into its temporary files' names."""
    host = socket.gethostname().replace(".", "_").replace("-", "_") or "localhost"
    return f"{host}-{os.getpid()}"


def _process_gone(pid):
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def _remove_stale(directory, name):
    """Delete ``.<name>.<host>-<pid>.*.tmp`` left in `directory` by dead writers on this host.

    Only on POSIX (elsewhere ``os.kill(pid, 0)`` is no existence check); files of other hosts
    (a shared file system) and of live processes are left alone."""
    if os.name != "posix":
        return
    prefix, host = f".{name}.", _owner_tag().rsplit("-", 1)[0]
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        owner = entry[len(prefix) :].split(".", 1)[0]
        owner_host, _, pid = owner.rpartition("-")
        if owner_host != host or not pid.isdigit() or int(pid) == os.getpid():
            continue
        if _process_gone(int(pid)):
            try:
                os.unlink(os.path.join(directory, entry))
            except OSError:
                pass


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
    The temporary file is ``.<name>.<host>-<pid>.<random>.tmp`` beside the target; ones left by
    killed writers of the same target are removed first. The new file
    keeps the permission bits of the file it replaces, or gets the usual
    ``0o666 & ~umask`` when the target is new (``mkstemp`` alone would give 0o600).
    """
    if mode not in _WRITE_MODES:
        raise ValueError(f"atomic_write: mode must be one of {_WRITE_MODES}, got {mode!r}")
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    _remove_stale(directory, name)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.{_owner_tag()}.", suffix=".tmp", dir=directory)
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
