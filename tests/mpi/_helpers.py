"""Helpers shared by the MPI test files (imported after adding this directory to sys.path)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from ecmpi.algorithms import counted_step


def mean_rank_order(comm: Any, v: np.ndarray) -> np.ndarray:
    """(1/P) sum_tau v_tau, added in rank order: what the allgather collective computes."""
    acc = np.zeros_like(v)
    for u in comm.allgather(v):
        acc += u
    acc /= comm.size
    return acc


def trajectory(alg: Any, steps: int) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Run ``steps`` steps of ``alg``: the iterates and ``(bits_up, bits_down)`` after each."""
    xs, costs = [], []
    for t in range(steps):
        c = counted_step(alg, t)
        xs.append(alg.x.copy())
        costs.append((c.bits_up, c.bits_down))
    return xs, costs


def shared_tmpdir(comm: Any) -> str:
    """A directory every rank agrees on: ``$ECMPI_TEST_TMP`` or one made by rank 0."""
    base = os.environ.get("ECMPI_TEST_TMP")
    if base is None:
        base = comm.bcast(tempfile.mkdtemp() if comm.rank == 0 else None, root=0)
    return base


def log_path(comm: Any, name: str) -> str:
    """``<shared_tmpdir>/<name>-np<P>.h5``."""
    return os.path.join(shared_tmpdir(comm), f"{name}-np{comm.size}.h5")
