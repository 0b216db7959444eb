"""``sra-int``: scatter-reduce-allgather that adds integer codes (qsgd, terngrad).

The schedule of :mod:`ecmpi.comm.sra` with aggregation on codes
(:mod:`ecmpi.comm.codesum`):

1. Every rank computes the qsgd scale of every bucket of each of the P
   chunks (buckets restart at each chunk, as in ``sra``); one
   ``Allreduce(MAX)`` gives the shared scales ``R`` (a rank that cannot encode,
   NaN/Inf input, says so in the same message, and every rank raises).
2. Chunk ``j`` is quantized against ``R`` (seed ``(seed..., 5, j)`` and
   ``rank``, error feedback on the worker residual's slice ``j``) and its bare
   codes (``width`` bits per entry, no header: length, width and scales are
   known on both ends) go to rank ``j`` by ``Isend`` as soon as they are
   coded, chunk ``rank+1`` first, so a chunk travels while the next is
   encoded (every receive is posted before the first encode).
3. The owner adds the P code vectors as integers, and packs the sum in
   ``ceil(log2(2Ps + 1))`` bits (default) or requantizes it once to ``s``
   levels (``requantize=True``, worker id ``P + j``), and sends it to every
   rank.
4. Every rank decodes its own reduced chunk while the others travel, then
   each of the others as it arrives (``Waitany``), with the shared scales, so
   all ranks hold the same bits.

Compared with ``sra`` it encodes ``n`` entries instead of ``n + n/P``, decodes
``n`` (plus ``n`` integer additions) instead of ``2n``, and compresses each
rank's vector once: the wide sum is the exact sum of the P quantized vectors.
It sends ``(P-1) w_s(n/P)`` in the scatter and ``(P-1) w_S(n/P)`` in the
gather (``w_S`` the wide codes, ``log2(2Ps+1)/log2(2s+1)`` times more bits;
with ``requantize`` as many as the scatter), plus the ``n/b`` scales.

Cost per call (:func:`counts`): ``2(P-1) + 2 ceil(log2 P)`` messages;
``(P-1) (w_s(n/P) + w_S(n/P)) + 8 (P-1)/P n/b`` bytes per link; ``n``
entries encoded; ``2n`` decoded (the owner's integer sums counted as decodes).
CuPy input is staged through the host (the coding runs on the CPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._backend import array_module, is_device_array, to_host
from ..compress.base import Compressor
from ..compress.base import compressor as make_compressor
from ..compress.packing import packed_nbytes
from .codesum import CodeSum
from .common import chunk_bounds
from .failures import Failures
from .registry import Counts, register
from .residuals import CollectiveFeedback
from .stats import CommStats
from .transport import Messages

__all__ = [
    "agree_scales",
    "compensated_input",
    "counts",
    "encode_chunk",
    "finish",
    "sra_int_allreduce",
]

PHASE = 5
_TAG_SCATTER, _TAG_GATHER = 51, 52


def counts(
    n: float, P: int, wire: Callable[[float], float], *, spec: str = "", requantize: bool = False
) -> Counts:
    """Messages, bytes per link, entries encoded and decoded of one call (module docstring).

    ``spec`` names the qsgd/terngrad compressor (its levels fix the wide width).
    """
    m = n / P
    msgs = 2.0 * (P - 1) + 2.0 * math.ceil(math.log2(P)) if P > 1 else 0.0
    try:
        cs = CodeSum.of(make_compressor(spec))
    except ValueError:  # a codec known by its wire size only: the gather as wide as the scatter
        return Counts(msgs, 2.0 * (P - 1) * wire(m), n, 2.0 * n)
    wide = cs.width if requantize or P * cs.levels > 32767 else cs.sum_width(P)
    scales = 8.0 * (P - 1) / P * n / cs.bucket
    codes = (P - 1) * (m * cs.width + m * wide) / 8.0
    return Counts(msgs, codes + scales, n, 2.0 * n)


def compensated_input(
    host: np.ndarray, feedback: CollectiveFeedback | None, stats: CommStats
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(x + h, h)`` with the worker residual ``h`` (a view :func:`encode_chunk` updates),
    or ``(x, None)`` without error feedback."""
    if feedback is None:
        return host, None
    with stats.timer("encode"):
        hw = feedback.residual("worker", host.shape[0], host)
        return host + hw, hw


def agree_scales(
    cs: CodeSum, p: np.ndarray, bounds: list[tuple[int, int]], comm: Any, fail: Failures, stats
) -> list[np.ndarray]:
    """Step 1: the shared scales of every chunk's buckets (one ``Allreduce(MAX)``).

    A rank with a non-finite scale (NaN/Inf input) records its failure and
    raises, with every other rank, the same ValueError (:meth:`Failures.check`).
    Bytes are counted as an exchange in which rank ``j`` owns chunk ``j``'s scales.
    """
    from mpi4py import MPI

    size, rank = comm.size, comm.rank
    parts, sizes = [], []
    bad = 0
    for a, b in bounds:
        sc, nonfinite = cs.scales(p[a:b]) if b > a else (np.empty(0, np.float32), 0)
        bad += nonfinite
        parts.append(sc)
        sizes.append(sc.shape[0])
    local = np.concatenate([*parts, np.zeros(1, np.float32)])
    if bad:
        fail.reason = (
            f"encode its input: {bad} bucket(s) with NaN/Inf entries (aggregation on codes "
            "needs finite scales)"
        )
        local[:] = 0
        local[-1] = 1
    shared = np.empty_like(local)
    with stats.timer("communicate"):
        comm.Allreduce(local, shared, op=MPI.MAX)
    if size > 1:
        own = 4 * sizes[rank]
        others = 4 * (sum(sizes) - sizes[rank])
        stats.sent(others + (size - 1) * own, messages=2 * (size - 1))
        stats.received(others + (size - 1) * own)
    if shared[-1] > 0:
        fail.any = True
        fail.check()
    offs = np.concatenate([[0], np.cumsum(sizes)])
    return [shared[offs[j] : offs[j + 1]] for j in range(size)]


def encode_chunk(
    cs: CodeSum, p: Any, h: Any, scales: np.ndarray, seed: tuple, rank: int, width: int
) -> np.ndarray:
    """Codes of ``p`` against ``scales``; with a residual ``h`` (a view of ``p``'s
    compensated input) the error feedback update ``h = p - decode(codes)``."""
    codes = cs.encode(p, scales, seed, rank)
    if h is not None:
        q = np.empty_like(p)
        cs.decode(
            codes, p.shape[0], scales, q, width=width, offset=cs.levels, mult=1, div=cs.levels
        )
        np.subtract(p, q, out=h)
    return codes


def finish(out: np.ndarray, c: Compressor, name: str, x: Any) -> Any:
    """The result on ``x``'s backend; a non-finite sum (the same bits everywhere) raises."""
    if c.check_finite and not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).sum())
        raise ValueError(f"allreduce ({name}): the sum overflows {out.dtype} at {bad} entries")
    return array_module(x).asarray(out) if is_device_array(x) else out


@register("sra-int", id=5, options=("requantize",), counts=counts, accepts=CodeSum.accepts)
def sra_int_allreduce(
    x: Any,
    c: Compressor,
    comm: Any,
    *,
    average: bool,
    seed: tuple[int, ...],
    feedback: CollectiveFeedback | None,
    stats: CommStats,
    requantize: bool = False,
) -> Any:
    """Sum (or mean) of ``x`` over ``comm``, adding integer codes (module docstring)."""
    cs = CodeSum.of(c, "sra-int")
    size, rank = comm.size, comm.rank
    wide = cs.width if requantize else cs.sum_width(size)
    host = to_host(x)
    d = host.shape[0]
    bounds = chunk_bounds(d, size)
    lengths = [b - a for a, b in bounds]
    fail = Failures(comm, host, "sra-int")
    p, hw = compensated_input(host, feedback, stats)
    scales = agree_scales(cs, p, bounds, comm, fail, stats)

    offset, mult = (cs.levels, size) if requantize else (size * cs.levels, 1)
    div = cs.levels * (size if average else 1)  # wide: (c - Ps) R/s; requantized: (c - s) PR/s
    n_r = lengths[rank]
    out = np.empty(d, dtype=host.dtype)
    link = Messages(comm, stats)
    # every receive is posted first: the owner's P-1 code vectors, then the P-1 reduced chunks
    scatter = [link.post(i, packed_nbytes(n_r, cs.width), _TAG_SCATTER) for i in range(size)]
    gather = [link.post(j, packed_nbytes(m, wide), _TAG_GATHER) for j, m in enumerate(lengths)]
    # 1. encode chunk by chunk (owners rank+1, rank+2, ...), each sent as soon as it is coded
    own = np.empty(0, np.uint8)
    for t in range(1, size + 1):
        j = (rank + t) % size
        a, b = bounds[j]
        if a == b:
            continue
        with stats.timer("encode"):
            h = hw[a:b] if hw is not None else None
            codes = encode_chunk(cs, p[a:b], h, scales[j], (*seed, PHASE, j), rank, cs.width)
        if j == rank:
            own = codes
        else:
            link.send(codes, j, _TAG_SCATTER)
    # 2. the owner sums its chunk's codes and sends the sum to every rank
    if n_r:
        recv = [own if i == rank else link.wait(scatter[i]) for i in range(size)]
        if requantize:
            with stats.timer("decode"):
                acc = np.zeros(n_r, dtype=np.int32)
                for buf in recv:
                    cs.add(buf, n_r, acc, cs.width, cs.levels)
            with stats.timer("encode"):
                lev = cs.requantize(acc, size, (*seed, PHASE, rank), size + rank)
                mine = cs.pack(lev, cs.width, cs.levels)
        else:
            with stats.timer("decode"):
                mine = cs.sum_wide(recv, n_r, wide)
        link.send_all(mine, _TAG_GATHER)
    # 3. decode each reduced chunk as it arrives (the own one while the others travel)
    for j in link.arrivals(gather, [j for j in range(size) if lengths[j]]):
        a, b = bounds[j]
        buf = mine if j == rank else link.wait(gather[j])
        with stats.timer("decode"):
            cs.decode(
                buf, b - a, scales[j], out[a:b], width=wide, offset=offset, mult=mult, div=div
            )
    link.finish()
    return finish(out, c, "sra-int", x)
