"""Error channel of ``ecmpi run``: an exception on any rank leaves rank 0's log ``failed``.

Rank 0 writes the log, but an exception on another rank ends the job with
``MPI_Abort``, which would kill rank 0 while it waits in a collective and
leave the log's ``status`` at ``running``. The channel avoids that:

1. :func:`open_channel` (collective) duplicates the communicator; rank 0
   starts a daemon thread that posts one ``Irecv`` (any source, tag
   :data:`TAG_ERROR`) on the duplicate and polls it with ``Test`` every
   :data:`POLL_SECONDS`.
2. A failing rank ``r != 0`` calls :func:`report_failure` with its message
   (after printing it): it sends the message to rank 0 and waits up to
   ``timeout`` seconds for a one-byte acknowledgement (tag :data:`TAG_ACK`).
3. Rank 0's thread marks the attached :class:`~ecmpi.log.TrajectoryWriter`
   ``failed`` with ``message = "on rank r: ..."`` (``writer.mark_failed``),
   acknowledges, and aborts the job (``MPI_Abort``) without printing.

A normal end (:func:`close_channel`, on every rank) stops the thread, cancels
its pending receive and frees the duplicate; it costs well under 0.1 s.

Limitation: the thread calls MPI while the main thread may be inside a
collective, which needs ``MPI_THREAD_MULTIPLE`` (mpi4py's default request).
Where ``MPI.Query_thread()`` reports less, no thread is started and the
channel does nothing: an exception on a rank other than 0 then leaves the
log at ``running`` (its rows intact), as without the channel.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "POLL_SECONDS",
    "TAG_ACK",
    "TAG_ERROR",
    "ErrorChannel",
    "active_channel",
    "close_channel",
    "open_channel",
    "report_failure",
]

TAG_ERROR = 7101
TAG_ACK = 7102
#: polling period of rank 0's thread (also the longest wait for a report to be seen)
POLL_SECONDS = 0.05
_MAX_BYTES = 4096  # a report longer than this is cut (UTF-8, at a character boundary)

_active: ErrorChannel | None = None


def _abort_world(code: int) -> None:
    from mpi4py import MPI

    sys.stdout.flush()
    sys.stderr.flush()
    MPI.COMM_WORLD.Abort(code)


class ErrorChannel:
    """Error reports from any rank to rank 0 on a private duplicate of ``comm``.

    Args:
        comm: an mpi4py intracommunicator (duplicated here: collective).
        abort: called by rank 0's thread after marking the log and acknowledging
            (default: ``MPI_Abort(1)`` on ``COMM_WORLD``).

    Attributes:
        enabled: False with one rank or below ``MPI_THREAD_MULTIPLE``; then
            :meth:`report` returns False at once and nothing is marked.
        received: the reports rank 0's thread handled, as ``(rank, message)``.
    """

    def __init__(self, comm: Any, *, abort: Callable[[int], None] | None = None):
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm.Dup()
        self.rank = self.comm.rank
        self.enabled = self.comm.size > 1 and MPI.Query_thread() >= MPI.THREAD_MULTIPLE
        self.received: list[tuple[int, str]] = []
        self._abort = abort or _abort_world
        self._lock = threading.Lock()
        self._writer: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        if self.enabled and self.rank == 0:
            self._buf = bytearray(_MAX_BYTES)
            self._req = self.comm.Irecv([self._buf, MPI.BYTE], source=MPI.ANY_SOURCE, tag=TAG_ERROR)
            self._thread = threading.Thread(
                target=self._watch, name="ecmpi-error-channel", daemon=True
            )
            self._thread.start()

    # -- rank 0 ---------------------------------------------------------------------------
    def attach(self, writer: Any) -> None:
        """Rank 0: the log writer to mark ``failed`` when another rank reports an error."""
        with self._lock:
            self._writer = writer

    def _watch(self) -> None:
        status = self._MPI.Status()
        while not self._stop.is_set():
            if self._req.Test(status):
                self._handle(status.Get_source(), status.Get_count(self._MPI.BYTE))
                return
            self._stop.wait(POLL_SECONDS)

    def _handle(self, source: int, nbytes: int) -> None:
        text = bytes(self._buf[:nbytes]).decode("utf-8", errors="replace")
        self.received.append((source, text))
        with self._lock:
            writer = self._writer
        if writer is not None:
            try:
                writer.mark_failed(f"on rank {source}: {text}")
            except Exception:  # the log cannot be written (e.g. full disk): still abort
                pass
        try:
            self.comm.Send([bytearray(1), self._MPI.BYTE], dest=source, tag=TAG_ACK)
        finally:
            self._abort(1)

    # -- other ranks ------------------------------------------------------------------------
    def report(self, message: str, timeout: float = 5.0) -> bool:
        """Send ``message`` to rank 0 and wait up to ``timeout`` s for its acknowledgement.

        Returns True once rank 0 acknowledged (the log is marked ``failed``), False
        on rank 0, when the channel is disabled or closed, or after the timeout.
        """
        if not self.enabled or self.rank == 0 or self._closed:
            return False
        MPI = self._MPI
        data = message.encode("utf-8")[:_MAX_BYTES].decode("utf-8", errors="ignore").encode()
        ack = bytearray(1)
        rreq = self.comm.Irecv([ack, MPI.BYTE], source=0, tag=TAG_ACK)
        sreq = self.comm.Isend([data, MPI.BYTE], dest=0, tag=TAG_ERROR)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if rreq.Test():
                return True
            time.sleep(0.01)
        for req in (rreq, sreq):
            try:
                req.Cancel()
            except Exception:
                pass
        return False

    # -- every rank ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop rank 0's thread, cancel its receive and free the duplicate (no MPI sync)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            if not self.received:
                self._req.Cancel()
                self._req.Wait()
        with self._lock:
            self._writer = None
        self.comm.Free()


def open_channel(comm: Any, **kw: Any) -> ErrorChannel:
    """Collective over ``comm``: open the channel :func:`report_failure` uses (see the module)."""
    global _active
    close_channel()
    _active = ErrorChannel(comm, **kw)
    return _active


def active_channel() -> ErrorChannel | None:
    """The channel opened by :func:`open_channel` and not yet closed, or None."""
    return _active


def report_failure(message: str, timeout: float = 5.0) -> bool:
    """On a rank other than 0: hand ``message`` to rank 0 (see :meth:`ErrorChannel.report`)."""
    ch = _active
    return ch.report(message, timeout) if ch is not None else False


def close_channel() -> None:
    """Close the active channel, if any (every rank, on a normal end)."""
    global _active
    ch, _active = _active, None
    if ch is not None:
        ch.close()
