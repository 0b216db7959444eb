"""Elias gamma coding of qsgd levels (QSGD, Section 3.3 "Efficient coding").

``qsgd:...,coding=elias`` sends the same quantized vector as fixed-width qsgd
(same scales, same levels for the same seed), but codes the levels as a
variable-length bit stream instead of ``ceil(log2(2s+1))`` bits per entry. For
every entry with a nonzero level ``l``, in index order, the stream holds

1. ``gamma(g)``: the gap ``g = i - i_prev`` to the previous nonzero entry
   (``i_prev = -1`` for the first one), so ``g >= 1``;
2. one sign bit: 0 for ``+l``, 1 for ``-l``;
3. ``gamma(l)`` when ``s > 1`` (for ``s = 1`` every nonzero level is 1 and is
   not sent).

``gamma(v)`` for ``v >= 1`` with ``N = floor(log2 v)`` is ``N`` zero bits
followed by the ``N + 1`` binary digits of ``v``, most significant first
(``2N + 1`` bits: 1 -> ``1``, 2 -> ``010``, 5 -> ``00101``). Bit ``k`` of the
stream is bit ``k % 8`` of byte ``k // 8`` (the layout of 1-bit codes in
:mod:`ecmpi.compress.packing`); the header's ``ncodes`` is the stream's length
in bits and the unused high bits of the last byte are zero. The stream ends
with the last nonzero entry; entries after it are zero.

Expected size: with ``p`` the fraction of nonzero levels, about
``p (2 log2(1/p) + 2)`` bits per entry for ``s = 1`` (for a Gaussian bucket of
``b`` entries ``p ~ s sqrt(2/(pi b))``), against ``2`` for fixed width; the
worst case (:func:`max_stream_bits`) is ``2.5`` bits per entry for ``s = 1``
and ``2.5 + 2 floor(log2 s) + 1`` otherwise. Gamma is shorter than Elias
omega (the paper's recursive code) for every value below 64, which covers the
gaps and levels of coarse quantizers.

This module holds the NumPy reference (:func:`encode_reference`,
:func:`decode_reference`) and the dispatch to the numba fast path
(:mod:`ecmpi.compress._elias_numba`), which writes the same bytes.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from . import _fused
from .payload import CODECS, Payload, register_body_check

__all__ = [
    "CODEC",
    "decode_codes",
    "decode_reference",
    "dequantize",
    "encode_packed",
    "encode_reference",
    "gamma_nbits",
    "max_stream_bits",
]

#: the codec id of qsgd with Elias-coded levels
CODEC = CODECS["qsgd-elias"]

#: error codes of the stream parser -> message
ERRORS = {
    -1: "the stream ends inside a code",
    -2: "a code is longer than any value it may hold",
    -3: "a position lies beyond the vector's end",
    -4: "a level exceeds the quantizer's s",
    -5: "padding bits after the stream are not zero",
}

_KERNELS: ModuleType | None = None


def _kernels() -> ModuleType:
    global _KERNELS
    if _KERNELS is None:
        from . import _elias_numba

        _KERNELS = _elias_numba
    return _KERNELS


def gamma_nbits(v: np.ndarray) -> np.ndarray:
    """Bits of ``gamma(v)``: ``2 floor(log2 v) + 1`` for integers ``v >= 1`` (int64)."""
    v = np.asarray(v, dtype=np.int64)
    return 2 * (np.frexp(v.astype(np.float64))[1].astype(np.int64) - 1) + 1


def max_stream_bits(n: int, levels: int) -> int:
    """An upper bound of the stream's bits for ``n`` entries and ``s = levels``.

    ``gamma(g) <= 1.5 g`` for every ``g >= 1`` and the gaps sum to at most ``n``,
    so the gaps take at most ``1.5 n`` bits; signs ``n``; levels
    ``n (2 floor(log2 s) + 1)`` when ``s > 1``.
    """
    lev = n * (2 * (int(levels).bit_length() - 1) + 1) if levels > 1 else 0
    return (3 * n) // 2 + n + lev


def _error(code: int, n: int, levels: int) -> ValueError:
    return ValueError(
        f"qsgd-elias payload (n={n}, s={levels}): {ERRORS.get(code, f'error {code}')}"
    )


# -- NumPy reference --------------------------------------------------------------------


def encode_reference(codes: np.ndarray, levels: int) -> tuple[np.ndarray, int]:
    """The Elias stream of qsgd ``codes`` (``c = s + sign * l``): ``(bytes, nbits)``."""
    m = codes.astype(np.int64) - levels
    nz = np.flatnonzero(m)
    gaps = np.diff(nz, prepend=-1)
    sign = (m[nz] < 0).astype(np.int64)
    cols_v = [gaps, sign]
    cols_w = [gamma_nbits(gaps), np.ones_like(sign)]
    if levels > 1:
        lev = np.abs(m[nz])
        cols_v.append(lev)
        cols_w.append(gamma_nbits(lev))
    vals = np.stack(cols_v, axis=1).ravel()
    widths = np.stack(cols_w, axis=1).ravel()
    nbits = int(widths.sum())
    tok = np.repeat(np.arange(vals.shape[0]), widths)
    start = np.cumsum(widths) - widths
    k = np.arange(nbits, dtype=np.int64) - start[tok]
    bits = ((vals[tok] >> (widths[tok] - 1 - k)) & 1).astype(np.uint8)
    return np.packbits(bits, bitorder="little"), nbits


def decode_reference(stream: np.ndarray, nbits: int, n: int, levels: int) -> np.ndarray:
    """qsgd codes (uint16, length ``n``) of an Elias stream; ValueError if malformed."""
    if stream.shape[0] != (nbits + 7) // 8:
        raise _error(-1, n, levels)
    allbits = np.unpackbits(stream, bitorder="little")
    if allbits[nbits:].any():
        raise _error(-5, n, levels)
    bits = allbits[:nbits].tolist()
    ones = np.flatnonzero(allbits[:nbits])
    codes = np.full(n, levels, dtype=np.uint16)
    max_gap_zeros = int(n).bit_length() - 1
    max_lev_zeros = int(levels).bit_length() - 1

    def gamma(pos: int, limit: int) -> tuple[int, int]:
        j = np.searchsorted(ones, pos)
        one = int(ones[j]) if j < ones.shape[0] else nbits
        zeros = one - pos
        if one >= nbits:
            raise _error(-1, n, levels)
        if zeros > limit:
            raise _error(-2, n, levels)
        end = one + zeros + 1
        if end > nbits:
            raise _error(-1, n, levels)
        v = 0
        for b in bits[one:end]:
            v = (v << 1) | b
        return v, end

    pos, i = 0, -1
    while pos < nbits:
        g, pos = gamma(pos, max_gap_zeros)
        i += g
        if i >= n:
            raise _error(-3, n, levels)
        if pos >= nbits:
            raise _error(-1, n, levels)
        neg = bits[pos]
        pos += 1
        lev = 1
        if levels > 1:
            lev, pos = gamma(pos, max_lev_zeros)
            if lev > levels:
                raise _error(-4, n, levels)
        codes[i] = levels - lev if neg else levels + lev
    return codes


# -- dispatch (numba fast path or the reference) -------------------------------------------


def encode_packed(packed: np.ndarray, n: int, levels: int, width: int) -> tuple[np.ndarray, int]:
    """The Elias stream of ``n`` fixed-width packed qsgd codes: ``(bytes, nbits)``."""
    if _fused.enabled():
        k = _kernels()
        nbits = int(k.stream_nbits(packed, n, levels, width))
        out = np.zeros((nbits + 7) // 8, dtype=np.uint8)
        k.write_stream(packed, n, levels, width, out)
        return out, nbits
    from .packing import unpack_bits

    return encode_reference(unpack_bits(packed, width, n), levels)


def decode_codes(stream: np.ndarray, nbits: int, n: int, levels: int) -> np.ndarray:
    """The qsgd codes (uint16) of an Elias stream; ValueError naming what is malformed."""
    if not _fused.enabled():
        return decode_reference(stream, nbits, n, levels)
    if stream.shape[0] != (nbits + 7) // 8:
        raise _error(-1, n, levels)
    codes = np.empty(n, dtype=np.uint16)
    err = int(_kernels().read_stream(stream, nbits, n, levels, codes, True))
    if err < 0:
        raise _error(err, n, levels)
    return codes


def dequantize(
    codes: np.ndarray,
    scales: np.ndarray,
    n: int,
    b: int,
    levels: int,
    f32: bool,
    out: np.ndarray,
    add: bool,
) -> None:
    """``out (+)= (c - s) * (r / s)`` with the fused fixed-width decoder (16-bit codes)."""
    _kernels().dequantize(scales, codes, n, b, levels, f32, out, add)


def check_stream(p: Payload) -> None:
    """ValueError unless ``p``'s header and Elias stream are well formed (body check)."""
    h = p.header
    if h.bits != 1 or not 1 <= h.param <= 32767 or h.bucket < 1:
        raise ValueError(
            f"qsgd-elias payload header: code width {h.bits} (must be 1), "
            f"levels {h.param}, bucket {h.bucket}"
        )
    if h.n < 1 or h.nscales != -(-h.n // h.bucket) or h.nidx or h.nvals:
        raise ValueError(
            f"qsgd-elias payload header: {h.nscales} scales, {h.nidx} indices, {h.nvals} "
            f"values for n={h.n}, bucket={h.bucket}"
        )
    if h.ncodes > max_stream_bits(h.n, h.param):
        raise ValueError(
            f"qsgd-elias payload header: a {h.ncodes}-bit stream is longer than any of "
            f"n={h.n} entries at s={h.param} ({max_stream_bits(h.n, h.param)} bits)"
        )
    stream = p.codes
    if not isinstance(stream, np.ndarray):  # a device buffer: check a host copy
        stream = stream.get()
    if not _fused.enabled():
        decode_reference(stream, h.ncodes, h.n, h.param)
        return
    none = np.empty(0, dtype=np.uint16)
    err = int(_kernels().read_stream(stream, h.ncodes, h.n, h.param, none, False))
    if err < 0:
        raise _error(err, h.n, h.param)


register_body_check(CODEC, check_stream)
