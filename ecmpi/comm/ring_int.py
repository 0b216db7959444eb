"""``ring-int``: the pipelined ring adding integer codes at every hop (qsgd, terngrad).

The schedule of :mod:`ecmpi.comm.ring` with the shared-scale codes of
:mod:`ecmpi.comm.codesum` and :mod:`ecmpi.comm.sra_int`:

1. One ``Allreduce(MAX)`` agrees on the scale of every bucket of each of the P
   chunks (:func:`~ecmpi.comm.sra_int.agree_scales`).
2. Reduce-scatter, hops ``s = 0 .. P-2``: rank ``r`` sends chunk
   ``(r-s-1) mod P`` to ``r+1`` as the unsigned sum of ``s+1`` ranks' codes,
   packed in ``ceil(log2(2(s+1)s_q + 1))`` bits (``s_q`` the levels): at hop 0
   its own codes, later the sum it received plus its own codes, added as
   integers. Nothing is decoded or requantized on the way. Each rank encodes
   each chunk once, just before it is needed, so the encode of the next chunk
   overlaps the transfer of this one.
3. After P-1 hops rank ``r`` holds ``S + P s_q`` for chunk ``r``, the exact sum
   of the P quantized chunks: it travels wide (default) or requantized once
   (``requantize=True``), as in ``sra-int``.
4. Allgather around the ring: the reduced chunks are forwarded P-1 times and
   decoded, one chunk while the next moves.

Every rank quantizes chunk ``j`` with the seed ``(seed..., 5, j)`` and worker id
``rank`` and the owner requantizes with ``(seed..., 5, r)`` and ``P + r``: the
codes, sums and requantized levels of ``sra-int``, so the two collectives
return the same bits and leave the same residuals; they differ in who talks to
whom. ``ring-int`` sends only to its right neighbour, in ``k`` segments per
chunk (``segment`` entries, rounded up to a multiple of 8 and of the bucket so
that segments start on a byte and a bucket), which pipelines the hops on
links where ``sra-int``'s all-to-all congests.

Cost per call (:func:`counts`, ``m = n/P``, ``W(k)`` the bits of a sum of ``k``
codes): ``2(P-1) k + 2 ceil(log2 P)`` messages; per link
``m (W(1) + .. + W(P-1)) / 8 + (P-1) m W_g / 8`` bytes plus the ``n/b`` scales
(``W_g = W(P)``, or ``W(1)`` requantized); ``n`` entries encoded, ``n``
decoded plus ``(P-1) m`` integer additions counted as decodes.
CuPy input is staged through the host (the coding runs on the CPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._backend import to_host
from ..compress.base import Compressor
from ..compress.base import compressor as make_compressor
from ..compress.packing import packed_nbytes
from ..compress.quantize import MAX_LEVELS
from .codesum import CodeSum
from .common import chunk_bounds
from .failures import Failures
from .registry import Counts, register
from .residuals import CollectiveFeedback
from .ring import DEFAULT_SEGMENT, segments
from .sra_int import PHASE, agree_scales, compensated_input, encode_chunk, finish
from .stats import CommStats
from .transport import Messages

__all__ = ["aligned_segment", "counts", "ring_int_allreduce"]

_TAG_REDUCE, _TAG_GATHER = 71, 72


def aligned_segment(segment: int, bucket: int) -> int:
    """``segment`` rounded up to a multiple of ``lcm(8, bucket)``: a segment then starts on
    a byte of every packed width and on a bucket of its chunk."""
    step = math.lcm(8, bucket)
    return max(step, -(-int(segment) // step) * step)


def counts(
    n: float,
    P: int,
    wire: Callable[[float], float],
    *,
    spec: str = "",
    requantize: bool = False,
    segment: int = DEFAULT_SEGMENT,
) -> Counts:
    """Messages, bytes per link, entries encoded and decoded of one call (module docstring).

    ``spec`` names the qsgd/terngrad compressor (its levels fix the widths of the sums).
    """
    m = n / P
    k = max(1, math.ceil(m / segment))
    msgs = 2.0 * (P - 1) * k + 2.0 * math.ceil(math.log2(P)) if P > 1 else 0.0
    try:
        cs = CodeSum.of(make_compressor(spec))
    except ValueError:  # a codec known by its wire size only
        return Counts(msgs, 2.0 * (P - 1) * wire(m), n, 2.0 * n)
    hops = sum(cs.sum_width(j) for j in range(1, P))
    gather = (P - 1) * (cs.width if requantize else cs.sum_width(P))
    scales = 8.0 * (P - 1) / P * n / cs.bucket
    return Counts(msgs, m * (hops + gather) / 8.0 + scales, n, n + (P - 1) * m)


def _piece(buf: np.ndarray, start: int, a: int, b: int, width: int) -> np.ndarray:
    """The bytes of entries ``[a, b)`` in ``buf``, the packed codes of a chunk starting at
    entry ``start`` (``a - start`` a multiple of 8)."""
    lo = (a - start) * width // 8
    return buf[lo : lo + packed_nbytes(b - a, width)]


@register(
    "ring-int",
    id=7,
    options=("segment", "requantize"),
    counts=counts,
    accepts=CodeSum.accepts,
)
def ring_int_allreduce(
    x: Any,
    c: Compressor,
    comm: Any,
    *,
    average: bool,
    seed: tuple[int, ...],
    feedback: CollectiveFeedback | None,
    stats: CommStats,
    segment: int = DEFAULT_SEGMENT,
    requantize: bool = False,
) -> Any:
    """Sum (or mean) of ``x`` over ``comm`` around a ring of integer codes (module docstring)."""
    cs = CodeSum.of(c, "ring-int")
    size, rank = comm.size, comm.rank
    if size * cs.levels > MAX_LEVELS:
        raise ValueError(
            f"ring-int adds {size} codes of {cs.levels} levels on its hops, more than 16 bits "
            "(requantize=True does not help: the partial sums travel wide); use sra-int"
        )
    wide = cs.width if requantize else cs.sum_width(size)
    host = to_host(x)
    d = host.shape[0]
    bounds = chunk_bounds(d, size)
    fail = Failures(comm, host, "ring-int")
    p, hw = compensated_input(host, feedback, stats)
    scales = agree_scales(cs, p, bounds, comm, fail, stats)
    segs = [segments(a, b, aligned_segment(segment, cs.bucket)) for a, b in bounds]
    link = Messages(comm, stats)
    right, left = (rank + 1) % size, (rank - 1) % size

    def own(j: int) -> np.ndarray:
        """This rank's codes of chunk ``j`` (error feedback on its residual slice)."""
        a, b = bounds[j]
        with stats.timer("encode"):
            h = hw[a:b] if hw is not None else None
            return encode_chunk(cs, p[a:b], h, scales[j], (*seed, PHASE, j), rank, cs.width)

    def post(j: int, width: int, tag: int) -> list[Any]:
        return [link.post(left, packed_nbytes(b - a, width), tag) for a, b in segs[j]]

    # 1. reduce-scatter: hop s sends chunk r-s-1 as a sum of s+1 ranks' codes
    mine = own((rank - 1) % size) if size > 1 else own(rank)
    incoming: list[Any] = []
    for s in range(size - 1):
        c_out, c_in = (rank - s - 1) % size, (rank - s - 2) % size
        width = cs.sum_width(s + 1)  # of this hop's messages, both ways
        posted = post(c_in, width, _TAG_REDUCE)
        start = bounds[c_out][0]
        for k, (a, b) in enumerate(segs[c_out]):
            codes = _piece(mine, start, a, b, cs.width)
            if s > 0:
                got = link.wait(incoming[k])
                with stats.timer("decode"):
                    codes = cs.add_pack(got, cs.sum_width(s), codes, cs.width, b - a, width)
            link.send(codes, right, _TAG_REDUCE)
        incoming = posted
        mine = own(c_in)  # encoded while this hop's segments travel

    # 2. the owner's sum of chunk r: S + P s, sent wide or requantized once
    ra, rb = bounds[rank]
    w_sum = cs.sum_width(size)
    have: dict[int, np.ndarray] = {}
    if rb > ra:
        pieces = []
        for k, (a, b) in enumerate(segs[rank]):
            codes = _piece(mine, ra, a, b, cs.width)
            got = link.wait(incoming[k]) if size > 1 else None
            with stats.timer("decode"):
                if size > 1:
                    codes = cs.add_pack(got, cs.sum_width(size - 1), codes, cs.width, b - a, w_sum)
                pieces.append(codes)
        have[rank] = np.concatenate(pieces)
        if requantize:
            with stats.timer("encode"):
                acc = np.zeros(rb - ra, dtype=np.int32)
                cs.add(have[rank], rb - ra, acc, w_sum, size * cs.levels)
                lev = cs.requantize(acc, size, (*seed, PHASE, rank), size + rank)
                have[rank] = cs.pack(lev, cs.width, cs.levels)

    # 3. allgather: forward the reduced chunks, decode one while the next moves
    offset, mult = (cs.levels, size) if requantize else (size * cs.levels, 1)
    div = cs.levels * (size if average else 1)
    out = np.empty(d, dtype=host.dtype)

    def decode_chunk(j: int) -> None:
        a0, b0 = bounds[j]
        if b0 == a0:
            return
        with stats.timer("decode"):
            cs.decode(
                have[j], b0 - a0, scales[j], out[a0:b0], width=wide, offset=offset, mult=mult,
                div=div,
            )  # fmt: skip

    for t in range(size - 1):
        c_out, c_in = (rank - t) % size, (rank - t - 1) % size
        posted = post(c_in, wide, _TAG_GATHER)
        start = bounds[c_out][0]
        for a, b in segs[c_out]:
            link.send(_piece(have[c_out], start, a, b, wide), right, _TAG_GATHER)
        got = [link.wait(h) for h in posted]
        have[c_in] = np.concatenate(got) if got else np.empty(0, np.uint8)
        decode_chunk((rank - t) % size)
    link.finish()
    decode_chunk((rank + 1) % size)
    return finish(out, c, "ring-int", x)
