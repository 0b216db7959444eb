"""HDF5 trajectory logs (schema ``ecmpi.trajectory/1``) and checkpoints inside them.

Rank 0 writes; :func:`open_log` reads, also while a run is still writing.

Layout (``docs/hdf5.md`` has the full description)::

    /                    attributes: schema, algorithm, problem, dataset, compressor,
                         collective, n_ranks, seed, config (JSON), f_star, L, mu,
                         ecmpi_version, mpi_library, status, started_at (+ finished_at,
                         stop_reason, message, steps_done once the run ends)
    /trajectory/<name>   1-D, resizable, chunked, one entry per logged row: step, loss,
                         suboptimality, dist_to_opt, grad_norm, bits_up, bits_down,
                         wall_time, comm_time, compress_time, and the algorithm's extras
    /x_final             the last iterate (written when the run ends)
    /checkpoint/slot0,1  uint8, each an ``.npz`` archive of one checkpoint
    /checkpoint/index    int64 (2, 3): per slot (step, nbytes, crc32); step -1 = empty

Crash safety: the file is created with ``libver="latest"``, every dataset is
created up front, then the writer switches to HDF5 single-writer/multiple-reader
(SWMR) mode, in which the file on disk stays consistent at every flush. Each
logged row is flushed at once, so ``kill -9`` leaves a file holding every row
logged before it (open it with ``h5py.File(path, "r", swmr=True)``, or run
``h5clear -s`` on it first for tools that do not know SWMR). A checkpoint goes
to the slot that does not hold the newest one: the slot is first marked empty,
then written, then its index row (with a CRC-32 of the bytes) is written last,
so a crash while writing leaves the previous checkpoint usable. At the end the
writer closes the file and reopens it normally to set ``status`` and write
``x_final``. :meth:`TrajectoryWriter.mark_failed` does the same from another
thread (an error reported by another rank while this one waits in MPI); a lock
keeps it apart from row and checkpoint writes, and later writes are dropped.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import math
import os
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = [
    "BASE_COLUMNS",
    "SCHEMA",
    "STATUSES",
    "Checkpoint",
    "SchemaError",
    "TrajectoryLog",
    "TrajectoryWriter",
    "load_checkpoint",
    "open_log",
    "pack_state",
    "read_checkpoint",
    "save_checkpoint",
    "unpack_state",
]

SCHEMA = "ecmpi.trajectory/1"
#: ``running`` while writing; ``interrupted`` after a signal (resumable)
STATUSES = ("running", "completed", "failed", "diverged", "interrupted")
#: the trajectory datasets every log has, in this order (``step`` is int64, the rest float64)
BASE_COLUMNS = (
    "step",
    "loss",
    "suboptimality",
    "dist_to_opt",
    "grad_norm",
    "bits_up",
    "bits_down",
    "wall_time",
    "comm_time",
    "compress_time",
)
ROOT_ATTRS = (
    "schema",
    "algorithm",
    "problem",
    "dataset",
    "compressor",
    "collective",
    "n_ranks",
    "seed",
    "config",
    "f_star",
    "L",
    "mu",
    "ecmpi_version",
    "mpi_library",
    "status",
    "started_at",
)
_CHUNK_ROWS = 1024
_CKPT_CHUNK = 1 << 16


class SchemaError(ValueError):
    """The file is not an ecmpi trajectory log, or has another schema version."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _attr_value(v: Any) -> Any:
    if v is None:
        return "none"
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, float, str, np.integer, np.floating)):
        return v
    return json.dumps(v, default=str)


# ---------------------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------------------
class TrajectoryWriter:
    """Writes one run's log (rank 0 only). See the module docstring for the layout.

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
        self._f = h5py.File(tmp, "w", libver="latest")
        f = self._f
        defaults: dict[str, Any] = {k: "none" for k in ROOT_ATTRS}
        defaults.update({k: float("nan") for k in ("f_star", "L", "mu")})
        defaults.update(schema=SCHEMA, n_ranks=1, seed=0, status="running", started_at=_now())
        from .. import __version__

        defaults["ecmpi_version"] = __version__
        merged = {**defaults, **dict(attrs)}
        merged["schema"] = SCHEMA
        merged["status"] = "running"
        merged["config"] = json.dumps(dict(config), sort_keys=True, default=_json_default)
        for k, v in merged.items():
            f.attrs[k] = _attr_value(v)
        self._traj = f.create_group("trajectory")
        self._cols: dict[str, h5py.Dataset] = {}
        for name in BASE_COLUMNS:
            self._new_column(name)
        ck = f.create_group("checkpoint")
        ck.attrs["format"] = "npz; see ecmpi.log.pack_state"
        self._slots = [
            ck.create_dataset(
                f"slot{i}", shape=(0,), maxshape=(None,), chunks=(_CKPT_CHUNK,), dtype="u1"
            )
            for i in range(2)
        ]
        self._index = ck.create_dataset("index", data=np.full((2, 3), -1, dtype=np.int64))
        self._pending: list[dict[str, float]] = []
        self._nrows = 0
        self._started = False
        self._closed = False
        self._marked_failed = False
        self._lock = threading.RLock()
        self._warned: set[str] = set()
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
            self._write_slot(0, *initial_checkpoint)
        f.flush()
        os.replace(tmp, self.path)

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

    @property
    def columns(self) -> list[str]:
        return list(self._cols)

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
        with self._lock, self._io_errors():
            self._write_row_unchecked(row)

    @contextlib.contextmanager
    def _io_errors(self) -> Iterator[None]:
        """HDF5 write failures (h5py raises RuntimeError, e.g. a full disk) as one OSError."""
        try:
            yield
        except RuntimeError as exc:
            raise OSError(f"cannot write the log {self.path}: {exc}") from exc

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
        with self._lock, self._io_errors():
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
        """Store ``blob`` (from :func:`pack_state`) atomically; see the module docstring."""
        with self._lock:
            if self._marked_failed:
                return
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
        if not self._started:
            self._start(())
        self._f.close()
        self._closed = True
        with _open_for_update(self.path) as f:
            if x_final is not None:
                f.create_dataset("x_final", data=np.asarray(x_final))
            f.attrs["finished_at"] = _now()
            for k, v in (extra_attrs or {}).items():
                f.attrs[k] = _attr_value(v)
            f.attrs["status"] = status

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
            if not self._closed:
                self._closed = True
                try:
                    self._f.close()
                except Exception:
                    pass


def file_identity(path: str | os.PathLike | int) -> tuple[int, int]:
    """``(st_dev, st_ino)`` of a log (a path or an open descriptor): a new run or a
    resume writes a new file (inode)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def mark_killed(path: str | os.PathLike, message: str, *, identity: tuple[int, int]) -> bool:
    """End a log whose writer died (killed by a signal): status ``failed``, ``stop_reason``
    ``killed``, ``message``; rows and checkpoints stay as they are (resumable).

    Acts only on the file that still is ``identity`` (see :func:`file_identity`) and
    still says ``running``: a log that a later run or a resume replaced, or that its
    writer closed, is left alone. The writer's SWMR "open for write" flags are
    cleared first (what ``h5clear -s`` does), in place: nothing is rewritten.

    Returns:
        True if the log was marked.
    """
    from .crash import clear_consistency_flags

    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        if file_identity(fd) != tuple(identity):
            return False
        with _open_read(path) as f:
            if _decode_attr(f.attrs.get("status")) != "running":
                return False
        clear_consistency_flags(fd)
        with _open_for_update(path) as f:
            if file_identity(f.id.get_vfd_handle()) != tuple(identity):  # replaced meanwhile
                return False
            f.attrs["finished_at"] = _now()
            f.attrs["stop_reason"] = "killed"
            f.attrs["message"] = str(message)
            f.attrs["status"] = "failed"
        return True
    finally:
        os.close(fd)


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    return str(v)


# ---------------------------------------------------------------------------------------
# reader
# ---------------------------------------------------------------------------------------
@dataclass
class TrajectoryLog:
    """A log read into memory by :func:`open_log`.

    Attributes:
        path: the file.
        attrs: root attributes (strings decoded, numbers as Python scalars).
        config: the parsed ``config`` attribute.
        status: ``running``, ``completed``, ``failed``, ``diverged`` or ``interrupted``.
        trajectory: column name -> 1-D array, all cut to the same length (complete rows only).
        x_final: the last iterate, or None if the run did not finish.
        checkpoint_step: step of the newest valid checkpoint, or None.
    """

    path: Path
    attrs: dict[str, Any]
    config: dict[str, Any]
    status: str
    trajectory: dict[str, np.ndarray]
    x_final: np.ndarray | None = None
    checkpoint_step: int | None = None
    columns: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.trajectory.get("step", ()))


#: how long a reader waits for a writer's brief exclusive lock (the writer reopening the
#: file to set the final status, or the log watcher marking it) before giving up
_LOCK_WAIT_S = 2.0
#: how long reopening a log to update it (the writer setting the final status,
#: :func:`mark_killed`) waits for readers' locks (a reader polling a log holds its shared
#: lock for milliseconds at a time)
_UPDATE_LOCK_WAIT_S = 30.0


def _waiting_out_locks(opener: Callable[[], h5py.File], wait_s: float) -> h5py.File:
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


def _open_for_update(path: str | os.PathLike) -> h5py.File:
    """The log opened ``r+``, once no reader holds its lock (up to ``_UPDATE_LOCK_WAIT_S``)."""
    return _waiting_out_locks(lambda: h5py.File(path, "r+", libver="latest"), _UPDATE_LOCK_WAIT_S)


def _open_read_once(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r", swmr=True)
    except OSError:
        return h5py.File(path, "r")


def _open_read(path: str | os.PathLike) -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such log file: {path}")
    try:
        return _waiting_out_locks(lambda: _open_read_once(path), _LOCK_WAIT_S)
    except OSError as exc:
        raise SchemaError(f"{path} is not a readable HDF5 file: {exc}") from None


def _decode_attr(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _check_schema(f: h5py.File, path: Any) -> None:
    schema = _decode_attr(f.attrs.get("schema", None))
    if schema is None or not str(schema).startswith("ecmpi.trajectory/"):
        raise SchemaError(f"{path} is not an ecmpi trajectory log (no 'schema' attribute)")
    if schema != SCHEMA:
        raise SchemaError(f"{path} has schema {schema!r}; this ecmpi reads {SCHEMA!r}")
    if "trajectory" not in f or "step" not in f["trajectory"]:
        raise SchemaError(f"{path} has no trajectory/step dataset")


def _complete_rows(f: h5py.File) -> dict[str, np.ndarray]:
    g = f["trajectory"]
    cols = {}
    for name in g:
        ds = g[name]
        if hasattr(ds, "refresh"):
            try:
                ds.refresh()
            except Exception:
                pass
        cols[name] = ds[()]
    n = min(len(c) for c in cols.values())
    step = cols["step"][:n]
    valid = np.flatnonzero(step >= 0)
    n = int(valid[-1]) + 1 if len(valid) else 0
    # an incomplete last row (crash between columns) has step -1: cut it
    while n and step[n - 1] < 0:
        n -= 1
    return {k: np.ascontiguousarray(v[:n]) for k, v in cols.items()}


def open_log(path: str | os.PathLike) -> TrajectoryLog:
    """Read an ecmpi trajectory log (safe while a run is writing it).

    Raises:
        FileNotFoundError: no such file.
        SchemaError: not an ecmpi log, or another schema version.
    """
    with _open_read(path) as f:
        _check_schema(f, path)
        attrs = {k: _decode_attr(v) for k, v in f.attrs.items()}
        try:
            config = json.loads(attrs.get("config", "{}"))
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{path}: the config attribute is not valid JSON ({exc})") from None
        traj = _complete_rows(f)
        x_final = f["x_final"][()] if "x_final" in f else None
        ck = _newest_valid(f)
        return TrajectoryLog(
            path=Path(path),
            attrs=attrs,
            config=config,
            status=str(attrs.get("status", "running")),
            trajectory=traj,
            x_final=x_final,
            checkpoint_step=None if ck is None else ck[0],
            columns=list(traj),
        )


# ---------------------------------------------------------------------------------------
# checkpoint contents
# ---------------------------------------------------------------------------------------
def pack_state(loop: Mapping[str, Any], states: Sequence[Mapping[str, Any]]) -> bytes:
    """Serialize the loop's state and every rank's ``state_dict`` into an ``.npz`` archive.

    Entries: ``loop/<key>`` and ``rank<r>/<key>``; values are arrays (NumPy or
    CuPy, stored as NumPy), Python scalars, strings or None. Nested dicts are
    flattened with ``/``. A JSON ``__manifest__`` entry records each value's
    kind so :func:`unpack_state` restores the same Python types. Readable
    without ecmpi: ``numpy.load(io.BytesIO(blob))``.
    """
    arrays: dict[str, np.ndarray] = {}
    manifest: dict[str, str] = {}

    def put(prefix: str, d: Mapping[str, Any]) -> None:
        for k, v in d.items():
            if not isinstance(k, str) or not k:
                raise TypeError(f"state keys must be non-empty strings, got {k!r}")
            key = f"{prefix}/{k}"
            if isinstance(v, Mapping):
                put(key, v)
                continue
            if v is None:
                manifest[key] = "none"
                arrays[key] = np.zeros(0, dtype=np.uint8)
            elif isinstance(v, (bool, np.bool_)):
                manifest[key] = "bool"
                arrays[key] = np.asarray(bool(v))
            elif isinstance(v, (int, np.integer)) and not isinstance(v, np.ndarray):
                manifest[key] = "int"
                arrays[key] = np.asarray(str(int(v)))  # arbitrary-precision ints
            elif isinstance(v, (float, np.floating)):
                manifest[key] = "float"
                arrays[key] = np.asarray(float(v), dtype=np.float64)
            elif isinstance(v, str):
                manifest[key] = "str"
                arrays[key] = np.asarray(v)
            elif hasattr(v, "shape") and hasattr(v, "dtype"):
                from .._backend import to_host

                a = to_host(v)
                if a.dtype == object:
                    raise TypeError(f"state entry {key!r} is an object array")
                manifest[key] = "array"
                arrays[key] = a
            else:
                raise TypeError(
                    f"state entry {key!r} has unsupported type {type(v).__name__} "
                    "(use arrays, numbers, strings, None or dicts of them)"
                )

    put("loop", loop)
    for r, st in enumerate(states):
        put(f"rank{r}", st)
    arrays["__manifest__"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def unpack_state(blob: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Inverse of :func:`pack_state`: ``(loop_state, [state of rank 0, rank 1, ...])``."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        manifest = json.loads(bytes(z["__manifest__"]).decode())
        flat = {}
        for key, kind in manifest.items():
            a = z[key]
            if kind == "none":
                flat[key] = None
            elif kind == "bool":
                flat[key] = bool(a)
            elif kind == "int":
                flat[key] = int(str(a))
            elif kind == "float":
                flat[key] = float(a)
            elif kind == "str":
                flat[key] = str(a)
            else:
                flat[key] = a
    loop: dict[str, Any] = {}
    ranks: dict[int, dict[str, Any]] = {}
    for key, v in flat.items():
        head, _, rest = key.partition("/")
        if head == "loop":
            target = loop
        else:
            target = ranks.setdefault(int(head[4:]), {})
        parts = rest.split("/")
        for p in parts[:-1]:
            target = target.setdefault(p, {})
        target[parts[-1]] = v
    n = max(ranks) + 1 if ranks else 0
    return loop, [ranks.get(r, {}) for r in range(n)]


@dataclass
class Checkpoint:
    """A checkpoint read back: the step it was taken at, the loop's and every rank's state."""

    step: int
    loop: dict[str, Any]
    states: list[dict[str, Any]]
    blob: bytes = field(repr=False, default=b"")


def _newest_valid(f: h5py.File) -> tuple[int, bytes] | None:
    if "checkpoint" not in f or "index" not in f["checkpoint"]:
        return None
    ck = f["checkpoint"]
    for ds in ck.values():
        if hasattr(ds, "refresh"):
            try:
                ds.refresh()
            except Exception:
                pass
    idx = ck["index"][()]
    for slot in np.argsort(-idx[:, 0], kind="stable"):
        step, nbytes, crc = (int(v) for v in idx[slot])
        if step < 0:
            continue
        data = ck[f"slot{slot}"]
        if data.shape[0] < nbytes:
            continue
        blob = data[:nbytes].tobytes()
        if zlib.crc32(blob) == crc:
            return step, blob
    return None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint | None:
    """The newest valid checkpoint in a log (no MPI), or None if it holds none."""
    with _open_read(path) as f:
        _check_schema(f, path)
        found = _newest_valid(f)
    if found is None:
        return None
    step, blob = found
    loop, states = unpack_state(blob)
    return Checkpoint(step=step, loop=loop, states=states, blob=blob)


def save_checkpoint(
    writer: TrajectoryWriter | None,
    comm: Any,
    state: Mapping[str, Any],
    loop: Mapping[str, Any],
) -> None:
    """Collective: gather every rank's ``state`` to rank 0, which stores it with ``loop``.

    ``writer`` is used on rank 0 only (None elsewhere). ``loop`` must hold ``step``.
    """
    states = comm.gather(dict(state), root=0)
    if comm.rank == 0:
        if writer is None:
            raise ValueError("save_checkpoint needs the log writer on rank 0")
        writer.write_checkpoint(int(loop["step"]), pack_state(loop, states))


def load_checkpoint(path: str | os.PathLike, comm: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Collective: ``(loop_state, this rank's state)`` from the newest checkpoint of a log.

    Rank 0 reads the file and scatters the per-rank states.

    Raises (on every rank):
        ValueError: no valid checkpoint, or it was written by a different number of ranks.
    """
    msg = None
    parts = None
    if comm.rank == 0:
        try:
            ck = read_checkpoint(path)
            if ck is None:
                msg = f"{path} holds no valid checkpoint (run with --checkpoint-every N)"
            elif len(ck.states) != comm.size:
                msg = (
                    f"{path} was checkpointed by {len(ck.states)} ranks; resume it with "
                    f"mpiexec -n {len(ck.states)} (re-sharding state is not supported)"
                )
            else:
                parts = [(ck.loop, st) for st in ck.states]
        except (OSError, ValueError) as exc:
            msg = f"cannot read a checkpoint from {path}: {exc}"
    msg = comm.bcast(msg, root=0)
    if msg is not None:
        raise ValueError(msg)
    loop, state = comm.scatter(parts, root=0)
    return loop, state
