"""Find trajectory logs and read them into one pandas DataFrame (one row per run)."""

from __future__ import annotations

import glob
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..log import BASE_COLUMNS, open_log

__all__ = [
    "ID_COLUMNS",
    "LOG_SUFFIXES",
    "SELF_QUANTIZING",
    "as_frame",
    "find_logs",
    "load",
    "self_quantizing",
]

#: the columns that identify a run, first in every frame :func:`load` returns
ID_COLUMNS = (
    "file",
    "algorithm",
    "compressor",
    "collective",
    "problem",
    "dataset",
    "n_ranks",
    "seed",
    "status",
)
#: root attributes copied next to the identity columns
_EXTRA_ATTRS = ("stop_reason", "message", "f_star", "L", "mu", "started_at", "finished_at")
#: file name endings searched for in directories
LOG_SUFFIXES = (".h5", ".hdf5")
#: the algorithms that quantize by themselves while logging compressor "none", for logs
#: written before the root attribute ``self_quantizing`` and for frames made by hand without
#: the column (see :func:`self_quantizing`); every registered self-quantizing driver is here
SELF_QUANTIZING = ("dqgd", "dqhb", "dqnag", "qgd")

PathSpec = str | os.PathLike


def find_logs(specs: PathSpec | Iterable[PathSpec]) -> list[Path]:
    """Expand files, directories (searched recursively for ``*.h5``/``*.hdf5``) and globs.

    Order: as given; a directory's or glob's matches sorted by name. A file
    named twice is listed once.

    Raises:
        FileNotFoundError: a path that does not exist, a glob that matches no
            file, a directory without logs, or no specs at all.
    """
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    out: list[Path] = []
    seen: set[Path] = set()
    given = False
    for spec in specs:
        given = True
        s = os.fspath(spec)
        p = Path(s)
        if p.is_dir():
            matches = sorted(q for q in p.rglob("*") if q.suffix in LOG_SUFFIXES and q.is_file())
            if not matches:
                raise FileNotFoundError(f"directory {p} holds no {'/'.join(LOG_SUFFIXES)} logs")
        elif p.exists():
            matches = [p]
        elif glob.has_magic(s):
            found = sorted(Path(m) for m in glob.glob(s, recursive=True))
            matches = []
            for q in found:
                if q.is_dir():
                    matches += sorted(
                        r for r in q.rglob("*") if r.suffix in LOG_SUFFIXES and r.is_file()
                    )
                else:
                    matches.append(q)
            if not matches:
                raise FileNotFoundError(f"no log file matches {s!r}")
        else:
            raise FileNotFoundError(f"no such log file: {s}")
        for q in matches:
            key = q.resolve()
            if key not in seen:
                seen.add(key)
                out.append(q)
    if not given:
        raise FileNotFoundError("no log files given")
    return out


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = str(list(v))
        else:
            out[key] = v
    return out


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def self_quantizing(attrs: Mapping[str, Any]) -> bool:
    """Whether a run's algorithm quantizes by itself, so compressor "none" is no baseline.

    New logs say so in the optional root attribute ``self_quantizing``
    (:attr:`ecmpi.algorithms.Algorithm.self_quantizing`, stored as 0/1).
    Older logs lack it; for them the rule of the time applies: the algorithm
    is one of :data:`SELF_QUANTIZING` (DQ-GD, DQ-HB, DQ-NAG and QGD). This is the only place
    that decides it.
    """
    if "self_quantizing" in attrs:
        return bool(int(attrs["self_quantizing"]))
    return str(attrs.get("algorithm", "none")) in SELF_QUANTIZING


def _run_row(path: Path) -> dict[str, Any]:
    log = open_log(path)
    a = log.attrs
    traj = {k: np.asarray(v) for k, v in log.trajectory.items()}
    n = len(traj.get("step", ()))
    for name in BASE_COLUMNS:  # tolerate hand-made logs missing a column
        if name not in traj:
            traj[name] = np.full(n, np.nan)
    row: dict[str, Any] = {
        "file": str(path),
        "algorithm": str(a.get("algorithm", "none")),
        "compressor": str(a.get("compressor", "none")),
        "collective": str(a.get("collective", "none")),
        "problem": str(a.get("problem", "none")),
        "dataset": str(a.get("dataset", "none")),
        "n_ranks": int(_number(a.get("n_ranks", -1))),
        "seed": int(_number(a.get("seed", -1))),
        "status": str(log.status),
        "rows": n,
        "self_quantizing": self_quantizing(a),
    }
    for k in _EXTRA_ATTRS:
        if k in a:
            row[k] = _number(a[k]) if k in ("f_star", "L", "mu") else a[k]
    for k, v in _flatten(log.config).items():
        row.setdefault(k, v)  # the root attributes win over the same name in the config
    row["trajectory"] = traj
    return row


def load(
    paths: PathSpec | Iterable[PathSpec],
    *,
    on_error: str = "raise",
) -> pd.DataFrame:
    """Read trajectory logs into a DataFrame with one row per run.

    Columns: :data:`ID_COLUMNS` (``file``, ``algorithm``, ``compressor``,
    ``collective``, ``problem``, ``dataset``, ``n_ranks``, ``seed``,
    ``status``), ``rows`` (complete trajectory rows), the root attributes
    ``stop_reason``, ``message``, ``f_star``, ``L``, ``mu``, ``started_at``,
    ``finished_at`` where present, ``self_quantizing`` (see
    :func:`self_quantizing`), every key of the run's config flattened
    with dots (``hyperparameters.levels``, ``problem_info.L``; a root
    attribute wins over a config key of the same name), and ``trajectory``:
    a dict of the run's columns as NumPy arrays (complete rows only, so a
    log still being written, or cut off by a crash, reads consistently).

    Args:
        paths: files, directories (searched recursively) and globs.
        on_error: ``"raise"`` stops at the first unreadable or foreign file;
            ``"warn"`` skips it with a warning.

    Raises:
        FileNotFoundError: see :func:`find_logs`.
        ecmpi.log.SchemaError: a file that is not an ecmpi log, another schema
            version, or not readable as HDF5.
        ValueError: bad ``on_error``, or ``"warn"`` left no log.
    """
    if on_error not in ("raise", "warn"):
        raise ValueError(f"on_error must be 'raise' or 'warn', got {on_error!r}")
    rows = []
    for path in find_logs(paths):
        try:
            rows.append(_run_row(path))
        except (OSError, ValueError) as exc:
            if on_error == "raise":
                raise
            warnings.warn(f"skipping {path}: {exc}", RuntimeWarning, stacklevel=2)
    if not rows:
        raise ValueError("none of the given files is a readable ecmpi log")
    df = pd.DataFrame(rows)
    first = [c for c in (*ID_COLUMNS, "rows") if c in df.columns]
    rest = [c for c in df.columns if c not in first and c != "trajectory"]
    return df[[*first, *rest, "trajectory"]]


def as_frame(data: Any) -> pd.DataFrame:
    """``data`` if it is a frame from :func:`load`, else ``load(data)``.

    A frame without the ``self_quantizing`` column gets it from its
    ``algorithm`` column (:func:`self_quantizing` of a log without the attribute).
    """
    if isinstance(data, pd.DataFrame):
        if "trajectory" not in data.columns or "file" not in data.columns:
            raise ValueError(
                "expected a DataFrame from ecmpi.analyze.load (with 'file' and 'trajectory')"
            )
        if data.empty:
            raise ValueError("the DataFrame holds no runs")
        if "self_quantizing" not in data.columns:
            flags = [self_quantizing({"algorithm": a}) for a in data["algorithm"]]
            data = data.assign(self_quantizing=flags)
        return data
    return load(data)
