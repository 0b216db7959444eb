"""Session setup shared by every test module."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

# the tests' shared helpers (_launch, _waiting, _tmpfs) import as top-level modules
sys.path.insert(0, str(Path(__file__).parent))

#: set by mpiexec in each rank (MPICH, Open MPI): ranks load the kernels from the cache
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK")


def pytest_sessionstart(session) -> None:
    """Compile the fused CPU kernels once, in this process, before any test starts ranks.

    numba caches compiled kernels on disk beside the package, and every later
    process loads them from there. Without this, the first multi-rank test of a
    fresh checkout has each of its ranks compile the same kernels at the same
    time on shared cores. The kernels and what the tests check are unchanged.
    """
    from ecmpi import compressor
    from ecmpi.compress import _fused

    if not _fused.enabled() or any(v in os.environ for v in _RANK_VARS):
        return
    for dtype in (np.float32, np.float64):
        like = np.zeros(8, dtype=dtype)
        for spec in ("qsgd:levels=1", "sign", "randk:k=2", "qsgd:levels=2,coding=elias"):
            compressor(spec).warm_up(like)
