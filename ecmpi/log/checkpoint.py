"""Checkpoints inside a log: the state packed as ``.npz`` bytes, stored in two slots.

Layout::

    /checkpoint/slot0,1  uint8, each an ``.npz`` archive of one checkpoint (:func:`pack_state`)
    /checkpoint/index    int64 (2, 3): per slot (step, nbytes, crc32); step -1 = empty

A checkpoint goes to the slot that does not hold the newest one: the slot is first
marked empty, then written, then its index row (with a CRC-32 of the bytes) is written
last, each step flushed (:meth:`ecmpi.log.TrajectoryWriter.write_checkpoint`), so a
crash while writing leaves the previous checkpoint usable. A reader takes the newest
slot whose CRC matches (:func:`newest_valid`).
"""

from __future__ import annotations

import io
import json
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from ._files import damaged_as_schema_error, open_read, refresh
from .schema import check_schema

if TYPE_CHECKING:
    from .writer import TrajectoryWriter

__all__ = [
    "Checkpoint",
    "load_checkpoint",
    "newest_valid",
    "pack_state",
    "read_checkpoint",
    "save_checkpoint",
    "unpack_state",
]


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


def newest_valid(f: h5py.File) -> tuple[int, bytes] | None:
    """``(step, blob)`` of the newest slot whose CRC matches, or None (``f`` open to read)."""
    if "checkpoint" not in f or "index" not in f["checkpoint"]:
        return None
    ck = f["checkpoint"]
    for ds in ck.values():
        refresh(ds)
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
    with open_read(path) as f, damaged_as_schema_error(path):
        check_schema(f, path)
        found = newest_valid(f)
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
