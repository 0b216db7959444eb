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

Modules:

- :mod:`~ecmpi.log.schema`: the schema's names, statuses, columns, attribute encoding.
- :mod:`~ecmpi.log.writer`: :class:`TrajectoryWriter` (SWMR, a row flushed at a time).
- :mod:`~ecmpi.log.reader`: :func:`open_log`, :class:`TrajectoryLog`.
- :mod:`~ecmpi.log.checkpoint`: packing the state, the two slots, save/load (collective).
- :mod:`~ecmpi.log.crash`: :func:`mark_killed` for the log of a killed writer.
- :mod:`~ecmpi.log.space`: the disk space reserved for a log's last writes (full disks).
"""

from __future__ import annotations

from .checkpoint import (
    Checkpoint,
    load_checkpoint,
    pack_state,
    read_checkpoint,
    save_checkpoint,
    unpack_state,
)
from .crash import file_identity, mark_killed
from .reader import TrajectoryLog, open_log
from .schema import BASE_COLUMNS, ROOT_ATTRS, SCHEMA, STATUSES, SchemaError
from .writer import TrajectoryWriter

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
