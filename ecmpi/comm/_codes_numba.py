"""numba kernels of :mod:`ecmpi.comm.codesum` (imported on first use, as numba is).

- :func:`encode_shared`: qsgd codes of ``x`` against given (shared) bucket
  scales; the tile loop of :mod:`ecmpi.compress._fused_numba` without its
  scale pass, built from the same quantize, tie and pack steps, so its bytes
  are those of :func:`ecmpi.compress.quantize.qsgd_codes_reference` with the
  same scales.
- :func:`add_codes`: ``acc += unpack(codes) - offset`` (int32), tile by tile.
- :func:`pack_sum`: ``pack(acc + offset)`` at a given width.
- :func:`add_pack`: ``pack(unpack(a) + unpack(b))`` from and to widths up to 8,
  eight entries (one word per operand) at a time.
- :func:`decode_codes`: ``out (+)= (unpack(codes) - offset) * weight_k``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..compress._fused import TILE
from ..compress._fused_numba import (
    _FLAG_IN_CODE,
    _FLAG_IN_TIE,
    Tile,
    _blocks,
    _bucket_factors,
    _finish_ties,
    _pack_tile,
    _quantize,
    _quantize_nearest,
    _quantize_s1,
    _quantize_wide,
    _scales,
    _unpack_tile,
)

__all__ = ["add_codes", "add_pack", "bucket_scales", "decode_codes", "encode_shared", "pack_sum"]

_opts = {"cache": True, "error_model": "numpy"}

#: every bucket's scale, and the count of non-finite ones (the fused encoder's scale pass)
bucket_scales = _scales


@njit(**_opts)
def _encode_tiles(x, scales, b, s, width, stochastic, key, codes, ct):
    n = x.shape[0]
    ks = np.float32(65536.0 * s)
    words = np.zeros(TILE // 4, dtype=np.uint32)
    tile = Tile(
        hb=words.view(np.uint8),
        ct=ct,
        tie=np.zeros(TILE, dtype=np.uint8),
        tt=np.zeros(TILE, dtype=np.float32),
        at=np.zeros(TILE, dtype=np.int64),
        low=np.zeros(4 * TILE, dtype=np.uint32),
    )
    tie = tile.tie
    for t0 in range(0, n, TILE):
        t1 = min(t0 + TILE, n)
        m = t1 - t0
        if stochastic:
            _blocks(words, t0 // 16, (m + 15) // 16, key)
        i = t0
        while i < t1:
            k = i // b
            hi = min((k + 1) * b, t1)
            r = scales[k]
            if r > 0 and r < np.inf:
                lift, q = _bucket_factors(r, s)
                if not stochastic:
                    _quantize_nearest(x, i, hi, lift, q, ks, ct[i - t0 : hi - t0])
                elif s == 1 and lift == 1:
                    _quantize_s1(x, i, hi, t0, q, tile)
                elif s <= 255 and lift == 1:
                    _quantize(x, i, hi, t0, q, ks, tile)
                else:
                    _quantize_wide(x, i, hi, t0, lift, q, ks, tile)
                    if s == 1:
                        for j in range(i - t0, hi - t0):
                            ct[j] |= tie[j] << 7
            else:
                ct[i - t0 : hi - t0] = s
                tie[i - t0 : hi - t0] = 0
            i = hi
        if stochastic:
            if s == 1:
                flags, mask = ct[:TILE].view(np.uint64), _FLAG_IN_CODE
            else:
                flags, mask = tie.view(np.uint64), _FLAG_IN_TIE
            _finish_ties(x, t0, m, s, key, flags, mask, tile)
        ct[m : m + 8] = 0
        _pack_tile(ct, m, width, codes, (t0 // 8) * width)


@njit(**_opts)
def encode_shared(x, scales, b, s, width, stochastic, key, codes):
    """Packed qsgd codes of ``x`` (levels ``s``) against the float32 ``scales``."""
    if width <= 8:
        ct = np.zeros(TILE + 8, dtype=np.uint8)
        _encode_tiles(x, scales, b, s, width, stochastic, key, codes, ct)
    else:
        ct16 = np.zeros(TILE + 8, dtype=np.uint16)
        _encode_tiles(x, scales, b, s, width, stochastic, key, codes, ct16)


@njit(**_opts)
def add_codes(codes, width, offset, n, acc):
    """``acc[:n] += unpack(codes, width) - offset`` (int32)."""
    ct = np.zeros(TILE + 8, dtype=np.int32)
    for t0 in range(0, n, TILE):
        m = min(TILE, n - t0)
        _unpack_tile(codes, (t0 // 8) * width, m, width, ct)
        for j in range(m):
            acc[t0 + j] += ct[j] - offset


@njit(**_opts)
def _pack_sum(acc, offset, width, codes, ct):
    n = acc.shape[0]
    for t0 in range(0, n, TILE):
        m = min(TILE, n - t0)
        for j in range(m):
            ct[j] = acc[t0 + j] + offset
        ct[m : m + 8] = 0
        _pack_tile(ct, m, width, codes, (t0 // 8) * width)


@njit(**_opts)
def pack_sum(acc, offset, width, codes):
    """``codes = pack(acc + offset, width)`` (every ``acc + offset`` in ``0 .. 2^width - 1``)."""
    if width <= 8:
        _pack_sum(acc, offset, width, codes, np.zeros(TILE + 8, dtype=np.uint8))
    else:
        _pack_sum(acc, offset, width, codes, np.zeros(TILE + 8, dtype=np.uint16))


@njit(**_opts)
def _load(buf, lo, nbytes):
    """``nbytes`` bytes of ``buf`` from ``lo`` as a little-endian uint64 (zeros past the end)."""
    v = np.uint64(0)
    for k in range(nbytes):
        if lo + k < buf.shape[0]:
            v |= np.uint64(buf[lo + k]) << np.uint64(8 * k)
    return v


@njit(**_opts)
def add_pack(a, wa, b, wb, n, wo, out):
    """``out = pack(unpack(a, wa) + unpack(b, wb), wo)`` for widths up to 8: eight entries
    fill ``w`` bytes at width ``w``, so each group of eight is one uint64 per operand
    (every sum below ``2^wo``)."""
    ma = np.uint64((1 << wa) - 1)
    mb = np.uint64((1 << wb) - 1)
    nout = out.shape[0]
    for g in range((n + 7) // 8):
        va = _load(a, g * wa, wa)
        vb = _load(b, g * wb, wb)
        s = np.uint64(0)
        for q in range(8):
            x = ((va >> np.uint64(q * wa)) & ma) + ((vb >> np.uint64(q * wb)) & mb)
            s |= x << np.uint64(q * wo)
        for k in range(wo):
            j = g * wo + k
            if j < nout:
                out[j] = np.uint8((s >> np.uint64(8 * k)) & np.uint64(0xFF))


@njit(**_opts)
def decode_codes(codes, width, offset, n, weights, b, f32, out, add):
    """``y_i = (c_i - offset) * weights[i // b]`` in float64, rounded to float32 when
    ``f32``; stored into or added onto ``out``."""
    ct = np.zeros(TILE + 8, dtype=np.int32)
    for t0 in range(0, n, TILE):
        m = min(TILE, n - t0)
        _unpack_tile(codes, (t0 // 8) * width, m, width, ct)
        for j in range(m):
            i = t0 + j
            y = np.float64(ct[j] - offset) * weights[i // b]
            if f32:
                y = np.float64(np.float32(y))
            if add:
                out[i] = out[i] + y
            else:
                out[i] = y


@njit(**_opts)
def _spread_table(w_in, w_out):
    """For every byte: its ``8 / w_in`` codes moved to ``w_out``-bit fields of a uint64."""
    per = 8 // w_in
    mask = (1 << w_in) - 1
    t = np.zeros(256, dtype=np.uint64)
    for v in range(256):
        acc = np.uint64(0)
        for q in range(per):
            acc |= np.uint64((v >> (q * w_in)) & mask) << np.uint64(q * w_out)
        t[v] = acc
    return t


@njit(**_opts)
def sum_codes_wide(bufs, n, w_in, w_out, out):
    """``out = pack(sum_p unpack(bufs[p], w_in), w_out)`` for ``w_in`` in {2, 4, 8} and
    ``w_out <= 8``: eight codes at a time in one uint64 of ``w_out``-bit fields (no field
    carries: every sum is below ``2^w_out``), one table look-up per input byte."""
    table = _spread_table(w_in, w_out)
    per = 8 // w_in
    nin = bufs.shape[1]
    nout = out.shape[0]
    shift = np.uint64(per * w_out)
    for g in range((n + 7) // 8):
        s = np.uint64(0)
        for p in range(bufs.shape[0]):
            e = np.uint64(0)
            for k in range(w_in):
                j = g * w_in + k
                if j < nin:
                    e |= table[bufs[p, j]] << (shift * np.uint64(k))
            s += e
        for k in range(w_out):
            j = g * w_out + k
            if j < nout:
                out[j] = np.uint8((s >> np.uint64(8 * k)) & np.uint64(0xFF))


@njit(**_opts)
def decode_table(codes, width, offset, n, weights, b, f32, out, add):
    """:func:`decode_codes` for ``width`` in {2, 4, 8}: one table of ``2^width`` values
    per bucket, one look-up per entry."""
    lg = 3 - (width >> 1) if width < 8 else 0  # log2(8 / width): 2 -> 2, 4 -> 1, 8 -> 0
    low = (1 << lg) - 1
    mask = (1 << width) - 1
    lut = np.empty(1 << width, dtype=out.dtype)
    for k in range(weights.shape[0]):
        w = weights[k]
        for c in range(1 << width):
            y = np.float64(c - offset) * w
            if f32:
                y = np.float64(np.float32(y))
            lut[c] = y
        lo = k * b
        hi = min(lo + b, n)
        if add:
            for i in range(lo, hi):
                out[i] += lut[(np.int32(codes[i >> lg]) >> ((i & low) * width)) & mask]
        else:
            for i in range(lo, hi):
                out[i] = lut[(np.int32(codes[i >> lg]) >> ((i & low) * width)) & mask]
