"""The numba kernels of :mod:`ecmpi.compress.elias` (same bytes as its NumPy reference).

The encoder reads the fixed-width packed qsgd codes tile by tile
(:func:`ecmpi.compress._fused_numba._unpack_tile`) twice: once to count the
stream's bits, so the payload is allocated at its exact size, once to write
them. The decoder walks the stream bit by bit into qsgd codes (or only checks
it), so a malformed stream is found before any value is written.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._fused import TILE
from ._fused_numba import _unpack_tile, qsgd_decode

__all__ = ["dequantize", "read_stream", "stream_nbits", "write_stream"]

_opts = {"cache": True, "error_model": "numpy"}


@njit(inline="always")
def _gamma_len(v):
    """``2 floor(log2 v) + 1`` for ``v >= 1``."""
    nb = 0
    while v >> (nb + 1):
        nb += 1
    return 2 * nb + 1


@njit(**_opts)
def stream_nbits(packed, n, s, width):
    """Bits of the Elias stream of ``n`` packed codes of ``width`` bits, ``s`` levels."""
    ct = np.zeros(TILE + 8, dtype=np.int32)
    total = 0
    prev = -1
    for t0 in range(0, n, TILE):
        m = min(TILE, n - t0)
        _unpack_tile(packed, (t0 // 8) * width, m, width, ct)
        for j in range(m):
            lv = ct[j] - s
            if lv != 0:
                total += _gamma_len(t0 + j - prev) + 1
                if s > 1:
                    total += _gamma_len(abs(lv))
                prev = t0 + j
    return total


@njit(inline="always")
def _put(out, pos, v, nb):
    """Write the ``nb`` low bits of ``v``, most significant first, at stream bit ``pos``."""
    for k in range(nb - 1, -1, -1):
        if (v >> k) & 1:
            out[pos >> 3] |= np.uint8(1 << (pos & 7))
        pos += 1
    return pos


@njit(**_opts)
def write_stream(packed, n, s, width, out):
    """Write the Elias stream into ``out`` (zeroed, ``ceil(nbits/8)`` bytes)."""
    ct = np.zeros(TILE + 8, dtype=np.int32)
    pos = 0
    prev = -1
    for t0 in range(0, n, TILE):
        m = min(TILE, n - t0)
        _unpack_tile(packed, (t0 // 8) * width, m, width, ct)
        for j in range(m):
            lv = ct[j] - s
            if lv != 0:
                g = t0 + j - prev
                pos = _put(out, pos, g, _gamma_len(g))
                pos = _put(out, pos, 1 if lv < 0 else 0, 1)
                if s > 1:
                    a = abs(lv)
                    pos = _put(out, pos, a, _gamma_len(a))
                prev = t0 + j
    return pos


@njit(inline="always")
def _bit(stream, pos):
    return (stream[pos >> 3] >> (pos & 7)) & 1


@njit(inline="always")
def _gamma(stream, pos, nbits, limit):
    """``(value, next position)`` of the gamma code at ``pos``; value < 0 is an error code."""
    zeros = 0
    while pos < nbits and _bit(stream, pos) == 0:
        zeros += 1
        pos += 1
        if zeros > limit:
            return -2, pos
    if pos + zeros + 1 > nbits:
        return -1, pos
    v = 0
    for _ in range(zeros + 1):
        v = (v << 1) | np.int64(_bit(stream, pos))
        pos += 1
    return v, pos


@njit(**_opts)
def read_stream(stream, nbits, n, s, codes, store):
    """Parse the stream; with ``store`` write the codes (``s`` where the level is 0).

    Returns the number of nonzero entries, or a negative error code
    (:data:`ecmpi.compress.elias.ERRORS`).
    """
    for k in range(nbits, stream.shape[0] * 8):
        if _bit(stream, k):
            return -5
    if store:
        codes[:] = s
    gap_limit = 0
    while n >> (gap_limit + 1):
        gap_limit += 1
    lev_limit = 0
    while s >> (lev_limit + 1):
        lev_limit += 1
    pos = 0
    i = -1
    count = 0
    while pos < nbits:
        g, pos = _gamma(stream, pos, nbits, gap_limit)
        if g < 0:
            return g
        i += g
        if i >= n:
            return -3
        if pos >= nbits:
            return -1
        neg = _bit(stream, pos)
        pos += 1
        lev = 1
        if s > 1:
            lev, pos = _gamma(stream, pos, nbits, lev_limit)
            if lev < 0:
                return lev
            if lev > s:
                return -4
        if store:
            codes[i] = s - lev if neg else s + lev
        count += 1
    return count


@njit(**_opts)
def dequantize(scales, codes, n, b, s, f32, out, add):
    """The fixed-width decoder on 16-bit codes (:func:`_fused_numba.qsgd_decode`)."""
    qsgd_decode(scales, codes.view(np.uint8), n, b, s, 16, f32, out, add)
