"""``ps``: the parameter-server pattern (gather to a root, broadcast back).

As a collective (:func:`ps_allreduce`):

1. Every rank encodes ``x`` (worker residual), seed ``(seed..., 3, 0)`` and ``rank``.
2. The payloads are gathered at ``root`` (uplink).
3. The root decodes and adds them in rank order, divides by P when
   averaging, adds its server residual and encodes the result with the
   downlink compressor (default: the same; ``"none"`` sends full precision),
   seed ``(seed..., 3, 0)`` with worker id ``P + root``.
4. The payload is broadcast (downlink); every rank, the root included,
   decodes it.

The helpers :func:`ps_gather`, :func:`ps_broadcast` and :func:`ps_exchange`
let an algorithm do its own server work (e.g. QESGD's model update) between
the two directions; given a :class:`~ecmpi.comm.failures.Failures`, they carry
one rank's encoding failure in-band as the collective does, so that every rank
raises the same error instead of waiting. Uplink and downlink bytes are recorded separately
(:attr:`CommStats.bytes_up`, :attr:`CommStats.bytes_down`).

Cost per call at the root, the bottleneck (:func:`counts`, for
:mod:`ecmpi.bench.model`; ``w(m)`` the payload bytes of ``m`` entries, the
broadcast modelled as scatter plus allgather): ``2(P-1) + ceil(log2 P)``
messages, ``(P-1) w(n) + 2(P-1)/P w(n)`` bytes per link, ``2n`` entries
encoded, ``(P+1) n`` decoded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .._backend import array_module
from ..compress.base import Compressor
from ..compress.payload import Payload
from .common import check_root, library_comm
from .failures import Failures
from .registry import Counts, register
from .residuals import CollectiveFeedback, compensated_encode
from .stats import CommStats
from .transport import bcast_bytes, gather_bytes

__all__ = ["counts", "ps_allreduce", "ps_broadcast", "ps_exchange", "ps_gather"]

PHASE = 3


def _record(stats: CommStats | None, call: CommStats) -> None:
    if stats is not None:
        if not isinstance(stats, CommStats):
            raise TypeError(f"stats must be a CommStats, got {type(stats).__name__}")
        stats.merge_call(call)


def ps_gather(
    payload: Payload | None,
    comm: Any = None,
    root: int = 0,
    *,
    stats: CommStats | None = None,
    failures: Failures | None = None,
) -> list[Payload | None] | None:
    """Gather every rank's payload at ``root``.

    Collective over ``comm`` (a library-owned duplicate is used). Payloads may
    differ in size between ranks.

    With ``failures`` (a :class:`~ecmpi.comm.failures.Failures` of this exchange), a
    rank whose encoding failed passes ``None`` and sends a failure marker instead;
    the root gets ``None`` in its place (and for a payload it cannot parse), and
    the failure travels on with :func:`ps_broadcast`, which raises it on every rank.

    Returns:
        At ``root`` the P payloads in rank order (its own included, not
        copied); ``None`` on the other ranks.
    """
    if not isinstance(payload, Payload) and not (payload is None and failures is not None):
        raise TypeError(f"ps_gather takes a Payload, got {type(payload).__name__}")
    comm = library_comm(comm)
    root = check_root(comm, root)
    call = CommStats()
    mine = payload.buf if payload is not None else failures.marker(None)
    bufs = gather_bytes(mine, comm, root, call)
    out: list[Payload | None] | None = None
    if bufs is not None:
        out = []
        for i, b in enumerate(bufs):
            if i == root:
                out.append(payload)
            elif failures is None:
                out.append(Payload.from_bytes(b))
            elif failures.seen(b):
                out.append(None)
            else:
                out.append(failures.run(f"parse the payload of rank {i}", Payload.from_bytes, b))
    _record(stats, call)
    return out


def ps_broadcast(
    payload: Payload | None,
    comm: Any = None,
    root: int = 0,
    *,
    stats: CommStats | None = None,
    like: Any = None,
    failures: Failures | None = None,
) -> Payload:
    """Broadcast ``root``'s payload; other ranks pass ``None`` (ignored).

    ``like`` (an array) puts the received bytes on its backend (CuPy or NumPy).
    With ``failures`` (the one given to :func:`ps_gather`), this is the exchange's
    last step: a root that knows of a failure passes ``None`` and broadcasts a
    marker, and then every rank raises the same ``ValueError``
    (:meth:`~ecmpi.comm.failures.Failures.check`).
    """
    comm = library_comm(comm)
    root = check_root(comm, root)
    at_root = comm.rank == root
    if failures is not None and at_root and failures.any:
        payload = None
    if at_root and not isinstance(payload, Payload) and not (payload is None and failures):
        raise TypeError(f"ps_broadcast at the root takes a Payload, got {type(payload).__name__}")
    call = CommStats()
    mine = None
    if at_root:
        mine = payload.buf if payload is not None else failures.marker(None)
    buf = bcast_bytes(mine, comm, root, call, like=like)
    _record(stats, call)
    if failures is not None:
        failures.seen(buf)
        failures.check()
    return payload if at_root else Payload.from_bytes(buf)


def ps_exchange(
    payload: Payload | None,
    server: Callable[[list[Payload]], Payload],
    *,
    comm: Any = None,
    root: int = 0,
    stats: CommStats | None = None,
    like: Any = None,
    failures: Failures | None = None,
) -> Payload:
    """Gather payloads at ``root``, run ``server(payloads) -> Payload`` there, broadcast its result.

    With ``failures`` (see :func:`ps_gather`), ``server`` runs only when no failure is
    known, a data error it raises is recorded, and one rank's failure raises the same
    ``ValueError`` on every rank. Returns the broadcast payload on every rank.
    """
    got = ps_gather(payload, comm, root, stats=stats, failures=failures)
    reply = None
    if got is not None:
        if failures is None:
            reply = server(got)
        else:
            reply = failures.run("run the server", server, got)
        if not isinstance(reply, Payload) and not (failures is not None and failures.any):
            raise TypeError(
                f"the server function must return a Payload, got {type(reply).__name__}"
            )
    return ps_broadcast(reply, comm, root, stats=stats, like=like, failures=failures)


def counts(n: float, P: int, wire: Callable[[float], float]) -> Counts:
    """Messages, bytes per link, entries encoded and decoded of one call (module docstring)."""
    down = 2.0 * (P - 1) / P * wire(n)
    lg = math.ceil(math.log2(P))
    return Counts(2.0 * (P - 1) + lg, (P - 1) * wire(n) + down, 2.0 * n, (P + 1.0) * n)


@register("ps", id=4, options=("root", "downlink"), counts=counts)
def ps_allreduce(
    x: Any,
    c: Compressor,
    comm: Any,
    *,
    average: bool,
    seed: tuple[int, ...],
    feedback: CollectiveFeedback | None,
    stats: CommStats,
    root: int = 0,
    downlink: Compressor | None = None,
) -> Any:
    """Sum (or mean) of ``x`` through a parameter server at ``root``. See the module docstring."""
    size, rank = comm.size, comm.rank
    d = x.shape[0]
    down = c if downlink is None else downlink
    h = feedback.residual("worker", d, x) if feedback is not None else None
    fail = Failures(comm, x, "ps")
    with stats.timer("encode"):
        payload, mine = fail.encode(
            "encode its input", None, compensated_encode, c, x, h, seed=(*seed, PHASE, 0), rank=rank
        )
    bufs = gather_bytes(mine, comm, root, stats)
    reply = None
    if bufs is not None:
        with stats.timer("decode"):
            acc = array_module(x).zeros(d, dtype=x.dtype)
            for i, buf in enumerate(bufs):
                if i == rank and payload is not None:
                    c.decode_add(payload, acc)
                else:
                    fail.decode(f"decode the payload of rank {i}", c, buf, d, acc=acc)
            if average and not fail.any:
                acc /= size
        hs = feedback.residual("server", d, x) if feedback is not None else None
        with stats.timer("encode"):
            reply, mine = fail.encode(
                "encode the reduced vector",
                None,
                compensated_encode,
                down,
                acc,
                hs,
                seed=(*seed, PHASE, 0),
                rank=size + root,
            )
    buf = bcast_bytes(mine if rank == root else None, comm, root, stats, like=x)
    fail.seen(buf)
    fail.check()
    with stats.timer("decode"):
        return down.decode(reply if reply is not None else Payload.from_bytes(buf, n=d))
