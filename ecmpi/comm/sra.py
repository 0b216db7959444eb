"""``sra``: scatter-reduce-allgather with two-level error feedback.

The pattern of 1-bit Adam (Tang et al. 2021) and CGX (Markov et al. 2022):

1. Split ``x`` into P chunks whose lengths differ by at most one (chunks are
   empty when d < P; an empty chunk is never encoded or sent).
2. Encode chunk ``j`` (worker residual, slice ``j``), seed ``(seed..., 1, j)``
   and ``rank``.
3. ``Alltoallv``: rank ``j`` receives every rank's payload of chunk ``j``.
4. The owner decodes and adds them in rank order, divides by P when
   averaging, adds its server residual and re-encodes, seed
   ``(seed..., 1, j)`` with worker id ``P + j`` (RandK keeps the coordinates
   of step 2; stochastic rounding gets its own stream).
5. ``Allgatherv`` of the re-encoded chunks; every rank, the owner included,
   decodes them, so all ranks hold the same bits.

Wire volume per rank: ``2(P-1)/P`` of one encoded vector, the bandwidth optimum.

Cost per call (:func:`counts`, for :mod:`ecmpi.bench.model`; ``w(m)`` the
payload bytes of ``m`` entries): ``2(P-1)`` messages, ``2(P-1) w(n/P)`` bytes
per link, ``n + n/P`` entries encoded, ``2n`` decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._backend import array_module
from ..compress.base import Compressor
from ..compress.payload import Payload
from .common import chunk_bounds, fixed_size, wire_size
from .failures import Failures
from .registry import Counts, register
from .residuals import CollectiveFeedback, compensated_encode
from .stats import CommStats
from .transport import allgather_bytes, alltoallv_bytes

__all__ = ["counts", "sra_allreduce", "sra_nbytes"]

PHASE = 1


def counts(n: float, P: int, wire: Callable[[float], float]) -> Counts:
    """Messages, bytes per link, entries encoded and decoded of one call (module docstring)."""
    m = n / P
    return Counts(2.0 * (P - 1), 2.0 * (P - 1) * wire(m), n + m, 2.0 * n)


@register("sra", id=2, counts=counts)
def sra_allreduce(
    x: Any,
    c: Compressor,
    comm: Any,
    *,
    average: bool,
    seed: tuple[int, ...],
    feedback: CollectiveFeedback | None,
    stats: CommStats,
) -> Any:
    """Sum (or mean) of ``x`` over ``comm`` by scatter-reduce-allgather (module docstring)."""
    size, rank = comm.size, comm.rank
    d = x.shape[0]
    xp = array_module(x)
    bounds = chunk_bounds(d, size)
    lengths = [b - a for a, b in bounds]
    empty = xp.empty(0, dtype=xp.uint8)
    hw = feedback.residual("worker", d, x) if feedback is not None else None
    fixed = fixed_size(c)
    fail = Failures(comm, x, "sra")

    def wire(j: int) -> int | None:
        return wire_size(c, lengths[j], x.dtype) if fixed else None

    send = []
    with stats.timer("encode"):
        for j, (a, b) in enumerate(bounds):
            h = hw[a:b] if hw is not None else None
            p = None
            if a < b:
                p = fail.run(
                    "encode its input",
                    compensated_encode,
                    c,
                    x[a:b],
                    h,
                    seed=(*seed, PHASE, j),
                    rank=rank,
                )
            send.append(p.buf if p is not None else empty)
        if fail.any:  # every owner hears of it in this exchange
            send = [fail.marker(wire(j)) if n else empty for j, n in enumerate(lengths)]
    recv = alltoallv_bytes(send, comm, stats, [wire(rank)] * size if fixed else None)

    a, b = bounds[rank]
    mine = empty
    if b > a:
        with stats.timer("decode"):
            acc = xp.zeros(b - a, dtype=x.dtype)
            for i, buf in enumerate(recv):
                fail.decode(f"decode the payload of rank {i}", c, buf, b - a, acc=acc)
            if average and not fail.any:
                acc /= size
        hs = feedback.residual("server", b - a, x) if feedback is not None else None
        with stats.timer("encode"):
            _, mine = fail.encode(
                f"encode the reduced chunk {rank}",
                wire(rank),
                compensated_encode,
                c,
                acc,
                hs,
                seed=(*seed, PHASE, rank),
                rank=size + rank,
            )

    bufs = allgather_bytes(mine, comm, stats, [wire(j) for j in range(size)] if fixed else None)
    for buf in bufs:
        fail.seen(buf)
    fail.check()
    with stats.timer("decode"):
        out = xp.empty(d, dtype=x.dtype)
        for (a, b), buf in zip(bounds, bufs):
            if b > a:
                c.decode(Payload.from_bytes(buf, n=b - a), out=out[a:b])
    return out


def sra_nbytes(c: Compressor, d: int, size: int, rank: int, dtype: Any = np.float32) -> int:
    """Payload bytes one rank sends (= receives) in one ``sra`` call with a fixed-size codec."""
    lengths = [b - a for a, b in chunk_bounds(d, size)]
    others = sum(wire_size(c, n, dtype) for j, n in enumerate(lengths) if j != rank)
    return others + (size - 1) * wire_size(c, lengths[rank], dtype)
