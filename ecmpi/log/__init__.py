"""HDF5 trajectory logs (schema ``ecmpi.trajectory/1``) and checkpoints inside them."""

from __future__ import annotations

from .writer import (
    BASE_COLUMNS,
    ROOT_ATTRS,
    SCHEMA,
    STATUSES,
    Checkpoint,
    SchemaError,
    TrajectoryLog,
    TrajectoryWriter,
    file_identity,
    load_checkpoint,
    mark_killed,
    open_log,
    pack_state,
    read_checkpoint,
    save_checkpoint,
    unpack_state,
)

__all__ = [
    "BASE_COLUMNS",
    "ROOT_ATTRS",
    "SCHEMA",
    "STATUSES",
    "Checkpoint",
    "SchemaError",
    "TrajectoryLog",
    "TrajectoryWriter",
    "file_identity",
    "load_checkpoint",
    "mark_killed",
    "open_log",
    "pack_state",
    "read_checkpoint",
    "save_checkpoint",
    "unpack_state",
]
