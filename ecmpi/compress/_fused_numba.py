"""The numba kernels of :mod:`ecmpi.compress._fused`, which imports this module on first use.

Every kernel produces exactly the bytes of the NumPy reference in
:mod:`ecmpi.compress.quantize` (the arithmetic is fixed by
``docs/compressors.md``). qsgd encoding walks the vector in tiles of
``TILE`` entries; per tile it

1. computes the scales of the buckets the tile reaches (so the bucket is read
   from memory once and quantized while it is still in cache),
2. draws the tile's Philox-4x32-10 blocks (16 high bytes each) in a
   branch-free loop that LLVM vectorizes (32x32->64-bit products become ``vpmuludq``),
3. quantizes in float32 (the definition's arithmetic) from the high random
   byte of each entry, and draws the low byte only for the one entry in 256
   whose level it decides (:func:`_quantize`, :func:`_finish_ties`; for
   ``s = 1`` the flag rides in bit 7 of the code byte), and
4. packs the codes.

The scale pass also counts buckets whose float64 sum is not finite, so the
caller can skip a separate ``numpy.isfinite`` pass over finite input.

No ``fastmath`` (it would change bits) and no ``parallel`` (one core).

Arguments are grouped where the kernels share them: the Philox key and stream
words travel as one :class:`~ecmpi.compress._fused.PhiloxKey`, the qsgd codec
parameters as one :class:`~ecmpi.compress._fused.QsgdParams`, and a tile's
scratch arrays as one :class:`Tile` (named tuples: numba passes their fields
as separate values, so grouping costs nothing once compiled). The entry points
are :func:`qsgd_encode`, :func:`qsgd_decode`, :func:`qsgd_decode_s1`,
:func:`sign_encode`, :func:`sign_decode` and :func:`random_u32`; only
:mod:`ecmpi.compress._fused` calls them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

from ._fused import TILE

__all__ = [
    "S1_LEVELS",
    "Tile",
    "qsgd_decode",
    "qsgd_decode_s1",
    "qsgd_encode",
    "random_u32",
    "sign_decode",
    "sign_encode",
]

_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_PM0 = np.uint64(0xD2511F53)
_PM1 = np.uint64(0xCD9E8D57)
_W0_32 = np.uint32(0x9E3779B9)
_W1_32 = np.uint32(0xBB67AE85)

#: first Philox block of the low-byte stream (ecmpi.rng.LOW_BYTES)
_LOW_BYTES = np.uint64(1 << 63)
#: compare uint64 with uint64 (a uint64 against an int literal goes through float64)
_ZERO64 = np.uint64(0)
_ONE64 = np.uint64(1)
#: the flag bit of each byte of a flag word: bit 0 in ``tie``, bit 7 in s = 1 code bytes
_FLAG_IN_TIE = np.uint64(0x0101010101010101)
_FLAG_IN_CODE = np.uint64(0x8080808080808080)
#: scales below this are lifted by 2^64 before s / r (ecmpi.compress.quantize.TINY_SCALE)
_TINY = np.float32(2.0**-64)

_opts = {"cache": True, "error_model": "numpy"}


class Tile(NamedTuple):
    """Scratch arrays of one tile of the qsgd encoder (entry ``t0 + j`` at index ``j``)."""

    hb: np.ndarray  #: uint8: the high random byte of each entry
    ct: np.ndarray  #: uint8 or uint16 codes (s = 1: flag in bit 7), 8 zero entries beyond
    tie: np.ndarray  #: uint8: 1 where the low random byte decides the level
    tt: np.ndarray  #: float32: each entry's T, for the flagged ones
    at: np.ndarray  #: int64: positions of the flagged entries
    low: np.ndarray  #: uint32: the low-byte Philox blocks of the flagged entries


@njit(inline="always")
def _philox(blk, key):
    """Philox-4x32-10 of the counter ``(blk lo, blk hi, key.s0, key.s1)`` and key ``(key.k0,
    key.k1)``."""
    c0 = np.uint32(blk & _M32)
    c1 = np.uint32(blk >> _S32)
    c2 = np.uint32(key.s0)
    c3 = np.uint32(key.s1)
    kk0 = np.uint32(key.k0)
    kk1 = np.uint32(key.k1)
    for _ in range(10):
        p0 = np.uint64(c0) * _PM0
        p1 = np.uint64(c2) * _PM1
        n0 = np.uint32(p1 >> _S32) ^ c1 ^ kk0
        n2 = np.uint32(p0 >> _S32) ^ c3 ^ kk1
        c1 = np.uint32(p1)
        c3 = np.uint32(p0)
        c0 = n0
        c2 = n2
        kk0 = np.uint32(kk0 + _W0_32)
        kk1 = np.uint32(kk1 + _W1_32)
    return c0, c1, c2, c3


@njit(**_opts)
def _blocks(words, blk0, nblk, key):
    """Philox blocks ``blk0 .. blk0+nblk-1`` into ``words[4j .. 4j+3]``.

    32-bit lanes; each product is a 32x32->64-bit multiply, so the loop over
    blocks vectorizes (vpmuludq).
    """
    for j in range(nblk):
        c0, c1, c2, c3 = _philox(np.uint64(blk0 + j), key)
        words[4 * j] = c0
        words[4 * j + 1] = c1
        words[4 * j + 2] = c2
        words[4 * j + 3] = c3


@njit(**_opts)
def _blocks_at(words, at, nt, t0, key):
    """Low-byte blocks of the entries ``t0 + at[q]``, ``q < nt``: block
    ``LOW_BYTES + (t0 + at[q]) // 16`` into ``words[4q .. 4q+3]``."""
    for q in range(nt):
        blk = _LOW_BYTES + np.uint64((t0 + at[q]) // 16)
        c0, c1, c2, c3 = _philox(blk, key)
        words[4 * q] = c0
        words[4 * q + 1] = c1
        words[4 * q + 2] = c2
        words[4 * q + 3] = c3


@njit(**_opts)
def random_u32(n, key):
    """Elements ``0 .. n-1`` of the 32-bit Philox stream of ``key`` (a PhiloxKey)."""
    out = np.empty((n + 3) // 4 * 4, dtype=np.uint32)
    _blocks(out, 0, out.shape[0] // 4, key)
    return out[:n]


# -- bucket scales ---------------------------------------------------------------------


@njit(inline="always")
def _tree_levels(buf, h):
    """``buf[j] = buf[j] + buf[j+h]`` for ``h, h/2, ..., 1``; returns ``buf[0]``."""
    while h >= 1:
        for j in range(h):
            buf[j] = buf[j] + buf[j + h]
        h //= 2
    return buf[0]


@njit(inline="always")
def _sq(v):
    return v * v


@njit(**_opts)
def _bucket_scale(x, lo, hi, norm, buf, width):
    """Scale of ``x[lo:hi]`` in float64 (rounded to float32 by the caller); norm 0 = l2,
    1 = linf, 2 = l1 (see buckets.py).

    Tree sums (l2, l1) of a full bucket (``hi - lo == width >= 8``) fuse the
    squares (absolute values) and the first three levels into one pass:
    with ``e = width/8`` and ``v_q = t[j + q e]``, level three is
    ``((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7))``, the same terms in
    the same order as the definition. Shorter buckets are zero-padded first.
    """
    m = hi - lo
    xs = x[lo:hi]
    if norm == 1:
        mx = 0.0
        nan = False
        for j in range(m):
            a = abs(np.float64(xs[j]))
            mx = a if a > mx else mx
            nan |= a != a
        return np.nan if nan else mx
    if m == width and width >= 8:
        e = width // 8
        if norm == 0:
            for j in range(e):
                v0 = _sq(np.float64(xs[j]))
                v1 = _sq(np.float64(xs[j + e]))
                v2 = _sq(np.float64(xs[j + 2 * e]))
                v3 = _sq(np.float64(xs[j + 3 * e]))
                v4 = _sq(np.float64(xs[j + 4 * e]))
                v5 = _sq(np.float64(xs[j + 5 * e]))
                v6 = _sq(np.float64(xs[j + 6 * e]))
                v7 = _sq(np.float64(xs[j + 7 * e]))
                buf[j] = ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7))
        else:
            for j in range(e):
                v0 = abs(np.float64(xs[j]))
                v1 = abs(np.float64(xs[j + e]))
                v2 = abs(np.float64(xs[j + 2 * e]))
                v3 = abs(np.float64(xs[j + 3 * e]))
                v4 = abs(np.float64(xs[j + 4 * e]))
                v5 = abs(np.float64(xs[j + 5 * e]))
                v6 = abs(np.float64(xs[j + 6 * e]))
                v7 = abs(np.float64(xs[j + 7 * e]))
                buf[j] = ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7))
        t = _tree_levels(buf, e // 2)
    else:
        for j in range(m):
            v = np.float64(xs[j])
            buf[j] = v * v if norm == 0 else abs(v)
        for j in range(m, width):
            buf[j] = 0.0
        t = _tree_levels(buf, width // 2)
    if norm == 0:
        return np.sqrt(t)
    return t / np.float64(m)


@njit(**_opts)
def _scales(x, b, norm, scales):
    """Every bucket's scale (one pass); returns how many were not finite before rounding."""
    n = x.shape[0]
    width = 1
    while width < min(b, n):
        width *= 2
    buf = np.empty(width, dtype=np.float64)
    bad = 0
    for k in range(scales.shape[0]):
        lo = k * b
        v = _bucket_scale(x, lo, min(lo + b, n), norm, buf, width)
        scales[k] = np.float32(v)
        bad += not (v < np.inf)
    return bad


# -- qsgd quantization -----------------------------------------------------------------


@njit(**_opts)
def _quantize(x, lo, hi, t0, q, ks, tile):
    """Stochastic codes of ``x[lo:hi]`` (one bucket) from the high random bytes, float32.

    ``T = min(fl32(a q), 65536 s)`` as in docs/compressors.md, for a bucket whose
    scale is finite, ``>= 2^-64`` (no lift) and ``s <= 255``. The level is
    ``l(u) = floor((C + 65535 - u) / 65536)`` with ``C = ceil(T)`` and ``u = 256 h
    + g``; ``l`` does not increase with ``u``, so where ``l(256 h + 255) ==
    l(256 h)`` the high byte ``h`` alone decides it. The others (``256 h < C <=
    256 h + 255``: one entry in 256) are flagged in ``tie``, with ``T`` kept in
    ``tt``, and finished by :func:`_finish_ties`. Every value here is an integer
    below ``65536 s + 65536 <= 2^24``, so the float32 arithmetic is exact.
    """
    xs = x[lo:hi]
    hs = tile.hb[lo - t0 : hi - t0]
    c = tile.ct[lo - t0 : hi - t0]
    td = tile.tie[lo - t0 : hi - t0]
    ts = tile.tt[lo - t0 : hi - t0]
    s = ks * np.float32(2.0**-16)
    top = np.float32(65535.0)
    k256 = np.float32(256.0)
    k255 = np.float32(255.0)
    inv = np.float32(2.0**-16)
    zero = np.float32(0.0)
    for j in range(hi - lo):
        xv = np.float32(xs[j])
        t = min(abs(xv) * q, ks)
        ts[j] = t
        base = np.ceil(t) + (top - np.float32(hs[j]) * k256)
        lev = np.floor((base - k255) * inv)
        c[j] = np.int32(s + lev if xv >= zero else s - lev)
        td[j] = lev != np.floor(base * inv)


@njit(inline="always", **_opts)
def _quantize_s1(x, lo, hi, t0, q, tile):
    """:func:`_quantize` for ``s = 1`` (2-bit codes), by comparisons.

    With ``s = 1`` the level is 1 iff ``u < ceil(T)``, i.e. ``u < T`` for the
    integer ``u``; so ``256 h + 255 < T`` gives 1 whatever the low byte,
    ``256 h >= T`` gives 0, and between them the low byte decides (flagged).
    ``T`` needs no clamp here: ``T >= 65536`` gives level 1 either way (and a
    flagged entry has ``T < 65536``). The code ``1 + l`` or ``1 - l`` is formed
    from the comparison masks ``m = -l`` and ``g = -(x < 0)`` as
    ``1 - ((m ^ g) - g)`` (a conditional negation), in integer lanes. The codes
    are 0..2, so the flag goes into bit 7 of the code byte (``_FLAG_IN_CODE``)
    instead of a separate array: one store per entry fewer.
    """
    xs = x[lo:hi]
    hs = tile.hb[lo - t0 : hi - t0]
    c = tile.ct[lo - t0 : hi - t0]
    ts = tile.tt[lo - t0 : hi - t0]
    k256 = np.float32(256.0)
    k255 = np.float32(255.0)
    zero = np.float32(0.0)
    for j in range(hi - lo):
        xv = np.float32(xs[j])
        t = abs(xv) * q
        ts[j] = t
        h = np.float32(hs[j]) * k256
        up = h + k255 < t
        m = -np.int32(up)
        g = -np.int32(xv < zero)
        f = -np.int32(h < t)  # h < t and not up: flagged
        c[j] = (1 - ((m ^ g) - g)) | ((f & ~m) & 128)


@njit(**_opts)
def _quantize_wide(x, lo, hi, t0, lift, q, ks, tile):
    """:func:`_quantize` in int64, for any ``s`` and for tiny scales (``lift = 2^64``)."""
    xs = x[lo:hi]
    hs = tile.hb[lo - t0 : hi - t0]
    c = tile.ct[lo - t0 : hi - t0]
    td = tile.tie[lo - t0 : hi - t0]
    ts = tile.tt[lo - t0 : hi - t0]
    s = np.int64(ks * np.float32(2.0**-16))
    for j in range(hi - lo):
        xv = np.float32(xs[j])
        t = min(abs(xv) * lift * q, ks)
        ts[j] = t
        base = np.int64(np.ceil(t)) + 65535 - 256 * np.int64(hs[j])
        lev = (base - 255) >> 16
        c[j] = s + lev if xv >= 0 else s - lev
        td[j] = lev != base >> 16


@njit(**_opts)
def _quantize_nearest(x, lo, hi, lift, q, ks, ct):
    """Round-to-nearest codes of ``x[lo:hi]``: ``l = (floor(T) + 32768) >> 16``."""
    xs = x[lo:hi]
    s = np.int64(ks * np.float32(2.0**-16))
    for j in range(hi - lo):
        xv = np.float32(xs[j])
        t = min(abs(xv) * lift * q, ks)
        lev = (np.int64(np.floor(t)) + 32768) >> 16
        ct[j] = s + lev if xv >= 0 else s - lev


@njit(inline="always", **_opts)
def _finish_ties(x, t0, m, s, key, words, mask, tile):
    """Codes of the flagged entries: draw the low byte ``g`` and take ``l(256 h + g)``.

    ``words`` holds one flag byte per entry, as uint64 words, and ``mask`` the
    flag bit of every byte (``_FLAG_IN_TIE`` for the ``tie`` array,
    ``_FLAG_IN_CODE`` for bit 7 of the code bytes of ``s = 1``). Flags are
    tested 32 at a time; in a group with a flag, each flagged byte of a word is
    found by its trailing zero count (flags left beyond ``m`` by an earlier
    tile are skipped by the bound on ``j``). The low bytes of all flagged
    entries are drawn in one vectorized Philox loop (:func:`_blocks_at`); the
    code written over a flagged entry clears its flag.
    """
    ct, at, tt = tile.ct, tile.at, tile.tt
    nt = 0
    for g in range((m + 31) // 32):  # 32 flags per test: one entry in 256 is flagged
        w0 = 4 * g
        if (words[w0] | words[w0 + 1] | words[w0 + 2] | words[w0 + 3]) & mask == _ZERO64:
            continue
        for wi in range(w0, w0 + 4):
            w = words[wi] & mask
            while w != _ZERO64:
                j = 8 * wi + np.int64(trailing_zeros(w) >> 3)
                at[nt] = j
                nt += j < m
                w &= w - _ONE64
    if nt == 0:
        return
    _blocks_at(tile.low, at, nt, t0, key)
    bytes_ = tile.low.view(np.uint8)
    for q in range(nt):
        j = at[q]
        i = t0 + j
        g = np.int64(bytes_[16 * q + i % 16])
        u = np.int64(tile.hb[j]) * 256 + g
        lev = (np.int64(np.ceil(tt[j])) + 65535 - u) >> 16
        ct[j] = s + lev if x[i] >= 0 else s - lev


@njit(inline="always")
def _bucket_factors(r, s):
    """``(lift, q)`` of a bucket's float32 scale ``r`` (finite, > 0): ``q = fl32(s/r') * 65536``."""
    lift = np.float32(1.0)
    if r < _TINY:
        lift = np.float32(2.0**64)
    return lift, (np.float32(s) / (r * lift)) * np.float32(65536.0)


@njit(**_opts)
def _pack_tile(ct, m, width, codes, byte0):
    """Pack ``ct[:m]`` (zero beyond m up to 8 entries more) at ``codes[byte0:]``."""
    if width == 2:
        v4 = ct.view(np.uint32)
        out = codes[byte0 : byte0 + (m + 3) // 4]
        for j in range(out.shape[0]):
            v = v4[j]
            out[j] = np.uint8((v & 3) | ((v >> 6) & 0xC) | ((v >> 12) & 0x30) | ((v >> 18) & 0xC0))
    elif width == 4:
        v2 = ct.view(np.uint16)
        out = codes[byte0 : byte0 + (m + 1) // 2]
        for j in range(out.shape[0]):
            v = v2[j]
            out[j] = np.uint8((v & 0xF) | ((v >> 4) & 0xF0))
    elif width == 8:
        out = codes[byte0 : byte0 + m]
        for j in range(m):
            out[j] = np.uint8(ct[j])
    elif width == 16:
        for i in range(m):
            c = ct[i]
            codes[byte0 + 2 * i] = np.uint8(c & 0xFF)
            codes[byte0 + 2 * i + 1] = np.uint8(c >> 8)
    else:
        acc = 0
        nbits = 0
        pos = byte0
        for i in range(m):
            acc |= np.int64(ct[i]) << nbits
            nbits += width
            while nbits >= 8:
                codes[pos] = np.uint8(acc & 0xFF)
                acc >>= 8
                nbits -= 8
                pos += 1
        if nbits > 0:
            codes[pos] = np.uint8(acc & 0xFF)


@njit(**_opts)
def _qsgd_tiles(x, prm, key, scales, codes, ct):
    """:func:`qsgd_encode` with the code buffer ``ct`` (uint8 for widths up to 8, else uint16)."""
    b, s, width = prm.bucket, prm.levels, prm.width
    n = x.shape[0]
    ks = np.float32(65536.0 * s)
    bw = 1
    while bw < min(b, n):
        bw *= 2
    buf = np.empty(bw, dtype=np.float64)
    words = np.zeros(TILE // 4, dtype=np.uint32)
    tile = Tile(
        hb=words.view(np.uint8),  # byte j: the high byte of entry t0 + j
        ct=ct,
        tie=np.zeros(TILE, dtype=np.uint8),
        tt=np.zeros(TILE, dtype=np.float32),
        at=np.zeros(TILE, dtype=np.int64),
        low=np.zeros(4 * TILE, dtype=np.uint32),
    )
    tie = tile.tie
    knext = 0
    nonfinite = 0
    for t0 in range(0, n, TILE):
        t1 = min(t0 + TILE, n)
        m = t1 - t0
        klast = (t1 - 1) // b
        while knext <= klast:  # scales of the buckets this tile reaches (still in cache)
            lo = knext * b
            v = _bucket_scale(x, lo, min(lo + b, n), prm.norm, buf, bw)
            scales[knext] = np.float32(v)
            nonfinite += not (v < np.inf)
            knext += 1
        if prm.stochastic:
            _blocks(words, t0 // 16, (m + 15) // 16, key)
        i = t0
        while i < t1:
            k = i // b
            hi = min((k + 1) * b, t1)
            r = scales[k]
            if r > 0 and r < np.inf:
                lift, q = _bucket_factors(r, s)
                if not prm.stochastic:
                    _quantize_nearest(x, i, hi, lift, q, ks, ct[i - t0 : hi - t0])
                elif s == 1 and lift == 1:
                    _quantize_s1(x, i, hi, t0, q, tile)
                elif s <= 255 and lift == 1:
                    _quantize(x, i, hi, t0, q, ks, tile)
                else:
                    _quantize_wide(x, i, hi, t0, lift, q, ks, tile)
                    if s == 1:  # s = 1 keeps its flags in the code bytes
                        for j in range(i - t0, hi - t0):
                            ct[j] |= tie[j] << 7
            else:  # zero or non-finite scale: level 0
                ct[i - t0 : hi - t0] = s
                tie[i - t0 : hi - t0] = 0
            i = hi
        if prm.stochastic:
            if s == 1:
                flags, mask = ct[:TILE].view(np.uint64), _FLAG_IN_CODE
            else:
                flags, mask = tie.view(np.uint64), _FLAG_IN_TIE
            _finish_ties(x, t0, m, s, key, flags, mask, tile)
        ct[m : m + 8] = 0
        _pack_tile(ct, m, width, codes, (t0 // 8) * width)
    return nonfinite


@njit(**_opts)
def qsgd_encode(x, prm, key, scales, codes):
    """Scales and packed qsgd codes of ``x`` into the payload's sections.

    ``prm`` is a QsgdParams, ``key`` a PhiloxKey. Returns the number of buckets
    whose scale was not finite before rounding (0 for finite float32 input).
    """
    if prm.width <= 8:
        return _qsgd_tiles(x, prm, key, scales, codes, np.zeros(TILE + 8, dtype=np.uint8))
    return _qsgd_tiles(x, prm, key, scales, codes, np.zeros(TILE + 8, dtype=np.uint16))


# -- qsgd decoding ---------------------------------------------------------------------


@njit(**_opts)
def _unpack_tile(codes, byte0, m, width, ct):
    """Codes ``ct[:m]`` from the packed bytes starting at ``codes[byte0]`` (byte aligned)."""
    mask = (1 << width) - 1
    if width <= 8 and 8 % width == 0:
        per = 8 // width
        nbytes = (m + per - 1) // per
        for j in range(nbytes):
            v = np.int32(codes[byte0 + j])
            for q in range(per):
                ct[j * per + q] = (v >> (q * width)) & mask
    elif width == 16:
        for i in range(m):
            ct[i] = np.int32(codes[byte0 + 2 * i]) | (np.int32(codes[byte0 + 2 * i + 1]) << 8)
    else:
        acc = 0
        nbits = 0
        pos = byte0
        for i in range(m):
            while nbits < width:
                acc |= np.int64(codes[pos]) << nbits
                pos += 1
                nbits += 8
            ct[i] = np.int32(acc & mask)
            acc >>= width
            nbits -= width


@njit(**_opts)
def _dequantize(ct, w, sf, out, add, f32):
    """``y = (c - s) * w`` in float64 with ``w = r / s`` (rounded to float32 when ``f32``)."""
    for j in range(out.shape[0]):
        y = (np.float64(ct[j]) - sf) * w
        if f32:
            y = np.float64(np.float32(y))
        if add:
            out[j] = out[j] + y
        else:
            out[j] = y


@njit(**_opts)
def qsgd_decode(scales, codes, n, b, s, width, f32, out, add):
    """``out = decode`` or ``out += decode`` of ``n`` codes of ``width`` bits, any ``s``.

    Each value is rounded to float32 before the add when ``f32`` (the payload's
    or the output's dtype is float32).
    """
    sf = np.float64(s)
    ct = np.zeros(TILE + 8, dtype=np.int32)
    for t0 in range(0, n, TILE):
        t1 = min(t0 + TILE, n)
        _unpack_tile(codes, (t0 // 8) * width, t1 - t0, width, ct)
        i = t0
        while i < t1:
            k = i // b
            hi = min((k + 1) * b, t1)
            w = np.float64(scales[k]) / sf
            _dequantize(ct[i - t0 : hi - t0], w, sf, out[i:hi], add, f32)
            i = hi


#: the signed levels m = c - 1 of the four 2-bit codes of each byte (s = 1), float32
S1_LEVELS = np.array(
    [[((v >> (2 * q)) & 3) - 1.0 for q in range(4)] for v in range(256)], dtype=np.float32
)


@njit(**_opts)
def qsgd_decode_s1(scales, codes, n, b, out, add, tbl):
    """Decode of ``s = 1`` (2-bit codes), bucket size a multiple of 4: four entries per byte.

    ``tbl`` is :data:`S1_LEVELS`.

    ``y = m * (r / 1) = m * r`` with ``m`` in ``{-1, 0, 1}`` is exact in float32, so
    it is the definition's float64 value in either output dtype.
    """
    for k in range(scales.shape[0]):
        lo = k * b
        hi = min(lo + b, n)
        r = scales[k]
        for j in range(lo // 4, hi // 4):
            o = 4 * j
            lv = tbl[codes[j]]
            if add:
                out[o] = out[o] + lv[0] * r
                out[o + 1] = out[o + 1] + lv[1] * r
                out[o + 2] = out[o + 2] + lv[2] * r
                out[o + 3] = out[o + 3] + lv[3] * r
            else:
                out[o] = lv[0] * r
                out[o + 1] = lv[1] * r
                out[o + 2] = lv[2] * r
                out[o + 3] = lv[3] * r
        for i in range(hi - hi % 4, hi):  # the last bucket's partial byte
            y = tbl[codes[i // 4], i % 4] * r
            if add:
                out[i] = out[i] + y
            else:
                out[i] = y


# -- scaled sign -----------------------------------------------------------------------


@njit(**_opts)
def sign_encode(x, b, scales, codes):
    """l1 scales and sign bits of ``x``; returns the count of non-finite scale sums."""
    n = x.shape[0]
    nonfinite = _scales(x, b, 2, scales)
    full = n // 8
    for j in range(full):
        acc = 0
        for q in range(8):
            acc |= (1 if x[8 * j + q] >= 0 else 0) << q
        codes[j] = np.uint8(acc)
    if full * 8 < n:
        acc = 0
        for i in range(full * 8, n):
            acc |= (1 if x[i] >= 0 else 0) << (i - full * 8)
        codes[full] = np.uint8(acc)
    return nonfinite


@njit(**_opts)
def _signs(ct, r, out, add):
    for j in range(out.shape[0]):
        y = r if ct[j] else -r
        if add:
            out[j] = out[j] + y
        else:
            out[j] = y


@njit(**_opts)
def sign_decode(scales, codes, n, b, out, add):
    """``out = decode`` or ``out += decode`` for the scaled sign codec."""
    ct = np.zeros(TILE + 8, dtype=np.int32)
    for t0 in range(0, n, TILE):
        t1 = min(t0 + TILE, n)
        _unpack_tile(codes, t0 // 8, t1 - t0, 1, ct)
        i = t0
        while i < t1:
            k = i // b
            hi = min((k + 1) * b, t1)
            _signs(ct[i - t0 : hi - t0], np.float64(scales[k]), out[i:hi], add)
            i = hi
