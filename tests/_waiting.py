"""Helpers shared by the tests that wait on other processes (jobs, watchers, lock holders)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import pytest

from ecmpi.log import TrajectoryLog, open_log


def wait_for(
    pred: Callable[[], bool],
    timeout: float,
    what: str,
    details: Callable[[], str] = lambda: "",
    poll: float = 0.2,
) -> None:
    """Poll ``pred`` until it holds; fail the test after ``timeout`` s naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{details()}")


def wait_for_status(path, status: str, timeout: float = 60.0) -> TrajectoryLog:
    """The log at ``path`` once its ``status`` is ``status`` (another process sets it)."""
    wait_for(
        lambda: open_log(path).status == status,
        timeout,
        f"{path} to say {status!r}",
        lambda: f"it says {open_log(path).status!r}",
        poll=0.1,
    )
    return open_log(path)


#: a reader's HDF5 file lock (HDF5 takes flock LOCK_SH for a read-only open), held a while
_HOLD_SHARED_LOCK = textwrap.dedent(
    """
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


def hold_shared_lock(path, seconds: float) -> subprocess.Popen:
    """A process holding a reader's lock on ``path`` for ``seconds``; returns once it holds it.

    The caller kills and waits for it.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_SHARED_LOCK, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc
