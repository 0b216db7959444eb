"""A watcher process that marks a run's log ``failed`` when its writer is killed.

A process killed by a signal cannot write its own log's status, and MPI
launchers end a job whose rank died by killing the others with SIGKILL (MPICH's
Hydra does; Slurm's ``srun`` after ``--kill-on-bad-exit``). Without help the log
would say ``running`` forever. So rank 0 of ``ecmpi run`` starts one small
process in its own session (the launcher's cleanup does not reach it), holding
the read end of a pipe whose write end only rank 0 has. The watcher blocks on
the pipe: at a normal end rank 0 writes ``done`` and the watcher exits; if the
pipe closes without it, rank 0 is gone, and the watcher calls
:func:`ecmpi.log.mark_killed`: status ``failed``, ``stop_reason`` ``killed``,
rows and checkpoints kept, so ``ecmpi run --resume`` continues from the newest
checkpoint. It touches only the file rank 0 wrote (same inode) and only while
that still says ``running``.

What it cannot cover: a node that loses power, or a batch system that kills the
job's whole process tree (Slurm's cgroup process tracking kills the watcher
too). Such logs stay ``running``; they still open and hold every flushed row.
Set ``ECMPI_LOG_WATCHER=0`` to not start the watcher.

The watcher writes to rank 0's stderr (the job's error output): when it cannot mark
the log (a damaged file), it says so there in one line and exits with status 1. It
also deletes the log's space reserve (:mod:`ecmpi.log.space`), which the dead writer
would have released.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["LogWatcher", "watch"]

_DONE = b"done"
# the watcher's program: wait for the pipe; import ecmpi only if the writer died
_PROGRAM = (
    "import sys\n"
    "if sys.stdin.buffer.read() != b'done':\n"
    "    from ecmpi.watcher import _on_writer_death\n"
    "    _on_writer_death(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))\n"
)


class LogWatcher:
    """The watcher of one log file, started by :func:`watch`; :meth:`release` at the end."""

    def __init__(self, proc: subprocess.Popen, pipe_fd: int):
        self._proc = proc
        self._fd: int | None = pipe_fd

    def release(self) -> None:
        """The run ended and its log is closed: tell the watcher to exit quietly."""
        if self._fd is None:
            return
        try:
            os.write(self._fd, _DONE)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()

    @property
    def pid(self) -> int:
        """The watcher's process id."""
        return self._proc.pid


def watch(path: str | os.PathLike) -> LogWatcher | None:
    """Start the watcher of the log at ``path`` (already created; rank 0 only).

    Returns None when ``ECMPI_LOG_WATCHER=0`` or the process cannot be started.
    """
    if os.environ.get("ECMPI_LOG_WATCHER", "1") == "0":
        return None
    from .log.crash import file_identity

    dev, ino = file_identity(path)
    read_fd, write_fd = os.pipe()  # both non-inheritable; only read_fd is passed on
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _PROGRAM, str(Path(path).resolve()), str(dev), str(ino)],
            stdin=read_fd,
            stdout=subprocess.DEVNULL,
            stderr=None,  # rank 0's: a failure to mark the log is seen, not lost
            start_new_session=True,
            close_fds=True,
        )
    except OSError:
        os.close(write_fd)
        return None
    finally:
        os.close(read_fd)
    return LogWatcher(proc, write_fd)


def _on_writer_death(path: str, dev: int, ino: int) -> None:
    from .log.crash import file_identity, mark_killed
    from .log.space import reserve_path

    try:
        if file_identity(path) == (dev, ino):  # not the reserve of a later run
            reserve_path(path).unlink(missing_ok=True)
    except OSError:
        pass
    try:
        mark_killed(
            path,
            "the process writing this log was killed (a signal, or the MPI launcher ending "
            "the job after another rank died); rows and checkpoints up to then are kept",
            identity=(dev, ino),
        )
    except Exception as exc:
        print(
            f"ecmpi log watcher: the writer of {path} died and the log could not be marked "
            f"failed: {type(exc).__name__}: {exc}",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(1)
