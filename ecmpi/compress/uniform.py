"""The uniform R-bit per-coordinate quantizer on ``[-r, r]`` (codec 8, ``uniform``).

This is the quantizer of DQ-GD (Lin, Kostina, Hassibi, arXiv 2002.02508):
coordinate ``i`` gets ``b_i`` bits, the interval ``[-r_i, r_i]`` is cut into
``2^b_i`` cells of width ``2 r_i / 2^b_i`` and a value is sent as the index of
its cell and decoded as the cell's midpoint. For ``|u_i| <= r_i``:

    |Q(u)_i - u_i| <= r_i * 2^-b_i

A value outside the range is clipped to the outer cell and counted as
*saturated* (its error then exceeds the bound).

**Bits.** ``R`` bits per dimension may be fractional: the total
``B = floor(n*R)`` bits are spread over the coordinates deterministically as
``b_i = floor((i+1)*B/n) - floor(i*B/n)``, so every ``b_i`` is ``floor(B/n)``
or ``ceil(B/n)`` and they sum to ``B`` exactly. Coordinates with ``b_i = 0``
decode to 0. Codes are concatenated LSB-first into one tight bit stream of
``ceil(B/8)`` bytes, the layout of :mod:`ecmpi.compress.packing` (whose
``pack_bits`` writes it when all widths are equal).

**Covering efficiency.** The cube ``[-r, r]^n`` contains the l2 ball of radius
``r``; its worst-case l2 error is ``r * sqrt(sum_i 4^-b_i)``, which is
``rho * 2^-R * r`` with ``rho = sqrt(n)`` for integer ``R``
(:func:`l2_error_factor` gives the exact factor for any ``R``).

**Range.** Either *predetermined* (passed per call as ``r``, a scalar or one
value per coordinate, known to both sides, nothing sent: DQ-GD's range
recursion) or *sent* as one float32 scale ``r = ||u||_inf`` (32 extra bits,
never saturates). The wire header (48 bytes) has ``param = B``; ``bits = B/n``
and ``ncodes = n`` when every width is equal, else ``bits = 1`` and
``ncodes = B`` (the stream read as single bits, flag bit 1); flag bit 0 marks a
sent scale.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from ..rng import SeedLike
from .base import Compressor, register
from .packing import MAX_WIDTH, pack_bits, packed_nbytes, unpack_bits
from .payload import Header, Payload

__all__ = [
    "UniformQuantizer",
    "bit_widths",
    "dequantize",
    "l2_error_factor",
    "linf_scale",
    "pack_codes",
    "quantize",
    "total_bits",
    "unpack_codes",
]

_FLAG_SCALE = 1
_FLAG_VARWIDTH = 2


def total_bits(n: int, bits: float) -> int:
    """``B = floor(n * R)``, computed exactly (R read as the decimal it prints as)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, float, np.integer, np.floating)):
        raise TypeError(f"bits per dimension must be a number, got {bits!r}")
    if not math.isfinite(bits) or not 0 < bits <= MAX_WIDTH:
        raise ValueError(f"bits per dimension must be in (0, {MAX_WIDTH}], got {bits!r}")
    if n <= 0:
        raise ValueError(f"vector length must be positive, got {n}")
    return math.floor(n * Fraction(repr(float(bits))))


def bit_widths(n: int, bits: float) -> np.ndarray:
    """Per-coordinate widths ``b_i = floor((i+1)B/n) - floor(iB/n)``, ``B = floor(n*R)``."""
    big_b = total_bits(n, bits)
    i = np.arange(n + 1, dtype=np.int64)
    edges = (i * big_b) // n
    return np.diff(edges).astype(np.uint8)


def l2_error_factor(widths: np.ndarray) -> float:
    """Worst-case ``||Q(u) - u||_2 / r`` over the cube: ``sqrt(sum_i 4^-b_i)``.

    Equals ``rho * 2^-R`` with ``rho = sqrt(n)`` when all widths equal ``R``.
    """
    w = np.asarray(widths, dtype=np.float64)
    return float(np.sqrt(np.sum(np.exp2(-2.0 * w))))


def linf_scale(u: np.ndarray) -> float:
    """The sent range: ``float32(max |u_i|)`` (exact for float32 input, rounded up otherwise)."""
    m = float(np.max(np.abs(u)))
    s = np.float32(m)
    if float(s) < m:
        s = np.nextafter(s, np.float32(np.inf))
    return float(s)


def quantize(u: np.ndarray, r: Any, widths: np.ndarray) -> tuple[np.ndarray, int]:
    """Cell indices of ``u`` on ``[-r, r]`` and the number of saturated coordinates.

    In float64, per coordinate (``s = 2^b``)::

        k = floor(((u + r) * s) / (2 r)), clipped to 0 .. s-1   (k = 0 when r = 0)
        saturated: |u| > r

    Args:
        u: 1-D float array.
        r: the range, a non-negative scalar or one value per coordinate.
        widths: per-coordinate bit widths (:func:`bit_widths`).

    Returns:
        ``(codes, n_saturated)``; codes as uint16.
    """
    u = np.asarray(u, dtype=np.float64)
    r = _check_range(r, u.shape[0])
    s = np.exp2(np.asarray(widths, dtype=np.float64))
    two_r = 2.0 * r
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.floor(((u + r) * s) / two_r)
    k = np.where(two_r > 0, k, 0.0)
    k = np.clip(k, 0.0, s - 1.0)
    saturated = int(np.count_nonzero(np.abs(u) > r))
    return k.astype(np.uint16), saturated


def dequantize(
    codes: np.ndarray, r: Any, widths: np.ndarray, dtype: Any = np.float64
) -> np.ndarray:
    """Cell midpoints: ``y = ((k + 0.5) * (2 r)) / s - r`` in float64, then cast to ``dtype``."""
    k = np.asarray(codes, dtype=np.float64)
    r = _check_range(r, k.shape[0])
    s = np.exp2(np.asarray(widths, dtype=np.float64))
    return (((k + 0.5) * (2.0 * r)) / s - r).astype(dtype)


def pack_codes(codes: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """One LSB-first bit stream of ``sum(widths)`` bits, ``ceil(sum/8)`` bytes."""
    widths = np.asarray(widths, dtype=np.int64)
    codes = np.asarray(codes)
    if codes.shape != widths.shape:
        raise ValueError(f"codes {codes.shape} and widths {widths.shape} differ in shape")
    w0 = int(widths[0])
    if w0 > 0 and np.all(widths == w0):
        return pack_bits(codes, w0)
    bits = _expand_bits(codes, widths)
    return np.packbits(bits, bitorder="little")


def unpack_codes(buf: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_codes` (uint16 codes)."""
    widths = np.asarray(widths, dtype=np.int64)
    n = widths.shape[0]
    big_b = int(widths.sum())
    buf = np.asarray(buf, dtype=np.uint8)
    if buf.ndim != 1 or buf.shape[0] != packed_nbytes(big_b, 1):
        raise ValueError(
            f"packed codes must be {packed_nbytes(big_b, 1)} bytes for {big_b} bits, "
            f"got shape {buf.shape}"
        )
    w0 = int(widths[0])
    if w0 > 0 and np.all(widths == w0):
        return unpack_bits(buf, w0, n)
    bits = np.unpackbits(buf, bitorder="little")[:big_b].astype(np.uint32)
    owner = np.repeat(np.arange(n), widths)
    pos = np.arange(big_b) - np.repeat(np.cumsum(widths) - widths, widths)
    out = np.zeros(n, dtype=np.uint32)
    np.add.at(out, owner, bits << pos.astype(np.uint32))
    return out.astype(np.uint16)


def _expand_bits(codes: np.ndarray, widths: np.ndarray) -> np.ndarray:
    owner = np.repeat(np.arange(widths.shape[0]), widths)
    pos = np.arange(int(widths.sum())) - np.repeat(np.cumsum(widths) - widths, widths)
    return ((codes.astype(np.uint32)[owner] >> pos.astype(np.uint32)) & 1).astype(np.uint8)


def _check_range(r: Any, n: int) -> Any:
    arr = np.asarray(r, dtype=np.float64)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
        raise ValueError(f"range must be a scalar or have {n} entries, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("range r must be finite and non-negative")
    return arr if arr.ndim else float(arr)


@register
class UniformQuantizer(Compressor):
    """``uniform``: deterministic R-bit midpoint quantizer per coordinate on ``[-r, r]``.

    Args:
        bits: R, bits per dimension (0 < R <= 16; fractional R spreads
            ``floor(n*R)`` bits over the coordinates).
        scale: True sends ``r = ||x||_inf`` as a float32 scale (32 bits more);
            False (default) takes the range per call: ``encode(x, r=...)`` and
            ``decode(p, r=...)``, nothing sent.
        r: the default range for ``scale=False`` when a call passes none.

    Deterministic and biased; see the module docstring for the arithmetic.
    With ``scale=True`` a contraction (:meth:`delta`); with a range per call
    none (the error is relative to ``r``, not to ``||x||``).
    """

    name = "uniform"
    unbiased = False

    def delta(self, n: int) -> float:
        """``scale=True``: ``max(0, 1 - c * sum_i 4^-b_i)``, else 0.

        Per coordinate ``|Q(x)_i - x_i| <= r 2^-b_i`` with ``r = ||x||_inf <=
        ||x||_2``; ``c = ((1 + 2^-23)(1 + 2^-8))^2`` covers the float32 scale
        rounded up and the float32 output rounding (``<= 2^-24 r <= 2^-8 r 2^-b_i``).
        """
        if not self.scale:
            return 0.0
        c = ((1.0 + 2.0**-23) * (1.0 + 2.0**-8)) ** 2
        return max(0.0, 1.0 - c * l2_error_factor(self.widths(n)) ** 2)

    def __init__(
        self,
        bits: float = 4,
        scale: bool = False,
        r: float | None = None,
        *,
        check_finite: bool = True,
    ):
        super().__init__(check_finite=check_finite)
        total_bits(1, bits)  # validates
        self.bits = bits
        self.scale = bool(scale)
        if r is not None:
            _check_range(r, 1)
        self.r = None if r is None else float(r)
        #: saturated coordinates in the last :meth:`encode`
        self.last_saturated = 0

    def widths(self, n: int) -> np.ndarray:
        """Per-coordinate bit widths for a vector of ``n`` entries."""
        return bit_widths(n, self.bits)

    def header(self, n: int, dtype: Any) -> Header:
        big_b = total_bits(n, self.bits)
        flags = _FLAG_SCALE if self.scale else 0
        if big_b % n == 0:
            width, ncodes = big_b // n, n
        else:
            width, ncodes, flags = 1, big_b, flags | _FLAG_VARWIDTH
        return self._new_header(
            n,
            dtype,
            bits=width,
            ncodes=ncodes,
            flags=flags,
            param=big_b,
            nscales=1 if self.scale else 0,
        )

    def warm_up(self, like: Any) -> None:
        """Nothing to compile: this codec is plain NumPy (and a range may be per call)."""

    def _resolve_range(self, r: Any, n: int) -> Any:
        if self.scale:
            if r is not None:
                raise ValueError("uniform: scale=True sends the range itself; do not pass r")
            return None
        r = self.r if r is None else r
        if r is None:
            raise ValueError("uniform: scale=False needs a range: pass r=... or build it with r")
        return _check_range(r, n)

    def encode(self, x: Any, *, seed: SeedLike = 0, rank: int = 0, r: Any = None) -> Payload:
        """Quantize ``x`` on ``[-r, r]`` (``r`` per call unless ``scale=True``).

        The number of saturated coordinates is left in :attr:`last_saturated`.
        """
        x = self._check_input(x)
        return self._encode_range(np.asarray(x), self._resolve_range(r, x.shape[0])).seal()

    def _encode(self, x: Any, seed: SeedLike, rank: int) -> Payload:
        x = np.asarray(x)
        return self._encode_range(x, self._resolve_range(None, x.shape[0]))

    def _encode_range(self, x: np.ndarray, r: Any) -> Payload:
        n = x.shape[0]
        p = Payload.allocate(self.header(n, x.dtype))
        if self.scale:
            r = linf_scale(x)
            p.scales[0] = r
        widths = self.widths(n)
        codes, self.last_saturated = quantize(x, r, widths)
        p.codes[:] = pack_codes(codes, widths)
        return p

    def decode(self, payload: Payload, *, out: Any = None, r: Any = None) -> Any:
        """Cell midpoints of the payload's codes (``r`` as given to :meth:`encode`)."""
        self.check_payload(payload)
        h = payload.header
        r = float(payload.scales[0]) if self.scale else self._resolve_range(r, h.n)
        if out is None:
            out = np.empty(h.n, dtype=h.out_dtype)
        elif out.shape != (h.n,) or out.dtype != h.out_dtype:
            raise ValueError(
                f"out must have shape ({h.n},) and dtype {h.out_dtype}, got {out.shape} {out.dtype}"
            )
        self._decode_range(payload, out, r)
        return out

    def roundtrip(self, x: Any, *, seed: SeedLike = 0, rank: int = 0, r: Any = None) -> Any:
        """``decode(encode(x, r=r), r=r)``."""
        return self.decode(self.encode(x, seed=seed, rank=rank, r=r), r=r)

    def _decode(self, payload: Payload, out: Any) -> None:
        h = payload.header
        r = float(payload.scales[0]) if self.scale else self._resolve_range(None, h.n)
        self._decode_range(payload, out, r)

    def _decode_range(self, payload: Payload, out: Any, r: Any) -> None:
        widths = self.widths(payload.header.n)
        codes = unpack_codes(np.asarray(payload.codes), widths)
        out[:] = dequantize(codes, r, widths, out.dtype)
