"""``ring``: compressed ring reduce-scatter, then a ring allgather of encoded chunks.

With P ranks on a ring (rank ``r`` sends to ``r+1`` and receives from
``r-1``, modulo P) and ``x`` split into P chunks (lengths differing by at
most one):

1. Reduce-scatter, hops ``s = 0 .. P-2``: rank ``r`` encodes its partial sum
   of chunk ``(r-s-1) mod P`` (at hop 0 its own chunk; later the decoded
   partial sum it received plus its own chunk), with error feedback on the
   slice of that chunk in the worker residual, seed ``(seed..., 2, chunk,
   segment)`` and ``rank``, and sends it right. After P-1 hops rank ``r``
   holds the full sum of chunk ``r``.
2. The owner divides by P when averaging, adds its server residual and
   encodes the chunk once more (worker id ``P + r``).
3. Allgather around the ring: the encoded chunks are forwarded P-1 times
   without re-encoding; every rank decodes every chunk (its own included).

Chunks are cut into segments of ``segment`` entries, each its own payload
and message (``Isend``/``Irecv``), so the encoding of one segment overlaps
the transfer of the previous one and a hop starts before the previous hop
ended. Every rank sends and receives ``2(P-1)/P`` of one encoded vector, but
the reduce-scatter compresses P-1 times in sequence: its error grows with P
(error feedback at each hop compensates over steps).

Cost per call (:func:`counts`, for :mod:`ecmpi.bench.model`; ``w(m)`` the
payload bytes of ``m`` entries, ``k = ceil(n/P / segment)`` segments per
chunk): ``2(P-1) k`` messages, ``2(P-1) k w(n/(Pk))`` bytes per link,
``n + n/P`` entries encoded, ``(P-1)/P n + n`` decoded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .._backend import array_module
from ..compress.base import Compressor
from ..compress.payload import Payload
from .common import chunk_bounds, fixed_size, wire_size
from .failures import Failures
from .registry import Counts, register
from .residuals import CollectiveFeedback, compensated_encode
from .stats import CommStats
from .transport import Messages

__all__ = ["DEFAULT_SEGMENT", "counts", "ring_allreduce", "segments"]

PHASE = 2
#: entries per pipelined segment (1 MiB of float32)
DEFAULT_SEGMENT = 1 << 18
_TAG_REDUCE, _TAG_GATHER = 21, 22


def segments(a: int, b: int, segment: int) -> list[tuple[int, int]]:
    """``[a, b)`` cut into pieces of at most ``segment`` entries (none when empty)."""
    return [(s, min(s + segment, b)) for s in range(a, b, segment)]


def _decode_into(c: Compressor, buf: Any, out: Any) -> None:
    c.decode(Payload.from_bytes(buf, n=out.shape[0]), out=out)


def counts(
    n: float, P: int, wire: Callable[[float], float], *, segment: int = DEFAULT_SEGMENT
) -> Counts:
    """Messages, bytes per link, entries encoded and decoded of one call (module docstring)."""
    m = n / P
    k = max(1, math.ceil(m / segment))
    return Counts(2.0 * (P - 1) * k, 2.0 * (P - 1) * k * wire(m / k), n + m, (P - 1) * m + n)


@register("ring", id=3, options=("segment",), counts=counts)
def ring_allreduce(
    x: Any,
    c: Compressor,
    comm: Any,
    *,
    average: bool,
    seed: tuple[int, ...],
    feedback: CollectiveFeedback | None,
    stats: CommStats,
    segment: int = DEFAULT_SEGMENT,
) -> Any:
    """Sum (or mean) of ``x`` over ``comm`` around a ring. See the module docstring."""
    size, rank = comm.size, comm.rank
    d = x.shape[0]
    xp = array_module(x)
    bounds = chunk_bounds(d, size)
    segs = [segments(a, b, segment) for a, b in bounds]
    hw = feedback.residual("worker", d, x) if feedback is not None else None
    fixed = fixed_size(c)
    link = Messages(comm, stats, x)
    right, left = (rank + 1) % size, (rank - 1) % size
    fail = Failures(comm, x, "ring")

    def wire(a: int, b: int) -> int:
        return wire_size(c, b - a, x.dtype)

    def partial(buf: Any, a: int, b: int) -> Any:
        """The received partial sum plus ``x[a:b]`` (None once a failure is known)."""
        with stats.timer("decode"):
            acc = fail.decode("decode a partial sum", c, buf, b - a)
        if acc is not None:
            acc += x[a:b]
        return acc

    def encode(part: Any, a: int, b: int, h: Any, seed_: tuple, worker: int, what: str) -> Any:
        with stats.timer("encode"):
            _, buf = fail.encode(
                what,
                wire(a, b) if fixed else None,
                compensated_encode,
                c,
                part,
                h,
                seed=seed_,
                rank=worker,
            )
        return buf

    # 1. reduce-scatter: hop s sends chunk (r-s-1) and receives chunk (r-s-2);
    #    after a failure, markers travel in place of the payloads (same schedule)
    incoming: list[Any] = []
    for s in range(size - 1):
        c_out, c_in = (rank - s - 1) % size, (rank - s - 2) % size
        posted = [
            link.post(left, wire(a, b) if fixed else None, _TAG_REDUCE) for a, b in segs[c_in]
        ]
        for k, (a, b) in enumerate(segs[c_out]):
            part = x[a:b] if s == 0 else partial(link.wait(incoming[k]), a, b)
            h = hw[a:b] if hw is not None else None
            what = "encode its input"
            if s > 0:
                what = f"encode its partial sum of chunk {c_out} (its input included)"
            link.send(
                encode(part, a, b, h, (*seed, PHASE, c_out, k), rank, what), right, _TAG_REDUCE
            )
        incoming = posted

    # 2. the owner's full sum of chunk r, encoded once more
    ra, rb = bounds[rank]
    hs = feedback.residual("server", rb - ra, x) if feedback is not None and rb > ra else None
    have: dict[int, list[Any]] = {rank: []}
    for k, (a, b) in enumerate(segs[rank]):
        part = partial(link.wait(incoming[k]), a, b) if size > 1 else x[a:b].copy()
        if average and part is not None:
            part /= size
        h = hs[a - ra : b - ra] if hs is not None else None
        what = f"encode the reduced chunk {rank} (its input included)"
        have[rank].append(encode(part, a, b, h, (*seed, PHASE, rank, k), size + rank, what))

    # 3. allgather: forward encoded chunks; decode one chunk while the next moves
    out = xp.empty(d, dtype=x.dtype)

    def decode_chunk(j: int) -> None:
        with stats.timer("decode"):
            for (a, b), buf in zip(segs[j], have.pop(j)):
                if not fail.seen(buf) and not fail.any:  # markers keep being forwarded
                    fail.defer(_decode_into, c, buf, out[a:b])

    for t in range(size - 1):
        c_out, c_in = (rank - t) % size, (rank - t - 1) % size
        posted = [
            link.post(left, wire(a, b) if fixed else None, _TAG_GATHER) for a, b in segs[c_in]
        ]
        for buf in have[c_out]:
            link.send(buf, right, _TAG_GATHER)
        have[c_in] = [link.wait(h) for h in posted]
        if t > 0:
            decode_chunk((rank - t + 1) % size)
    link.finish()
    for j in list(have):
        decode_chunk(j)
    fail.check()
    return out
