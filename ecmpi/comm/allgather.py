"""``allgather``: every rank encodes its vector once, all payloads go to all ranks.

1. Encode ``x`` (with the worker residual if error feedback is on),
   seed ``(seed..., 0, 0)`` and ``rank``.
2. ``Allgather`` the payload bytes (``Allgatherv`` when sizes may differ).
3. Every rank decodes all P payloads and adds them in rank order 0..P-1,
   so every rank computes the same bits.

Wire volume per rank: ``(P-1)`` payloads sent and received. Right for
sparse payloads and small P; the decode work grows with P.

Cost per call (:func:`counts`, for :mod:`ecmpi.bench.model`; ``w(m)`` the
payload bytes of ``m`` entries): ``P-1`` messages, ``(P-1) w(n)`` bytes per
link, ``n`` entries encoded, ``P n`` decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._backend import array_module
from ..compress.base import Compressor
from ..compress.payload import Payload
from .common import fixed_size, wire_size
from .failures import Failures
from .registry import Counts, register
from .residuals import CollectiveFeedback, compensated_encode
from .stats import CommStats
from .transport import allgather_bytes

__all__ = ["allgather_allreduce", "counts"]

PHASE = 0


def counts(n: float, P: int, wire: Callable[[float], float]) -> Counts:
    """Messages, bytes per link, entries encoded and decoded of one call (module docstring)."""
    return Counts(P - 1.0, (P - 1) * wire(n), n, P * n)


@register("allgather", id=1, counts=counts)
def allgather_allreduce(
    x: Any,
    c: Compressor,
    comm: Any,
    *,
    average: bool,
    seed: tuple[int, ...],
    feedback: CollectiveFeedback | None,
    stats: CommStats,
) -> Any:
    """Sum (or mean) of ``x`` over ``comm`` by allgather of payloads. See the module docstring."""
    size, rank = comm.size, comm.rank
    d = x.shape[0]
    xp = array_module(x)
    h = feedback.residual("worker", d, x) if feedback is not None else None
    fail = Failures(comm, x, "allgather")
    own = wire_size(c, d, x.dtype) if fixed_size(c) else None
    with stats.timer("encode"):
        payload, mine = fail.encode(
            "encode its input", own, compensated_encode, c, x, h, seed=(*seed, PHASE, 0), rank=rank
        )
    bufs = allgather_bytes(mine, comm, stats, None if own is None else [own] * size)
    for buf in bufs:
        fail.seen(buf)
    fail.check()  # the last message of the call: from here on no rank waits on another
    with stats.timer("decode"):
        acc = xp.zeros(d, dtype=x.dtype)
        for i, buf in enumerate(bufs):
            c.decode_add(payload if i == rank else Payload.from_bytes(buf, n=d), acc)
        if average:
            acc /= size
    if c.check_finite and not bool(xp.isfinite(acc).all()):
        # the same bits on every rank, so every rank raises the same error
        bad = int((~xp.isfinite(acc)).sum())
        raise ValueError(f"allreduce (allgather): the sum overflows {x.dtype} at {bad} entries")
    return acc
