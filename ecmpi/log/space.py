"""Disk space for a log: a reserve released when the disk is full, and free-space checks.

A failed HDF5 flush can leave the file's metadata half written, which makes the whole
file unreadable. So the writer keeps the disk from filling at the moments that matter:

- at creation it reserves space in a sidecar file ``<log>.reserve`` (up to
  :data:`RESERVE_BYTES`, at most a quarter of the free space; best effort);
- before each checkpoint it checks that the space the checkpoint adds to the file
  fits (:func:`ensure_space`), raising ENOSPC before touching the file;
- when a write fails with ENOSPC anyway, or when the run ends, it deletes the reserve,
  so that closing the file (the pending metadata) and writing the final status fit.

``statvfs`` does not see quotas: on a file system with a quota the reserve (whose
blocks count against the quota) is what keeps the final write possible.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = [
    "MARGIN_BYTES",
    "RESERVE_BYTES",
    "SpaceReserve",
    "ensure_space",
    "free_bytes",
    "is_no_space",
    "no_space_error",
    "reserve_path",
]

#: the most space reserved beside a log for its final write
RESERVE_BYTES = 1 << 20
#: HDF5 metadata allowed for on top of the bytes of a write
MARGIN_BYTES = 1 << 14
_MIN_RESERVE = 1 << 14
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def reserve_path(log: str | os.PathLike) -> Path:
    """The reserve file of the log at ``log``: ``<log>.reserve`` beside it."""
    p = Path(log)
    return p.with_name(p.name + ".reserve")


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes an unprivileged process may still write on the file system of ``path``."""
    p = Path(path)
    st = os.statvfs(p if p.is_dir() else p.parent if str(p.parent) else Path("."))
    return st.f_bavail * st.f_frsize


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, or h5py's RuntimeError of a failed flush) is ENOSPC/EDQUOT."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            return True
        text = str(exc)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        if "errno = 28" in text or "errno = 122" in text:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def no_space_error(log: str | os.PathLike, what: str) -> OSError:
    """The one error a run reports when the disk is full (errno ENOSPC)."""
    return OSError(
        errno.ENOSPC,
        f"No space left on device while {what} the log {log}; the rows and any checkpoint "
        "written before are kept (free some space, then continue with --resume)",
    )


def ensure_space(log: str | os.PathLike, nbytes: int) -> None:
    """Raise :func:`no_space_error` unless ``nbytes`` more (plus :data:`MARGIN_BYTES`) fit.

    Raises:
        OSError: ENOSPC.
    """
    if free_bytes(log) < int(nbytes) + MARGIN_BYTES:
        raise no_space_error(log, "writing a checkpoint to")


class SpaceReserve:
    """Space held in ``<log>.reserve`` until :meth:`release` (see the module docstring)."""

    def __init__(self, log: str | os.PathLike, nbytes: int = RESERVE_BYTES):
        self.path = reserve_path(log)
        self.nbytes = 0
        try:
            want = min(int(nbytes), free_bytes(log) // 4)
        except OSError:
            return
        while want >= _MIN_RESERVE:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except OSError:
                return
            try:
                os.posix_fallocate(fd, 0, want)
                self.nbytes = want
                return
            except OSError:
                os.ftruncate(fd, 0)
                want //= 2
            finally:
                os.close(fd)
        self.release()

    def release(self) -> None:
        """Give the space back (delete the reserve file); idempotent."""
        self.nbytes = 0
        try:
            self.path.unlink()
        except OSError:
            pass
