"""Reading a log: :func:`open_log`, safe while a run is still writing it.

The file is opened read-only with ``swmr=True`` (a plain open if that fails; a damaged
file raises :class:`~ecmpi.errors.SchemaError`, see :mod:`ecmpi.log._files`), every
dataset refreshed, and the trajectory cut to its complete rows: the writer writes
``step`` last in each row, so a row whose ``step`` is still the fill value -1 (a
crash between columns) is left out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._files import damaged_as_schema_error, open_read, refresh
from .checkpoint import newest_valid
from .schema import SchemaError, check_schema, decode_attr

__all__ = ["TrajectoryLog", "open_log"]


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


def _complete_rows(f: h5py.File) -> dict[str, np.ndarray]:
    g = f["trajectory"]
    cols = {}
    for name in g:
        ds = g[name]
        refresh(ds)
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
        SchemaError: not an ecmpi log, another schema version, or a damaged file.
    """
    with open_read(path) as f, damaged_as_schema_error(path):
        check_schema(f, path)
        attrs = {k: decode_attr(v) for k, v in f.attrs.items()}
        try:
            config = json.loads(attrs.get("config", "{}"))
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{path}: the config attribute is not valid JSON ({exc})") from None
        traj = _complete_rows(f)
        x_final = f["x_final"][()] if "x_final" in f else None
        ck = newest_valid(f)
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
