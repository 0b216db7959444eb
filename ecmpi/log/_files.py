"""Opening a log file: HDF5's file locks waited out, SWMR reads, refreshed datasets.

HDF5 locks a file while it is open (``flock``: shared for a reader, exclusive for a
writer). A writer in SWMR mode lets readers in; but the writer's final reopen (to set
``status``) and :func:`ecmpi.log.mark_killed` take the exclusive lock briefly, and a
reader polling a log holds its shared lock for milliseconds at a time. Each side
retries instead of failing at once.

A damaged file (cut short, or its tail overwritten) is reported as
:class:`~ecmpi.errors.SchemaError` at once instead of hanging: the superblock's
end-of-file address is checked against the file's size first (:func:`check_intact`),
and a SWMR read retries a metadata checksum failure at most
:data:`METADATA_READ_ATTEMPTS` times (HDF5's default, 100 with growing sleeps, takes
minutes on a damaged file).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py

from .schema import SchemaError

__all__ = [
    "LOCK_WAIT_S",
    "METADATA_READ_ATTEMPTS",
    "TRUNCATION_WAIT_S",
    "UPDATE_LOCK_WAIT_S",
    "check_intact",
    "damaged_as_schema_error",
    "open_for_update",
    "open_read",
    "refresh",
    "waiting_out_locks",
]

#: how long a reader waits for a writer's brief exclusive lock (the writer reopening the
#: file to set the final status, or the log watcher marking it) before giving up
LOCK_WAIT_S = 2.0
#: how long reopening a log to update it (the writer setting the final status,
#: :func:`ecmpi.log.mark_killed`) waits for readers' locks (a reader polling a log holds
#: its shared lock for milliseconds at a time)
UPDATE_LOCK_WAIT_S = 30.0
#: how often a SWMR reader reads a piece of metadata whose checksum fails before giving up
#: (a live writer's half-flushed metadata passes on a retry; a damaged file never does)
METADATA_READ_ATTEMPTS = 16
#: how long a file shorter than its superblock's end-of-file address is read again while
#: its writer may still be extending it (SWMR flags set) before it is called damaged
TRUNCATION_WAIT_S = 1.0
_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def waiting_out_locks(opener: Callable[[], h5py.File], wait_s: float) -> h5py.File:
    """``opener()``, retried while HDF5 says "unable to lock file", for up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return opener()
        except OSError as exc:
            if "unable to lock file" in str(exc) and time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            raise


def open_for_update(path: str | os.PathLike) -> h5py.File:
    """The log opened ``r+``, once no reader holds its lock (up to ``UPDATE_LOCK_WAIT_S``)."""
    return waiting_out_locks(lambda: h5py.File(path, "r+", libver="latest"), UPDATE_LOCK_WAIT_S)


@functools.lru_cache(maxsize=1)
def _set_read_attempts() -> Callable[[int, int], int] | None:
    """HDF5's ``H5Pset_metadata_read_attempts`` (h5py does not wrap it), or None."""
    try:
        from h5py import h5

        fn = ctypes.CDLL(h5.__file__).H5Pset_metadata_read_attempts
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _open_swmr(path: Path) -> h5py.File:
    """``h5py.File(path, "r", swmr=True)`` with bounded metadata read retries."""
    setter = _set_read_attempts()
    if setter is None:
        return h5py.File(path, "r", swmr=True)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    if setter(fapl.id, METADATA_READ_ATTEMPTS) < 0:
        return h5py.File(path, "r", swmr=True)
    flags = h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ
    return h5py.File(h5py.h5f.open(os.fsencode(path), flags, fapl))


def _superblock_end(path: Path) -> tuple[int, bool] | None:
    """``(end-of-file address, writer flags set)`` of a version 2/3 superblock, else None.

    Layout: :mod:`ecmpi.log.crash` (the end-of-file address is the third address).
    """
    with open(path, "rb") as fh:
        head = fh.read(12 + 4 * 8)
    if len(head) < 12 or head[:8] != _SIGNATURE or head[8] not in (2, 3):
        return None
    so = head[9]
    if so not in (4, 8) or len(head) < 12 + 4 * so:
        return None
    at = 12 + 2 * so
    return int.from_bytes(head[at : at + so], "little"), head[11] != 0


def check_intact(path: str | os.PathLike) -> None:
    """Raise :class:`SchemaError` if the file is shorter than its superblock says.

    HDF5 sets the file's size to the superblock's end-of-file address at every flush,
    so a shorter file was cut (a copy that stopped, a full disk, a truncation). A file
    still being written may be shorter for a moment (mid-flush); it is read again for
    up to :data:`TRUNCATION_WAIT_S`.
    """
    path = Path(path)
    deadline = time.monotonic() + TRUNCATION_WAIT_S
    while True:
        end = _superblock_end(path)
        size = path.stat().st_size
        if end is None or size >= end[0]:
            return
        if not end[1] or time.monotonic() >= deadline:
            raise SchemaError(
                f"{path} is damaged: it has {size} bytes but its HDF5 superblock says "
                f"{end[0]} (the file was cut short)"
            )
        time.sleep(0.05)


@contextlib.contextmanager
def damaged_as_schema_error(path: str | os.PathLike) -> Iterator[None]:
    """HDF5 errors while reading an open log (bad checksums, bad heaps) as SchemaError."""
    try:
        yield
    except SchemaError:
        raise
    except (OSError, RuntimeError, KeyError) as exc:
        raise SchemaError(f"{path} is damaged: {exc}") from None


def _open_read_once(path: Path) -> h5py.File:
    try:
        return _open_swmr(path)
    except OSError:
        return h5py.File(path, "r")


def open_read(path: str | os.PathLike) -> h5py.File:
    """The log opened read-only (SWMR if a writer has it), waiting out a brief write lock.

    Raises:
        FileNotFoundError: no such file.
        SchemaError: not a readable HDF5 file, or a damaged one (see :func:`check_intact`).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such log file: {path}")
    try:
        check_intact(path)
        return waiting_out_locks(lambda: _open_read_once(path), LOCK_WAIT_S)
    except OSError as exc:
        if "already open for write" in str(exc):
            raise SchemaError(
                f"{path} was left open for writing by a process that was killed before it "
                "logged a row; ecmpi.log.mark_killed (or h5clear -s) makes it readable"
            ) from None
        raise SchemaError(f"{path} is not a readable HDF5 file: {exc}") from None


def refresh(ds: Any) -> None:
    """Show a reader the rows a SWMR writer flushed since the file was opened (else no-op)."""
    if hasattr(ds, "refresh"):
        try:
            ds.refresh()
        except Exception:
            pass
