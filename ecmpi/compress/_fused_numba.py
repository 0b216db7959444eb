"""The numba kernels behind :mod:`ecmpi.compress._fused` (imported on first use).

Every kernel produces exactly the bytes of the NumPy reference in
:mod:`ecmpi.compress.quantize` (the arithmetic is fixed by
``docs/compressors.md``). qsgd encoding walks the vector in tiles of
``TILE`` entries; per tile it

1. computes the scales of the buckets the tile reaches (so the bucket is read
   from memory once and quantized while it is still in cache),
2. draws the tile's Philox-4x32-10 blocks in a branch-free loop that LLVM
   vectorizes (32x32->64-bit products become ``vpmuludq``),
3. quantizes with a multiplication by ``65536 s / r`` instead of a division
   (see :func:`_quantize_f64` for the proof that this gives the same codes
   except near rounding boundaries, which are redone exactly), and
4. packs the codes.

No ``fastmath`` (it would change bits) and no ``parallel`` (one core).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._fused import TILE

__all__ = [
    "qsgd_decode",
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

#: relative error allowance of the reciprocal path, 8 u with u = 2^-53 (proof in _quantize_f64)
_REL = 2.0**-50
#: below this ``T'`` an intermediate of either path may be subnormal: redo exactly
_TINY = 2.0**-800
#: the same for the float32 path (float32 rounding: 2^-24)
_REL32 = 2.0**-21
_TINY32 = 2.0**-100
#: the float32 path needs ``65536 s <= 2^24`` (exact integers) and a scale of at least
_MIN_R32 = 2.0**-90
#: largest s of the float32 path: flagged entries grow like s (about 0.2 % per level at b = 512)
_MAX_S32 = 8

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
    """Scale of ``x[lo:hi]``; norm 0 = l2, 1 = linf, 2 = l1 (see buckets.py).

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
        return np.float32(np.nan if nan else mx)
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
        return np.float32(np.sqrt(t))
    return np.float32(t / np.float64(m))


@njit(**_opts)
def _scales(x, b, norm, scales):
    """Every bucket's scale (one pass)."""
    n = x.shape[0]
    width = 1
    while width < min(b, n):
        width *= 2
    buf = np.empty(width, dtype=np.float64)
    for k in range(scales.shape[0]):
        lo = k * b
        scales[k] = _bucket_scale(x, lo, min(lo + b, n), norm, buf, width)


# -- qsgd quantization -----------------------------------------------------------------


@njit(**_opts)
def _quantize_f64(x, lo, hi, t0, q65, kf, sf, us, ct, bad, stochastic):
    """Codes of ``x[lo:hi]`` (one bucket, scale ``r`` finite and > 0) by a multiplication.

    The definition computes ``p = min(fl(fl(a*s)/r), s)`` with ``a = |x_i|`` and
    the level depends on ``T = 65536 p`` alone. Stochastic rounding gives
    ``L = #{m >= 0 : 65536 m + u < T}``, which depends only on ``C = ceil(T)``:
    ``L = floor((C - 1 - u) / 65536) + 1``; round to nearest gives
    ``L = #{m >= 0 : 65536 m + 32768 <= T} = floor((F - 32768) / 65536) + 1``
    with ``F = floor(T)``. (``T = 0`` gives ``L = 0``; ``T >= 65536 s``, which
    the clamp turns into ``65536 s``, gives ``L = s``.)

    Here ``T' = fl(a * q65)`` with ``q65 = fl(s/r) * 65536`` (scaling by a power
    of two is exact). With ``u = 2^-53`` and every intermediate normal, each
    path rounds twice: ``T = 65536 (a s / r)(1+e1)(1+e2)``, ``T' = 65536 (a s /
    r)(1+d1)(1+d2)``, ``|e|, |d| <= u``, so ``|T' - T| <= ((1+u)^2/(1-u)^2 - 1) T
    < 4.01 u T``. ``tl = fl(T' (1 - 8u))`` and ``th = fl(T' (1 + 8u))`` (one
    more rounding each) bracket every such ``T``; ceil (floor) is monotone, so
    where ``ceil(tl) == ceil(th)`` that value is ``ceil(T)`` and the level is
    the definition's. Other entries are flagged in ``bad`` and redone by
    :func:`_quantize_exact`, as are those with ``0 < T' < 2^-800`` (an
    intermediate could be subnormal there and the relative bounds fail).
    ``a = 0`` gives ``T = T' = 0`` exactly. ``T'`` may overflow to inf only when
    ``T`` exceeds ``65536 s`` too. Scales are float32, so ``q65`` is normal.

    Returns the number of flagged entries.
    """
    nbad = 0
    lo_, hi_ = 1.0 - _REL, 1.0 + _REL
    xs = x[lo:hi]
    u = us[lo - t0 : hi - t0]
    c = ct[lo - t0 : hi - t0]
    bd = bad[lo - t0 : hi - t0]
    for j in range(hi - lo):
        xv = np.float64(xs[j])
        a = abs(xv)
        t = a * q65
        tl = min(t * lo_, kf)
        th = min(t * hi_, kf)
        if stochastic:
            ch = np.ceil(th)
            flag = (np.ceil(tl) != ch) | ((t < _TINY) & (a != 0.0))
            lev = np.floor((ch - (np.float64(u[j]) + 1.0)) * 2.0**-16) + 1.0
        else:
            ch = np.floor(th)
            flag = (np.floor(tl) != ch) | ((t < _TINY) & (a != 0.0))
            lev = np.floor((ch - 32768.0) * 2.0**-16) + 1.0
        c[j] = np.int32(sf + math.copysign(lev, xv))
        bd[j] = flag
        nbad += np.int32(flag)
    return nbad


@njit(**_opts)
def _quantize_f32(x, lo, hi, t0, q65, kf, sf, us, ct, bad, stochastic):
    """As :func:`_quantize_f64` in float32 arithmetic (float32 input, ``65536 s <= 2^24``).

    ``q = fl32(fl(s/r) * 65536)`` and ``T' = fl32(a q)``: three roundings of at
    most ``2^-24`` and ``2^-53`` each against the definition's two of ``2^-53``,
    so ``|T' - T| < 1.01 * 2^-23 T``. ``tl = fl32(T' (1 - 2^-21))`` and ``th =
    fl32(T' (1 + 2^-21))`` bracket ``T`` (margins ``>= 3.4 * 2^-23``); the
    same ceil/floor test as in float64 decides. Integers up to ``2^24`` are
    exact in float32, so ``C - 1 - u`` is exact. The caller keeps ``r >=
    2^-90`` so ``q`` is finite; ``0 < T' < 2^-100`` is flagged (subnormal
    range).
    """
    nbad = 0
    q = np.float32(q65)
    k = np.float32(kf)
    s32 = np.float32(sf)
    lo_, hi_ = np.float32(1.0 - _REL32), np.float32(1.0 + _REL32)
    tiny = np.float32(_TINY32)
    inv = np.float32(2.0**-16)
    one = np.float32(1.0)
    half = np.float32(32768.0)
    zero = np.float32(0.0)
    xs = x[lo:hi]
    u = us[lo - t0 : hi - t0]
    c = ct[lo - t0 : hi - t0]
    bd = bad[lo - t0 : hi - t0]
    for j in range(hi - lo):
        xv = xs[j]
        a = abs(xv)
        t = a * q
        tl = min(t * lo_, k)
        th = min(t * hi_, k)
        if stochastic:
            ch = np.ceil(th)
            flag = (np.ceil(tl) != ch) | ((t < tiny) & (a != zero))
            lev = np.floor((ch - (np.float32(u[j]) + one)) * inv) + one
        else:
            ch = np.floor(th)
            flag = (np.floor(tl) != ch) | ((t < tiny) & (a != zero))
            lev = np.floor((ch - half) * inv) + one
        c[j] = np.int32(s32 + math.copysign(lev, xv))
        bd[j] = flag
        nbad += np.int32(flag)
    return nbad


@njit(**_opts)
def _quantize_exact(x, scales, b, t0, t1, sf, s, stochastic, us, ct, bad):
    """The definition, for the entries flagged by :func:`_quantize_f64` or ``_f32``.

    Flags are scanned eight at a time (``bad`` viewed as uint64 words).
    """
    words = bad.view(np.uint64)
    for w in range((t1 - t0 + 7) // 8):
        if words[w] == 0:
            continue
        for j in range(8 * w, min(8 * w + 8, t1 - t0)):
            if not bad[j]:
                continue
            i = t0 + j
            xv = np.float64(x[i])
            r = np.float64(scales[i // b])
            p = min((abs(xv) * sf) / r, sf)
            lev = np.floor(p)
            f = p - lev
            if stochastic:
                lev += 1.0 if np.float64(us[j]) < f * 65536.0 else 0.0
            else:
                lev += 1.0 if f >= 0.5 else 0.0
            lv = np.int32(lev)
            ct[j] = s + lv if xv >= 0 else s - lv


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
def _qsgd_tiles(x, b, s, norm, stochastic, f32, k0, k1, s0, s1, width, scales, codes, ct):
    n = x.shape[0]
    sf = np.float64(s)
    kf = sf * 65536.0
    bw = 1
    while bw < min(b, n):
        bw *= 2
    buf = np.empty(bw, dtype=np.float64)
    us = np.full(TILE, 32768, dtype=np.uint16)  # round to nearest: u = 1/2
    bad = np.zeros(TILE, dtype=np.uint8)
    knext = 0
    for t0 in range(0, n, TILE):
        t1 = min(t0 + TILE, n)
        m = t1 - t0
        klast = (t1 - 1) // b
        while knext <= klast:  # scales of the buckets this tile reaches (still in cache)
            lo = knext * b
            scales[knext] = _bucket_scale(x, lo, min(lo + b, n), norm, buf, bw)
            knext += 1
        if stochastic:
            _blocks16(us, t0 // 8, (m + 7) // 8, s0, s1, k0, k1)
        nbad = 0
        i = t0
        while i < t1:
            k = i // b
            hi = min((k + 1) * b, t1)
            r = np.float64(scales[k])
            if r > 0.0 and r < np.inf:
                q65 = (sf / r) * 65536.0
                if f32 and r >= _MIN_R32:
                    nbad += _quantize_f32(x, i, hi, t0, q65, kf, sf, us, ct, bad, stochastic)
                else:
                    nbad += _quantize_f64(x, i, hi, t0, q65, kf, sf, us, ct, bad, stochastic)
            else:  # zero or non-finite scale: level 0
                for j in range(i - t0, hi - t0):
                    ct[j] = s
                    bad[j] = 0
            i = hi
        if nbad:
            _quantize_exact(x, scales, b, t0, t1, sf, s, stochastic, us, ct, bad)
        ct[m : m + 8] = 0
        _pack_tile(ct, m, width, codes, (t0 // 8) * width)


@njit(**_opts)
def _qsgd_encode(x, b, s, norm, stochastic, f32, k0, k1, s0, s1, width, scales, codes):
    if width <= 8:
        ct8 = np.zeros(TILE + 8, dtype=np.uint8)
        _qsgd_tiles(x, b, s, norm, stochastic, f32, k0, k1, s0, s1, width, scales, codes, ct8)
    else:
        ct16 = np.zeros(TILE + 8, dtype=np.uint16)
        _qsgd_tiles(x, b, s, norm, stochastic, f32, k0, k1, s0, s1, width, scales, codes, ct16)


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


# -- scaled sign -----------------------------------------------------------------------


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


# -- entry points (argument conversion only) -------------------------------------------


def random_u32(n, k0, k1, s0, s1):
    """Elements ``0 .. n-1`` of the 32-bit Philox stream of the key/stream words."""
    return _random_u32(n, k0, k1, s0, s1)


def qsgd_encode(x, b, s, norm, stochastic, k0, k1, s0, s1, width, scales, codes):
    """Scales and packed qsgd codes of ``x`` into the payload's sections."""
    f32 = x.dtype == np.float32 and s <= _MAX_S32
    _qsgd_encode(x, b, s, norm, stochastic, f32, k0, k1, s0, s1, width, scales, codes)


def qsgd_decode(scales, codes, n, b, s, width, f32, out, add):
    """``out = decode`` or ``out += decode``."""
    _qsgd_decode(scales, codes, n, b, s, width, f32, out, add)


def sign_encode(x, b, scales, codes):
    """l1 scales and sign bits."""
    _sign_encode(x, b, scales, codes)


def sign_decode(scales, codes, n, b, out, add):
    """``out = decode`` or ``out += decode`` for the scaled sign codec."""
    _sign_decode(scales, codes, n, b, out, add)
