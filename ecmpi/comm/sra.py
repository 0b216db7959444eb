"""``sra``: scatter-reduce-allgather with two-level error feedback.

The pattern of 1-bit Adam (Tang et al. 2021) and CGX (Markov et al. 2022):

1. Split ``x`` into P chunks whose lengths differ by at most one (chunks are
   empty when d < P; an empty chunk is never encoded or sent).
2. Encode chunk ``j`` (worker residual, slice ``j``), seed ``(seed..., 1, j)``
   and ``rank``.
3. Rank ``j`` receives every rank's payload of chunk ``j``.
4. The owner decodes and adds them in rank order, divides by P when
   averaging, adds its server residual and re-encodes, seed
   ``(seed..., 1, j)`` with worker id ``P + j`` (RandK keeps the coordinates
   of step 2; stochastic rounding gets its own stream).
5. The owner sends the re-encoded chunk to every rank; every rank, the owner
   included, decodes it, so all ranks hold the same bits.

The exchange is pipelined with nonblocking point-to-point messages
(:class:`~ecmpi.comm.transport.Messages`): every receive of a fixed-size
codec is posted first; each rank encodes the chunks in the order ``rank+1,
rank+2, ..``, its own last, and sends each as soon as it is coded, so chunk
``j`` travels while chunk ``j+1`` is encoded; the owner re-encodes as soon as
its P payloads are in, and the gathered chunks are decoded in the order they
arrive (its own while the others travel). Payloads of data-dependent size
(Elias codes) are probed when they are waited on.

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
from .transport import Messages

__all__ = ["counts", "sra_allreduce", "sra_nbytes"]

PHASE = 1
_TAG_SCATTER, _TAG_GATHER = 11, 12


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
    hw = feedback.residual("worker", d, x) if feedback is not None else None
    fixed = fixed_size(c)
    fail = Failures(comm, x, "sra")
    link = Messages(comm, stats, x)

    def wire(j: int) -> int | None:
        return wire_size(c, lengths[j], x.dtype) if fixed else None

    # every receive of a known size is posted first: this rank's chunk from every rank,
    # then every reduced chunk (sizes that travel are probed when waited on)
    n_r = lengths[rank]
    scatter = [link.post(i, wire(rank), _TAG_SCATTER) if n_r else None for i in range(size)]
    gather = [link.post(j, wire(j), _TAG_GATHER) if m else None for j, m in enumerate(lengths)]

    # 1. encode chunk by chunk (owners rank+1, rank+2, ..., itself last), each sent as soon
    #    as it is coded; after a failure, markers of the same size in place of the payloads
    own = None
    for t in range(1, size + 1):
        j = (rank + t) % size
        a, b = bounds[j]
        if a == b:
            continue
        with stats.timer("encode"):
            h = hw[a:b] if hw is not None else None
            _, buf = fail.encode(
                "encode its input", wire(j), compensated_encode, c, x[a:b], h,
                seed=(*seed, PHASE, j), rank=rank,
            )  # fmt: skip
        if j == rank:
            own = buf
        else:
            link.send(buf, j, _TAG_SCATTER)

    # 2. the owner adds the P payloads of its chunk in rank order and re-encodes the sum
    mine = None
    if n_r:
        acc = xp.zeros(n_r, dtype=x.dtype)
        for i in range(size):
            buf = own if i == rank else link.wait(scatter[i])
            with stats.timer("decode"):
                fail.decode(f"decode the payload of rank {i}", c, buf, n_r, acc=acc)
        if average and not fail.any:
            acc /= size
        hs = feedback.residual("server", n_r, x) if feedback is not None else None
        with stats.timer("encode"):
            _, mine = fail.encode(
                f"encode the reduced chunk {rank}", wire(rank), compensated_encode, c, acc, hs,
                seed=(*seed, PHASE, rank), rank=size + rank,
            )  # fmt: skip
        link.send_all(mine, _TAG_GATHER)

    # 3. decode every reduced chunk as it arrives (the own one while the others travel)
    out = xp.empty(d, dtype=x.dtype)
    for j in link.arrivals(gather, [j for j in range(size) if lengths[j]]):
        buf = mine if j == rank else link.wait(gather[j])
        if not fail.seen(buf) and not fail.any:
            a, b = bounds[j]
            with stats.timer("decode"):
                c.decode(Payload.from_bytes(buf, n=b - a), out=out[a:b])
    link.finish()
    fail.check()
    return out


def sra_nbytes(c: Compressor, d: int, size: int, rank: int, dtype: Any = np.float32) -> int:
    """Payload bytes one rank sends (= receives) in one ``sra`` call with a fixed-size codec."""
    lengths = [b - a for a, b in chunk_bounds(d, size)]
    others = sum(wire_size(c, n, dtype) for j, n in enumerate(lengths) if j != rank)
    return others + (size - 1) * wire_size(c, lengths[rank], dtype)
