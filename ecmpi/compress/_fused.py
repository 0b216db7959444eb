"""Fused CPU kernels (numba): one pass per tile instead of many NumPy passes.

Each kernel produces exactly the bytes of the NumPy reference in
:mod:`ecmpi.compress.quantize` (the arithmetic is fixed by
``docs/compressors.md``). Encoding works on tiles of ``TILE`` entries: the
Philox-4x32-10 blocks of the tile are generated first, in a loop without
branches that LLVM vectorizes (the 32x32->64-bit products become
``vpmuludq``), then the tile is quantized and packed while it is in L1.

The fast path is on by default when numba imports. Set the environment
variable ``ECMPI_FUSED=0`` (read at import) or call :func:`set_enabled` to run
the NumPy reference instead, e.g. to compare both in tests. Kernels are
compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a dependency
    njit = None

__all__ = [
    "TILE",
    "disabled",
    "enabled",
    "qsgd_decode",
    "qsgd_encode",
    "random_u32",
    "set_enabled",
    "sign_decode",
    "sign_encode",
]

TILE = 2048  # entries per tile: a multiple of 8 (one Philox block = 8 draws of 16 bits)

_ENABLED = njit is not None and os.environ.get("ECMPI_FUSED", "1").strip().lower() not in (
    "0",
    "false",
    "no",
    "off",
)


def enabled() -> bool:
    """True when encode/decode on the CPU use the fused kernels."""
    return _ENABLED


def set_enabled(flag: bool) -> bool:
    """Turn the fused kernels on or off; returns the previous setting."""
    global _ENABLED
    if flag and njit is None:
        raise RuntimeError("the fused CPU kernels need numba, which is not installed")
    prev, _ENABLED = _ENABLED, bool(flag)
    return prev


@contextmanager
def disabled() -> Iterator[None]:
    """Run the NumPy reference inside the ``with`` block."""
    prev = set_enabled(False)
    try:
        yield
    finally:
        set_enabled(prev)


if njit is not None:
    _M32 = np.uint64(0xFFFFFFFF)
    _S32 = np.uint64(32)
    _PM0 = np.uint64(0xD2511F53)
    _PM1 = np.uint64(0xCD9E8D57)
    _W0_32 = np.uint32(0x9E3779B9)
    _W1_32 = np.uint32(0xBB67AE85)

    _opts = {"cache": True, "error_model": "numpy"}

    @njit(**_opts)
    def _blocks(words, blk0, nblk, s0, s1, k0, k1):
        """Philox-4x32-10 blocks ``blk0 .. blk0+nblk-1`` into ``words[4j .. 4j+3]``.

        32-bit lanes; each product is a 32x32->64-bit multiply, so the loop over
        blocks vectorizes (vpmuludq).
        """
        for j in range(nblk):
            blk = np.uint64(blk0 + j)
            c0 = np.uint32(blk & _M32)
            c1 = np.uint32(blk >> _S32)
            c2 = np.uint32(s0)
            c3 = np.uint32(s1)
            kk0 = np.uint32(k0)
            kk1 = np.uint32(k1)
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
            words[4 * j] = c0
            words[4 * j + 1] = c1
            words[4 * j + 2] = c2
            words[4 * j + 3] = c3

    @njit(**_opts)
    def _blocks16(half, blk0, nblk, s0, s1, k0, k1):
        """As :func:`_blocks`, split into 16-bit halves (low first): 8 draws per block."""
        for j in range(nblk):
            blk = np.uint64(blk0 + j)
            c0 = np.uint32(blk & _M32)
            c1 = np.uint32(blk >> _S32)
            c2 = np.uint32(s0)
            c3 = np.uint32(s1)
            kk0 = np.uint32(k0)
            kk1 = np.uint32(k1)
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
            half[8 * j] = np.uint16(c0 & 0xFFFF)
            half[8 * j + 1] = np.uint16(c0 >> 16)
            half[8 * j + 2] = np.uint16(c1 & 0xFFFF)
            half[8 * j + 3] = np.uint16(c1 >> 16)
            half[8 * j + 4] = np.uint16(c2 & 0xFFFF)
            half[8 * j + 5] = np.uint16(c2 >> 16)
            half[8 * j + 6] = np.uint16(c3 & 0xFFFF)
            half[8 * j + 7] = np.uint16(c3 >> 16)

    @njit(**_opts)
    def _random_u32(n, k0, k1, s0, s1):
        out = np.empty((n + 3) // 4 * 4, dtype=np.uint32)
        _blocks(out, 0, out.shape[0] // 4, s0, s1, k0, k1)
        return out[:n]

    @njit(inline="always")
    def _treesum(buf, length, width):
        """Tree sum of ``buf[:length]`` zero-padded to ``width`` (a power of two)."""
        for j in range(length, width):
            buf[j] = 0.0
        h = width // 2
        while h >= 1:
            for j in range(h):
                buf[j] = buf[j] + buf[j + h]
            h //= 2
        return buf[0]

    @njit(**_opts)
    def _scales(x, b, norm, scales):
        """Bucket scales; norm 0 = l2, 1 = linf, 2 = l1 (see buckets.py)."""
        n = x.shape[0]
        span = min(b, n)
        width = 1
        while width < span:
            width *= 2
        buf = np.empty(width, dtype=np.float64)
        for k in range(scales.shape[0]):
            lo = k * b
            hi = min(lo + b, n)
            m = hi - lo
            if norm == 0:
                for j in range(m):
                    v = np.float64(x[lo + j])
                    buf[j] = v * v
                scales[k] = np.float32(np.sqrt(_treesum(buf, m, width)))
            elif norm == 1:
                mx = 0.0
                nan = False
                for j in range(m):
                    a = abs(np.float64(x[lo + j]))
                    mx = a if a > mx else mx
                    nan |= a != a
                scales[k] = np.float32(np.nan if nan else mx)
            else:
                for j in range(m):
                    buf[j] = abs(np.float64(x[lo + j]))
                scales[k] = np.float32(_treesum(buf, m, width) / np.float64(m))

    @njit(**_opts)
    def _pack_tile(ct, m, width, codes, byte0):
        """Pack ``ct[:m]`` (zero beyond m up to 8 entries more) at ``codes[byte0:]``."""
        if width == 2:
            v4 = ct.view(np.uint32)
            out = codes[byte0 : byte0 + (m + 3) // 4]
            for j in range(out.shape[0]):
                v = v4[j]
                out[j] = np.uint8(
                    (v & 3) | ((v >> 6) & 0xC) | ((v >> 12) & 0x30) | ((v >> 18) & 0xC0)
                )
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
    def _quantize_stochastic(xs, rt, us, cs, sf):
        """Codes of a tile; ``rt`` holds each entry's scale (finite and positive).

        ``lev <= s`` holds without the final ``min`` of the definition: ``p = s``
        has ``frac = 0`` and is never rounded up.
        """
        for j in range(xs.shape[0]):
            xv = np.float64(xs[j])
            p = min((abs(xv) * sf) / rt[j], sf)
            lev = np.floor(p)
            lev = lev + (1.0 if np.float64(us[j]) < (p - lev) * 65536.0 else 0.0)
            cs[j] = np.int32(sf + math.copysign(lev, xv))

    @njit(**_opts)
    def _quantize_nearest(xs, rt, cs, sf):
        for j in range(xs.shape[0]):
            xv = np.float64(xs[j])
            p = min((abs(xv) * sf) / rt[j], sf)
            lev = np.floor(p)
            lev = lev + (1.0 if p - lev >= 0.5 else 0.0)
            cs[j] = np.int32(sf + math.copysign(lev, xv))

    @njit(**_opts)
    def _tile_scales(scales, b, t0, t1, rt):
        """Each entry's scale into ``rt``; True if some bucket's scale is 0 or not finite."""
        bad = False
        i = t0
        while i < t1:
            k = i // b
            hi = min((k + 1) * b, t1)
            r = np.float64(scales[k])
            if not (r > 0.0 and r < np.inf):
                r = 1.0
                bad = True
            rt[i - t0 : hi - t0] = r
            i = hi
        return bad

    @njit(**_opts)
    def _fix_zero_buckets(scales, b, s, t0, t1, ct):
        """Code ``s`` (level 0) in every bucket whose scale is 0 or not finite."""
        i = t0
        while i < t1:
            k = i // b
            hi = min((k + 1) * b, t1)
            r = np.float64(scales[k])
            if not (r > 0.0 and r < np.inf):
                ct[i - t0 : hi - t0] = s
            i = hi

    @njit(**_opts)
    def _qsgd_tiles(x, b, s, stochastic, k0, k1, s0, s1, width, scales, codes, ct, rt, u16):
        n = x.shape[0]
        sf = np.float64(s)
        for t0 in range(0, n, TILE):
            t1 = min(t0 + TILE, n)
            m = t1 - t0
            bad = _tile_scales(scales, b, t0, t1, rt)
            if stochastic:
                _blocks16(u16, t0 // 8, (m + 7) // 8, s0, s1, k0, k1)
                _quantize_stochastic(x[t0:t1], rt, u16, ct, sf)
            else:
                _quantize_nearest(x[t0:t1], rt, ct, sf)
            if bad:
                _fix_zero_buckets(scales, b, s, t0, t1, ct)
            ct[m : m + 8] = 0
            _pack_tile(ct, m, width, codes, (t0 // 8) * width)

    @njit(**_opts)
    def _qsgd_encode(x, b, s, norm, stochastic, k0, k1, s0, s1, width, scales, codes):
        _scales(x, b, norm, scales)
        rt = np.empty(TILE, dtype=np.float64)
        u16 = np.empty(TILE, dtype=np.uint16)
        if width <= 8:
            ct8 = np.zeros(TILE + 8, dtype=np.uint8)
            _qsgd_tiles(x, b, s, stochastic, k0, k1, s0, s1, width, scales, codes, ct8, rt, u16)
        else:
            ct16 = np.zeros(TILE + 8, dtype=np.uint16)
            _qsgd_tiles(x, b, s, stochastic, k0, k1, s0, s1, width, scales, codes, ct16, rt, u16)

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
    def _dequantize(ct, r, sf, s, out, add, f32):
        for j in range(out.shape[0]):
            y = (r * np.float64(ct[j] - s)) / sf
            if f32:
                y = np.float64(np.float32(y))
            if add:
                out[j] = out[j] + y
            else:
                out[j] = y

    @njit(**_opts)
    def _qsgd_decode(scales, codes, n, b, s, width, f32, out, add):
        sf = np.float64(s)
        ct = np.zeros(TILE + 8, dtype=np.int32)
        for t0 in range(0, n, TILE):
            t1 = min(t0 + TILE, n)
            _unpack_tile(codes, (t0 // 8) * width, t1 - t0, width, ct)
            i = t0
            while i < t1:
                k = i // b
                hi = min((k + 1) * b, t1)
                _dequantize(ct[i - t0 : hi - t0], np.float64(scales[k]), sf, s, out[i:hi], add, f32)
                i = hi

    @njit(**_opts)
    def _sign_encode(x, b, scales, codes):
        n = x.shape[0]
        _scales(x, b, 2, scales)
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

    @njit(**_opts)
    def _sign_decode(scales, codes, n, b, out, add):
        for k in range(scales.shape[0]):
            lo = k * b
            hi = min(lo + b, n)
            r = np.float64(scales[k])
            for i in range(lo, hi):
                y = r if (codes[i >> 3] >> (i & 7)) & 1 else -r
                if add:
                    out[i] = out[i] + y
                else:
                    out[i] = y


def _words(key: int, stream: int) -> tuple[np.uint64, ...]:
    m = 0xFFFFFFFF
    return (
        np.uint64(key & m),
        np.uint64((key >> 32) & m),
        np.uint64(stream & m),
        np.uint64((stream >> 32) & m),
    )


def random_u32(key: int, stream: int, n: int) -> np.ndarray:
    """Elements ``0 .. n-1`` of the 32-bit stream, as :func:`ecmpi.rng.random_u32`."""
    k0, k1, s0, s1 = _words(key, stream)
    return _random_u32(int(n), k0, k1, s0, s1)


def qsgd_encode(
    x: np.ndarray,
    b: int,
    s: int,
    norm: int,
    stochastic: bool,
    key: int,
    stream: int,
    width: int,
    scales: np.ndarray,
    codes: np.ndarray,
) -> None:
    """Scales and packed qsgd codes of ``x`` into the payload's sections."""
    k0, k1, s0, s1 = _words(key, stream)
    _qsgd_encode(x, b, s, norm, bool(stochastic), k0, k1, s0, s1, width, scales, codes)


def qsgd_decode(
    scales: np.ndarray,
    codes: np.ndarray,
    n: int,
    b: int,
    s: int,
    width: int,
    dtype: np.dtype,
    out: np.ndarray,
    add: bool,
) -> None:
    """``out = decode`` or ``out += decode`` (values rounded to ``dtype`` first)."""
    _qsgd_decode(scales, codes, n, b, s, width, dtype == np.float32, out, bool(add))


def sign_encode(x: np.ndarray, b: int, scales: np.ndarray, codes: np.ndarray) -> None:
    """l1 scales and sign bits of ``x`` into the payload's sections."""
    _sign_encode(x, b, scales, codes)


def sign_decode(
    scales: np.ndarray,
    codes: np.ndarray,
    n: int,
    b: int,
    dtype: np.dtype,
    out: np.ndarray,
    add: bool,
) -> None:
    """``out = decode`` or ``out += decode`` for the scaled sign codec."""
    del dtype  # +-r is a float32 value: exact in either output dtype
    _sign_decode(scales, codes, n, b, out, bool(add))
