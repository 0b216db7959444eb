"""Byte transport: payload buffers through MPI collectives, with accounting.

Every function moves 1-D uint8 buffers (NumPy, or CuPy: passed to MPI
directly when MPI is GPU-aware, else staged through host memory, see
:mod:`ecmpi._backend`) and records bytes, messages and communicate time in a
:class:`CommStats`. Buffers whose sizes are known on every rank in advance
(fixed-size codecs) are exchanged in one call; otherwise the sizes travel
first (the ``v`` variants of the collectives).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import array_module, from_mpi_buffer, mpi_buffer, mpi_empty
from .stats import CommStats

__all__ = ["allgather_bytes", "alltoallv_bytes", "bcast_bytes", "gather_bytes"]


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


def alltoallv_bytes(
    send: list[Any], comm: Any, stats: CommStats, recv_sizes: list[int] | None = None
) -> list[Any]:
    """Personalized exchange: rank ``j`` receives ``send[j]`` of every rank.

    ``send[j]`` may have zero length. Entry ``comm.rank`` never crosses MPI:
    the returned list holds this rank's own ``send[rank]`` at that position.

    Args:
        send: one buffer per destination rank.
        recv_sizes: the sizes this rank will receive from each rank, if known.

    Returns:
        ``recv[i]``: the buffer rank ``i`` addressed to this rank.
    """
    size, rank = comm.size, comm.rank
    if len(send) != size:
        raise ValueError(f"alltoallv needs one buffer per rank ({size}), got {len(send)}")
    send_sizes = [0 if j == rank else int(b.shape[0]) for j, b in enumerate(send)]
    like = send[rank]
    with stats.timer("communicate"):
        if recv_sizes is None:
            rs = np.empty(size, dtype=np.int64)
            comm.Alltoall(np.array(send_sizes, dtype=np.int64), rs)
            recv_sizes = [int(v) for v in rs]
        recv_sizes = [0 if i == rank else int(v) for i, v in enumerate(recv_sizes)]
        parts = [b for j, b in enumerate(send) if j != rank and send_sizes[j]]
        if parts:
            sendbuf = mpi_buffer(array_module(parts[0]).concatenate(parts))
        else:
            sendbuf = np.empty(0, dtype=np.uint8)
        recv = mpi_empty(sum(recv_sizes), like)
        comm.Alltoallv(
            [sendbuf, (send_sizes, _offsets(send_sizes)), _byte()],
            [recv, (recv_sizes, _offsets(recv_sizes)), _byte()],
        )
        out = _split(from_mpi_buffer(recv, like), recv_sizes)
    out[rank] = send[rank]
    stats.sent(sum(send_sizes), messages=sum(1 for s in send_sizes if s))
    stats.received(sum(recv_sizes))
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
