"""Writing a log (rank 0 only): :class:`TrajectoryWriter`.

Crash safety: the file is created with ``libver="latest"`` under a temporary name,
every dataset created up front, closed (an ordinary HDF5 file: a run killed before
its first step leaves a log that any tool opens) and renamed into place. At
:meth:`TrajectoryWriter.start` the writer reopens it and switches to HDF5
single-writer/multiple-reader (SWMR) mode, in which the file on disk stays
consistent at every flush. Each
logged row is flushed at once, so ``kill -9`` leaves a file holding every row
logged before it (open it with ``h5py.File(path, "r", swmr=True)``, or run
``h5clear -s`` on it first for tools that do not know SWMR). Checkpoints go to two
slots in turn (layout in :mod:`ecmpi.log.checkpoint`), so a crash while writing one leaves
the previous one usable. At the end the writer closes the file and reopens it
normally to set ``status`` and write ``x_final``. :meth:`TrajectoryWriter.mark_failed`
does the same from another thread (an error reported by another rank while this one
waits in MPI); a lock keeps it apart from row and checkpoint writes, and later
writes are dropped.

A full disk: space is reserved beside the log and checked before each checkpoint
(:mod:`ecmpi.log.space`); a write that fails with ENOSPC gives the reserve back and
raises one ``OSError(ENOSPC)``, and the file is then closed with the space freed, so
its rows and its last complete checkpoint stay readable and the status is recorded.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._files import open_for_update
from .checkpoint import read_checkpoint
from .reader import open_log
from .schema import BASE_COLUMNS, ROOT_ATTRS, SCHEMA, STATUSES, encode_attr, encode_config, utc_now
from .space import MARGIN_BYTES, SpaceReserve, ensure_space, free_bytes, is_no_space, no_space_error

__all__ = ["TrajectoryWriter"]

_CHUNK_ROWS = 1024
_CKPT_CHUNK = 1 << 16


class TrajectoryWriter:
    """Writes one run's log (rank 0 only); :mod:`ecmpi.log` shows the layout.

    Rows given to :meth:`append` before :meth:`start` are kept in memory; ``start``
    creates the extra datasets, switches the file to SWMR and writes them.

    Args:
        path: the ``.h5`` file.
        attrs: root attributes (the schema's names; missing ones get defaults:
            NaN for numbers, ``"none"`` for strings).
        config: every resolved parameter, stored as JSON in ``attrs["config"]``.
        overwrite: replace an existing file (otherwise FileExistsError).
        initial_rows: rows carried over from an earlier file (resume), as columns.
        initial_checkpoint: ``(step, blob)`` to place in slot 0 (resume).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        attrs: Mapping[str, Any],
        config: Mapping[str, Any],
        *,
        overwrite: bool = False,
        initial_rows: Mapping[str, np.ndarray] | None = None,
        initial_checkpoint: tuple[int, bytes] | None = None,
    ):
        self.path = Path(path)
        if self.path.exists() and not overwrite and initial_rows is None:
            raise FileExistsError(
                f"{self.path} exists; pass --overwrite to replace it or --resume to continue it"
            )
        if self.path.parent and not self.path.parent.exists():
            raise FileNotFoundError(f"output directory {self.path.parent} does not exist")
        tmp = self.path.with_name(self.path.name + ".tmp")
        self._reserve = SpaceReserve(self.path)
        self._f: h5py.File | None = None
        self._pending: list[dict[str, float]] = []
        self._nrows = 0
        self._started = False
        self._closed = False
        self._marked_failed = False
        self._lock = threading.RLock()
        self._warned: set[str] = set()
        self._names: list[str] = []  # the trajectory columns, in creation order
        try:
            with h5py.File(tmp, "w", libver="latest") as f:
                self._create(f, attrs, config, initial_rows, initial_checkpoint)
            os.replace(tmp, self.path)
        except BaseException as exc:
            self._f = None
            tmp.unlink(missing_ok=True)
            self._reserve.release()
            if is_no_space(exc):
                raise no_space_error(self.path, "creating") from None
            raise

    def _create(
        self,
        f: h5py.File,
        attrs: Mapping[str, Any],
        config: Mapping[str, Any],
        initial_rows: Mapping[str, np.ndarray] | None,
        initial_checkpoint: tuple[int, bytes] | None,
    ) -> None:
        defaults: dict[str, Any] = {k: "none" for k in ROOT_ATTRS}
        defaults.update({k: float("nan") for k in ("f_star", "L", "mu")})
        defaults.update(schema=SCHEMA, n_ranks=1, seed=0, status="running", started_at=utc_now())
        from .. import __version__

        defaults["ecmpi_version"] = __version__
        merged = {**defaults, **dict(attrs)}
        merged["schema"] = SCHEMA
        merged["status"] = "running"
        merged["config"] = encode_config(config)
        for k, v in merged.items():
            f.attrs[k] = encode_attr(v)
        f.create_group("trajectory")
        ck = f.create_group("checkpoint")
        ck.attrs["format"] = "npz; see ecmpi.log.pack_state"
        for i in range(2):
            ck.create_dataset(
                f"slot{i}", shape=(0,), maxshape=(None,), chunks=(_CKPT_CHUNK,), dtype="u1"
            )
        ck.create_dataset("index", data=np.full((2, 3), -1, dtype=np.int64))
        self._bind(f)
        for name in BASE_COLUMNS:
            self._new_column(name)
        if initial_rows is not None:
            extras = [k for k in initial_rows if k not in BASE_COLUMNS]
            for name in extras:
                self._new_column(name)
            n = len(np.asarray(initial_rows["step"]))
            for name, ds in self._cols.items():
                col = np.asarray(initial_rows.get(name, np.full(n, np.nan)))[:n]
                ds.resize((n,))
                ds[:] = col
            self._nrows = n
        if initial_checkpoint is not None:
            self._write_slot_unchecked(0, *initial_checkpoint)
        self._f = None

    def _bind(self, f: h5py.File) -> None:
        """Take the handles of the open file ``f`` (its datasets by name)."""
        self._f = f
        self._traj = f["trajectory"]
        self._cols: dict[str, h5py.Dataset] = {name: self._traj[name] for name in self._names}
        ck = f["checkpoint"]
        self._slots = [ck["slot0"], ck["slot1"]]
        self._index = ck["index"]

    def _reopen(self) -> h5py.File:
        """The created file opened for writing again (not SWMR), handles bound; a reader
        polling it holds its lock for milliseconds, which is waited out."""
        f = open_for_update(self.path)
        self._bind(f)
        return f

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike,
        *,
        log_every: int = 1,
        config: Mapping[str, Any] | None = None,
    ) -> TrajectoryWriter:
        """Reopen a log to continue it from its newest checkpoint.

        Rewrites the file (atomically, through a temporary file): the attributes,
        the rows up to the checkpoint's step (rows logged only because of an
        interruption, i.e. at steps not divisible by ``log_every``, are dropped so
        the resumed file matches an uninterrupted run) and the checkpoint itself.
        ``config`` replaces the stored config (e.g. with a longer step budget).

        Raises:
            ValueError: the log holds no valid checkpoint.
        """
        ck = read_checkpoint(path)
        if ck is None:
            raise ValueError(f"{path} holds no valid checkpoint to resume from")
        log = open_log(path)
        step = log.trajectory["step"]
        keep = (step <= ck.step) & ((step % log_every == 0) | (step == 0))
        rows = {k: v[keep] for k, v in log.trajectory.items()}
        attrs = {
            k: v
            for k, v in log.attrs.items()
            if k not in ("config", "finished_at", "stop_reason", "message", "steps_done")
        }
        resumes = int(attrs.get("resumed", 0)) + 1
        attrs["resumed"] = resumes
        return cls(
            path,
            attrs,
            log.config if config is None else config,
            overwrite=True,
            initial_rows=rows,
            initial_checkpoint=(ck.step, ck.blob),
        )

    # -- rows ---------------------------------------------------------------------------
    def _new_column(self, name: str) -> None:
        if not name or "/" in name:
            raise ValueError(f"bad trajectory column name {name!r}")
        is_step = name == "step"
        self._cols[name] = self._traj.create_dataset(
            name,
            shape=(0,),
            maxshape=(None,),
            chunks=(_CHUNK_ROWS,),
            dtype=np.int64 if is_step else np.float64,
            fillvalue=-1 if is_step else np.nan,
        )
        self._names.append(name)

    @property
    def columns(self) -> list[str]:
        return list(self._names)

    @property
    def started(self) -> bool:
        return self._started

    def start(self, extras: Sequence[str] = ()) -> None:
        """Create the extra columns, switch to SWMR and write the rows held so far."""
        with self._lock:
            if self._started or self._closed:
                return
            self._start(extras)

    def _start(self, extras: Sequence[str]) -> None:
        with self._io_errors("starting"):
            self._reopen()
            for name in extras:
                if name not in self._cols:
                    self._new_column(name)
            self._f.flush()
            self._f.swmr_mode = True
        self._started = True
        pending, self._pending = self._pending, []
        for row in pending:
            self._write_row(row)

    def append(self, row: Mapping[str, float]) -> None:
        """Log one row (flushed to disk at once once started). ``step`` is required."""
        if "step" not in row:
            raise ValueError("a trajectory row needs a 'step'")
        with self._lock:
            if self._marked_failed:
                return
            if not self._started:
                self._pending.append(dict(row))
                return
            self._write_row(row)

    def _write_row(self, row: Mapping[str, float]) -> None:
        with self._lock, self._io_errors("writing a row to"):
            self._write_row_unchecked(row)

    @contextlib.contextmanager
    def _io_errors(self, what: str) -> Iterator[None]:
        """HDF5 write failures (h5py raises RuntimeError) as one OSError.

        A full disk (ENOSPC, EDQUOT) gives the reserved space back first, so that
        closing the file afterwards can flush its metadata, and is reported as
        :func:`~ecmpi.log.space.no_space_error`.
        """
        try:
            yield
        except (RuntimeError, OSError) as exc:
            if is_no_space(exc):
                self._reserve.release()
                raise no_space_error(self.path, what) from None
            if isinstance(exc, RuntimeError):
                raise OSError(f"cannot write the log {self.path}: {exc}") from exc
            raise

    def _write_row_unchecked(self, row: Mapping[str, float]) -> None:
        unknown = [k for k in row if k not in self._cols and k not in self._warned]
        if unknown:
            self._warned.update(unknown)
            warnings.warn(
                f"trajectory columns {unknown} appeared after the log started; not logged",
                RuntimeWarning,
                stacklevel=3,
            )
        n = self._nrows
        # ``step`` last: a row whose step reads as the fill value -1 is incomplete
        for name, ds in self._cols.items():
            if name == "step":
                continue
            ds.resize((n + 1,))
            ds[n] = float(row.get(name, math.nan))
        step = self._cols["step"]
        step.resize((n + 1,))
        step[n] = int(row["step"])
        self._nrows = n + 1
        self._f.flush()

    # -- checkpoints ----------------------------------------------------------------------
    def _write_slot(self, slot: int, step: int, blob: bytes) -> None:
        with self._lock:
            # the bytes the slot grows by: HDF5 allocates whole chunks, and a slot keeps
            # the chunks of the checkpoint it held before
            need = -(-len(blob) // _CKPT_CHUNK) * _CKPT_CHUNK
            ensure_space(self.path, max(0, need - self._slots[slot].id.get_storage_size()))
            with self._io_errors("writing a checkpoint to"):
                self._write_slot_unchecked(slot, step, blob)

    def _write_slot_unchecked(self, slot: int, step: int, blob: bytes) -> None:
        ds = self._slots[slot]
        self._index[slot] = (-1, 0, 0)
        self._f.flush()
        if ds.shape[0] < len(blob):
            ds.resize((len(blob),))
        ds[: len(blob)] = np.frombuffer(blob, dtype=np.uint8)
        self._f.flush()
        self._index[slot] = (int(step), len(blob), zlib.crc32(blob))
        self._f.flush()

    def write_checkpoint(self, step: int, blob: bytes) -> None:
        """Store ``blob`` (from :func:`~ecmpi.log.pack_state`) atomically in the older slot.

        The slot is marked empty, written, then its index row (with the CRC-32) is
        written last, each step flushed: see :mod:`ecmpi.log.checkpoint`.
        """
        with self._lock:
            if self._marked_failed or self._closed:
                return
            if self._f is None:  # before start(): the file is closed
                with self._io_errors("writing a checkpoint to"):
                    self._reopen()
                try:
                    self._write_newer_slot(step, blob)
                finally:
                    self._f.close()
                    self._f = None
                return
            self._write_newer_slot(step, blob)

    def _write_newer_slot(self, step: int, blob: bytes) -> None:
        idx = self._index[()]
        newest = int(np.argmax(idx[:, 0])) if idx[:, 0].max() >= 0 else 1
        self._write_slot(1 - newest, step, blob)

    # -- end --------------------------------------------------------------------------------
    def close(
        self,
        status: str,
        *,
        x_final: Any = None,
        extra_attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Flush, leave SWMR, then reopen to set ``status``, ``x_final`` and final attributes."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        with self._lock:
            if self._closed:
                return
            self._close(status, x_final, extra_attrs)

    def _close(self, status: str, x_final: Any, extra_attrs: Mapping[str, Any] | None) -> None:
        attrs = dict(extra_attrs or {})
        self._reserve.release()  # the space for the last flushes and the final update
        if not self._started:
            self._start(())
        try:
            if self._f is not None:
                with self._io_errors("closing"):
                    self._f.close()
        finally:
            self._f = None
            self._closed = True
        x = None if x_final is None else np.asarray(x_final)
        no_space = None
        if x is not None and free_bytes(self.path) < x.nbytes + MARGIN_BYTES:
            no_space = no_space_error(self.path, "writing x_final to")
            x = None
            status = "failed"
            attrs.update(stop_reason="exception", message=f"OSError: {no_space.strerror}")
        with self._io_errors("closing"), open_for_update(self.path) as f:
            if x is not None:
                f.create_dataset("x_final", data=x)
            f.attrs["finished_at"] = utc_now()
            for k, v in attrs.items():
                f.attrs[k] = encode_attr(v)
            f.attrs["status"] = status
        if no_space is not None:
            raise no_space

    def mark_failed(self, message: str) -> None:
        """End the log with status ``failed``, ``stop_reason`` ``exception`` and ``message``.

        Thread-safe: for an error reported by another rank while the thread that
        writes rows waits in MPI. Rows and checkpoints given afterwards are
        dropped (the job is being aborted), and a later :meth:`close` does nothing.
        A log that is already closed is left as it is.
        """
        with self._lock:
            if self._closed:
                return
            self._marked_failed = True
            self._close("failed", None, {"stop_reason": "exception", "message": str(message)})

    def abandon(self) -> None:
        """Close the file as it is (status stays ``running``)."""
        with self._lock:
            self._reserve.release()
            if not self._closed:
                self._closed = True
                try:
                    if self._f is not None:
                        self._f.close()
                except Exception:
                    pass
                self._f = None
