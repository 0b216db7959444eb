"""Uncompressed allreduce through the MPI library's own ``MPI_Allreduce``.

With the identity compressor (``none``, and for ``ps`` a downlink that is
``none`` or unset) :func:`ecmpi.allreduce` hands the vector to
``comm.Allreduce(SUM)`` whatever collective was named: the library's
algorithm (MPICH: recursive doubling for short vectors, Rabenseifner's
reduce-scatter plus allgather for long ones) is at least as fast as ecmpi's
schedules with nothing to compress, so turning compression off costs
nothing. Every rank gets the same bits (each entry of the sum is computed
once and copied, or combined by the same commutative additions on every
rank).

Bytes are still counted, as the named collective would have moved them with
the ``none`` codec (:func:`traffic`: its payloads, headers included), so a
log's ``bits_up``/``bits_down`` do not depend on which path ran. A sum that
is not finite (a NaN/Inf input, a float32 overflow) is not returned: the
caller reruns the named collective, whose in-band failure markers make every
rank raise the same error naming the rank(s).
"""

from __future__ import annotations

from typing import Any

from .._backend import (
    array_module,
    from_mpi_buffer,
    gpu_aware_mpi,
    is_device_array,
    mpi_buffer,
    mpi_empty,
    synchronize,
)
from ..compress.base import Compressor
from .common import chunk_bounds, wire_size
from .stats import CommStats

__all__ = ["finite", "native_allreduce", "traffic"]


def _segments_bytes(c: Compressor, a: int, b: int, segment: int, dtype: Any) -> tuple[int, int]:
    """Payload bytes and messages of chunk ``[a, b)`` cut into ``segment``-entry payloads."""
    nbytes = msgs = 0
    for s in range(a, b, segment):
        nbytes += wire_size(c, min(s + segment, b) - s, dtype)
        msgs += 1
    return nbytes, msgs


def traffic(
    name: str, c: Compressor, d: int, size: int, rank: int, dtype: Any, **options: Any
) -> CommStats:
    """The bytes and messages the collective ``name`` records for one call with ``c``.

    Exact for ``allgather``, ``sra``, ``ring`` and ``ps`` (their transport
    records, for a fixed-size codec); any other collective is counted as the
    bandwidth-optimal exchange (``sra``'s).
    """
    st = CommStats()
    if size == 1:
        return st
    if name == "allgather":
        w = wire_size(c, d, dtype)
        st.sent(w * (size - 1), messages=size - 1)
        st.received(w * (size - 1))
    elif name == "ps":
        root = int(options.get("root", 0))
        down = options.get("downlink") or c
        up, dn = wire_size(c, d, dtype), wire_size(down, d, dtype)
        if rank == root:
            st.received((size - 1) * up)
            st.sent((size - 1) * dn, messages=size - 1)
            st.bytes_up, st.bytes_down = (size - 1) * up, (size - 1) * dn
        else:
            st.sent(up)
            st.received(dn)
            st.bytes_up, st.bytes_down = up, dn
    elif name == "ring":
        seg = int(options.get("segment", 1 << 18))
        per = [_segments_bytes(c, a, b, seg, dtype) for a, b in chunk_bounds(d, size)]
        for s in range(size - 1):  # reduce-scatter hops, then allgather hops
            for j_out, j_in in (
                ((rank - s - 1) % size, (rank - s - 2) % size),
                ((rank - s) % size, (rank - s - 1) % size),
            ):
                st.sent(per[j_out][0], messages=per[j_out][1])
                st.received(per[j_in][0])
    else:  # sra and the bandwidth-optimal default
        w = [wire_size(c, b - a, dtype) for a, b in chunk_bounds(d, size)]
        others = [j for j in range(size) if j != rank]
        st.sent(sum(w[j] for j in others), messages=sum(1 for j in others if w[j]))
        st.sent((size - 1) * w[rank], messages=size - 1 if w[rank] else 0)
        st.received((size - 1) * w[rank] + sum(w[j] for j in others))
    return st


def native_allreduce(x: Any, comm: Any, *, average: bool, stats: CommStats, out: Any = None) -> Any:
    """``comm.Allreduce(x, SUM)`` (divided by P when averaging) on ``x``'s backend, into
    ``out`` when given (a buffer that shares no memory with ``x``).

    CuPy arrays go to MPI directly under a GPU-aware MPI, else through host
    memory (then copied into ``out``).
    """
    from mpi4py import MPI

    with stats.timer("communicate"):
        send = mpi_buffer(x)
        if out is not None and (not is_device_array(out) or gpu_aware_mpi()):
            synchronize(out)
            comm.Allreduce(send, out, op=MPI.SUM)
            y = out
        else:
            recv = mpi_empty(x.shape[0] * x.dtype.itemsize, x).view(x.dtype)
            comm.Allreduce(send, recv, op=MPI.SUM)
            y = from_mpi_buffer(recv, x)
            if out is not None:
                out[...] = y
                y = out
    if average and comm.size > 1:
        with stats.timer("decode"):
            y /= comm.size
    return y


def finite(y: Any) -> bool:
    """Whether every entry of ``y`` is finite (the same answer on every rank for a sum).

    ``y . y`` first (one BLAS pass, no temporary): finite implies every entry finite;
    NaN/Inf, or an overflow of the squares, falls back to the entrywise test.
    """
    xp = array_module(y)
    return bool(xp.isfinite(xp.dot(y, y))) or bool(xp.isfinite(y).all())
