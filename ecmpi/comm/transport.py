"""Byte transport: payload buffers through MPI collectives, with accounting.

Every function moves 1-D uint8 buffers (NumPy, or CuPy: passed to MPI
directly when MPI is GPU-aware, else staged through host memory, see
:mod:`ecmpi._backend`) and records bytes, messages and communicate time in a
:class:`CommStats`. Buffers whose sizes are known on every rank in advance
(fixed-size codecs) are exchanged in one call; otherwise the sizes travel
first (the ``v`` variants of the collectives). :class:`Messages` holds the
nonblocking point-to-point messages of the pipelined collectives (``sra``,
``ring``, ``sra-int``, ``ring-int``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .._backend import from_mpi_buffer, mpi_buffer, mpi_empty
from .stats import CommStats

__all__ = ["Messages", "allgather_bytes", "bcast_bytes", "gather_bytes"]


def _byte():
    from mpi4py import MPI

    return MPI.BYTE


def _offsets(sizes: list[int]) -> list[int]:
    return [int(v) for v in np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)[:-1]])]


def _split(buf: Any, sizes: list[int]) -> list[Any]:
    offs = _offsets(sizes)
    return [buf[o : o + s] for o, s in zip(offs, sizes)]


def allgather_bytes(
    buf: Any, comm: Any, stats: CommStats, sizes: list[int] | None = None
) -> list[Any]:
    """Every rank's buffer, in rank order, on every rank.

    Args:
        buf: this rank's bytes.
        comm: the (library-owned) communicator.
        stats: where bytes and time are recorded.
        sizes: every rank's buffer size if known in advance (else exchanged).
    """
    size, rank = comm.size, comm.rank
    with stats.timer("communicate"):
        if sizes is None:
            mine = np.array([buf.shape[0]], dtype=np.int64)
            all_sizes = np.empty(size, dtype=np.int64)
            comm.Allgather(mine, all_sizes)
            sizes = [int(v) for v in all_sizes]
        if sizes[rank] != buf.shape[0]:
            raise ValueError(f"buffer holds {buf.shape[0]} bytes, {sizes[rank]} announced")
        send = mpi_buffer(buf)
        recv = mpi_empty(sum(sizes), buf)
        if len(set(sizes)) == 1:
            comm.Allgather([send, _byte()], [recv, _byte()])
        else:
            comm.Allgatherv([send, _byte()], [recv, (sizes, _offsets(sizes)), _byte()])
        out = _split(from_mpi_buffer(recv, buf), sizes)
    stats.sent(buf.shape[0] * (size - 1), messages=size - 1)
    stats.received(sum(sizes) - sizes[rank])
    return out


def gather_bytes(buf: Any, comm: Any, root: int, stats: CommStats) -> list[Any] | None:
    """Every rank's buffer at ``root`` (in rank order); None elsewhere.

    Records the traffic as parameter-server uplink (``bytes_up``).
    """
    size, rank = comm.size, comm.rank
    with stats.timer("communicate"):
        mine = np.array([buf.shape[0]], dtype=np.int64)
        all_sizes = np.empty(size, dtype=np.int64) if rank == root else None
        comm.Gather(mine, all_sizes, root=root)
        send = mpi_buffer(buf)
        if rank == root:
            sizes = [int(v) for v in all_sizes]
            recv = mpi_empty(sum(sizes), buf)
            comm.Gatherv([send, _byte()], [recv, (sizes, _offsets(sizes)), _byte()], root=root)
            out = _split(from_mpi_buffer(recv, buf), sizes)
            out[root] = buf
        else:
            comm.Gatherv([send, _byte()], None, root=root)
            out = None
    if rank == root:
        got = sum(int(b.shape[0]) for b in out) - int(buf.shape[0])
        stats.received(got)
        stats.bytes_up += got
    else:
        stats.sent(buf.shape[0])
        stats.bytes_up += int(buf.shape[0])
    return out


def bcast_bytes(buf: Any, comm: Any, root: int, stats: CommStats, like: Any = None) -> Any:
    """Root's buffer on every rank. ``buf`` is ignored except at root.

    ``like`` picks the backend of the result on non-root ranks (default NumPy).
    Records the traffic as parameter-server downlink (``bytes_down``).
    """
    size, rank = comm.size, comm.rank
    with stats.timer("communicate"):
        n = np.array([buf.shape[0] if rank == root else 0], dtype=np.int64)
        comm.Bcast(n, root=root)
        nbytes = int(n[0])
        if rank == root:
            comm.Bcast([mpi_buffer(buf), _byte()], root=root)
            out = buf
        else:
            recv = mpi_empty(nbytes, like)
            comm.Bcast([recv, _byte()], root=root)
            out = from_mpi_buffer(recv, like)
    if rank == root:
        stats.sent(nbytes * (size - 1), messages=size - 1)
        stats.bytes_down += nbytes * (size - 1)
    else:
        stats.received(nbytes)
        stats.bytes_down += nbytes
    return out


class Messages:
    """Nonblocking point-to-point byte messages with accounting.

    Receives are posted early (:meth:`post`, known sizes) and completed later
    (:meth:`wait`, :meth:`wait_any`), so a collective encodes or decodes while
    its messages travel; a receive of unknown size is probed when waited on.
    Sends (:meth:`send`) stay in flight until :meth:`finish`, which keeps their
    buffers alive. Time inside MPI calls is the ``communicate`` phase.

    Args:
        comm: the (library-owned) communicator.
        stats: where bytes, messages and time are recorded.
        like: an array on the backend received buffers belong to (default NumPy).
    """

    def __init__(self, comm: Any, stats: CommStats, like: Any = None):
        self.comm, self.stats, self.like = comm, stats, like
        self.sends: list[tuple[Any, Any]] = []

    def post(self, source: int, nbytes: int | None, tag: int) -> Any:
        """A receive from ``source``: posted now for ``nbytes`` bytes, probed at :meth:`wait`
        when None. Returns a handle (None for this rank itself or zero bytes)."""
        from mpi4py import MPI

        if source == self.comm.rank or nbytes == 0:
            return None
        if nbytes is None:
            return (None, None, source, tag)
        with self.stats.timer("communicate"):
            buf = mpi_empty(nbytes, self.like)
            return (self.comm.Irecv([buf, MPI.BYTE], source=source, tag=tag), buf, source, tag)

    def send(self, buf: Any, dest: int, tag: int) -> None:
        """Start sending ``buf`` to ``dest`` (nothing for an empty buffer)."""
        from mpi4py import MPI

        if buf.shape[0] == 0:
            return
        with self.stats.timer("communicate"):
            host = mpi_buffer(buf)
            self.sends.append((self.comm.Isend([host, MPI.BYTE], dest=dest, tag=tag), host))
            MPI.Request.Testall([r for r, _ in self.sends])  # lets earlier sends progress
        self.stats.sent(buf.shape[0])

    def wait(self, handle: Any) -> Any:
        """The received bytes of ``handle`` (on the backend of ``like``)."""
        from mpi4py import MPI

        req, buf, source, tag = handle
        with self.stats.timer("communicate"):
            if req is None:
                status = MPI.Status()
                self.comm.Probe(source=source, tag=tag, status=status)
                buf = mpi_empty(status.Get_count(MPI.BYTE), self.like)
                self.comm.Recv([buf, MPI.BYTE], source=source, tag=tag)
            else:
                req.Wait()
            out = from_mpi_buffer(buf, self.like)
        self.stats.received(out.shape[0])
        return out

    def send_all(self, buf: Any, tag: int) -> None:
        """Start sending ``buf`` to every other rank, ``rank+1`` first (so the ranks' first
        messages go to different peers)."""
        rank, size = self.comm.rank, self.comm.size
        for t in range(1, size):
            self.send(buf, (rank + t) % size, tag)

    def arrivals(self, handles: list[Any], among: list[int]) -> Iterator[int]:
        """The indices of ``among`` in the order their data is ready: this rank's own
        (no receive) first, then posted receives as they complete (:meth:`wait_any`),
        probed ones in order. :meth:`wait` of a yielded index does not block."""
        pending = list(among)
        while pending:
            if self.comm.rank in pending:
                j = self.comm.rank
            elif all(handles[k][0] is not None for k in pending):
                j = self.wait_any(handles, pending)
            else:
                j = pending[0]
            pending.remove(j)
            yield j

    def wait_any(self, handles: list[Any], among: list[int]) -> int:
        """The index (one of ``among``) of a posted receive that has completed, waiting for
        one; its :meth:`wait` is then free."""
        from mpi4py import MPI

        reqs = [handles[j][0] for j in among]
        with self.stats.timer("communicate"):
            k = MPI.Request.Waitany(reqs)
        _, buf, source, tag = handles[among[k]]
        handles[among[k]] = (MPI.REQUEST_NULL, buf, source, tag)
        return among[k]

    def finish(self) -> None:
        """Wait until every send has completed."""
        from mpi4py import MPI

        with self.stats.timer("communicate"):
            MPI.Request.Waitall([r for r, _ in self.sends])
        self.sends.clear()
