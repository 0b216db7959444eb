"""How the tests find the MPI launcher and the environment its jobs run in."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


def _mpiexec() -> str:
    """``mpiexec`` beside the running Python (the MPICH wheel's), else on ``PATH``."""
    exe = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if exe is None:
        pytest.fail("mpiexec not found: install the 'mpich' extra (pip install -e .[test])")
    return exe


def mpi_env(timeout: int, **extra: str) -> dict[str, str]:
    """The test's environment with MPICH's job timeout and one thread per rank."""
    return dict(os.environ, MPIEXEC_TIMEOUT=str(timeout), OMP_NUM_THREADS="1", **extra)
