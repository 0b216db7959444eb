"""Runs each file of ``tests/mpi/`` under real ``mpiexec`` with 1, 2, 3 and 4 ranks.

Every MPI test file is written to pass for any number of ranks. One pytest
item per (file, rank count); each job has a hard timeout (``MPIEXEC_TIMEOUT``
for MPICH's launcher plus a subprocess timeout), and a failure on one rank
aborts the job (see ``tests/mpi/conftest.py``), so nothing hangs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _launch import _mpiexec as mpiexec

HERE = Path(__file__).parent
MPI_FILES = sorted((HERE / "mpi").glob("test_*.py"))
RANKS = [int(n) for n in os.environ.get("ECMPI_TEST_RANKS", "1,2,3,4").split(",")]
TIMEOUT = int(os.environ.get("ECMPI_MPI_TIMEOUT", "240"))


@pytest.mark.mpi
@pytest.mark.parametrize("nranks", RANKS, ids=[f"np{n}" for n in RANKS])
@pytest.mark.parametrize("path", MPI_FILES, ids=[p.stem for p in MPI_FILES])
def test_under_mpiexec(path: Path, nranks: int, tmp_path: Path):
    env = dict(
        os.environ,
        MPIEXEC_TIMEOUT=str(TIMEOUT),
        PYTHONUNBUFFERED="1",
        ECMPI_TEST_TMP=str(tmp_path),
        OMP_NUM_THREADS="1",
    )
    cmd = [
        mpiexec(),
        "-n",
        str(nranks),
        sys.executable,
        "-m",
        "mpi4py",
        "-m",
        "pytest",
        str(path),
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "--timeout",
        str(TIMEOUT - 10),
        "--timeout-method",
        "thread",
        "--rootdir",
        str(HERE.parent),
    ]
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT + 30, cwd=HERE.parent
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{path.name} under {nranks} ranks exceeded {TIMEOUT + 30}s:\n{exc.stdout}")
    if proc.returncode != 0:
        pytest.fail(
            f"{path.name} failed under mpiexec -n {nranks} (exit {proc.returncode})\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    assert " passed" in proc.stdout, proc.stdout[-3000:]
