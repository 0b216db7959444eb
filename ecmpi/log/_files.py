"""Opening a log file: HDF5's file locks waited out, SWMR reads, refreshed datasets.

HDF5 locks a file while it is open (``flock``: shared for a reader, exclusive for a
writer). A writer in SWMR mode lets readers in; but the writer's final reopen (to set
``status``) and :func:`ecmpi.log.mark_killed` take the exclusive lock briefly, and a
reader polling a log holds its shared lock for milliseconds at a time. Each side
retries instead of failing at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py

from .schema import SchemaError

__all__ = [
    "LOCK_WAIT_S",
    "UPDATE_LOCK_WAIT_S",
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


def _open_read_once(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r", swmr=True)
    except OSError:
        return h5py.File(path, "r")


def open_read(path: str | os.PathLike) -> h5py.File:
    """The log opened read-only (SWMR if a writer has it), waiting out a brief write lock.

    Raises:
        FileNotFoundError: no such file.
        SchemaError: not a readable HDF5 file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such log file: {path}")
    try:
        return waiting_out_locks(lambda: _open_read_once(path), LOCK_WAIT_S)
    except OSError as exc:
        raise SchemaError(f"{path} is not a readable HDF5 file: {exc}") from None


def refresh(ds: Any) -> None:
    """Show a reader the rows a SWMR writer flushed since the file was opened (else no-op)."""
    if hasattr(ds, "refresh"):
        try:
            ds.refresh()
        except Exception:
            pass
