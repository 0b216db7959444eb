"""Polling helpers shared by the tests that wait on other processes (jobs, watchers)."""

from __future__ import annotations

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
