"""Runs inside every rank of ``mpiexec -n P python -m mpi4py -m pytest tests/mpi/...``.

- Only rank 0 reports to the terminal; other ranks stay quiet.
- A failed test on any rank prints its traceback to stderr (tagged with the
  rank) and aborts the whole job with ``MPI_Abort``, so the other ranks never
  wait forever in a collective. The launcher in ``tests/test_mpi.py`` sees a
  non-zero exit and shows the output.
"""

from __future__ import annotations

import sys

import pytest
from mpi4py import MPI

COMM = MPI.COMM_WORLD


def pytest_configure(config):
    if COMM.rank != 0:
        config.option.verbose = -1
        tr = config.pluginmanager.getplugin("terminalreporter")
        if tr is not None:
            config.pluginmanager.unregister(tr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        sys.stderr.write(
            f"\n[rank {COMM.rank}/{COMM.size}] FAILED {item.nodeid} ({report.when})\n"
            f"{report.longreprtext}\n"
        )
        sys.stderr.flush()
        COMM.Abort(1)


@pytest.fixture
def comm():
    """A fresh duplicate of COMM_WORLD for the test (freed afterwards)."""
    c = COMM.Dup()
    yield c
    c.Free()
