"""The log schema ``ecmpi.trajectory/1``: its names, statuses, columns and attribute encoding.

Root attributes are HDF5 scalars: numbers and strings as they are, booleans as 0/1,
None as ``"none"``, anything else as JSON; ``config`` is the JSON of every resolved
parameter. ``docs/hdf5.md`` describes every attribute and dataset.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import SchemaError

__all__ = [
    "BASE_COLUMNS",
    "ROOT_ATTRS",
    "SCHEMA",
    "STATUSES",
    "SchemaError",
    "check_schema",
    "decode_attr",
    "encode_attr",
    "encode_config",
    "utc_now",
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
#: the root attributes every log has from its creation
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


def utc_now() -> str:
    """The time stamp of ``started_at``/``finished_at``: UTC, ISO 8601, whole seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def encode_attr(v: Any) -> Any:
    """A Python value as a root attribute (None -> ``"none"``, bool -> int, other -> JSON)."""
    if v is None:
        return "none"
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, float, str, np.integer, np.floating)):
        return v
    return json.dumps(v, default=str)


def decode_attr(v: Any) -> Any:
    """A root attribute as read by h5py back to a Python value (bytes -> str, NumPy -> scalar)."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    return str(v)


def encode_config(config: Mapping[str, Any]) -> str:
    """The ``config`` attribute: sorted-key JSON (NumPy values as Python, the rest as str)."""
    return json.dumps(dict(config), sort_keys=True, default=_json_default)


def check_schema(f: h5py.File, path: Any) -> None:
    """Raise :class:`SchemaError` unless ``f`` is a log of this schema version."""
    schema = decode_attr(f.attrs.get("schema", None))
    if schema is None or not str(schema).startswith("ecmpi.trajectory/"):
        raise SchemaError(f"{path} is not an ecmpi trajectory log (no 'schema' attribute)")
    if schema != SCHEMA:
        raise SchemaError(f"{path} has schema {schema!r}; this ecmpi reads {SCHEMA!r}")
    if "trajectory" not in f or "step" not in f["trajectory"]:
        raise SchemaError(f"{path} has no trajectory/step dataset")
