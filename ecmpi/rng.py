"""Counter-based random numbers, identical on the CPU and the GPU.

Every random draw in ecmpi is a pure function of a *key* (64 bits, from the
user's seed), a *stream* (64 bits, from the step, rank and chunk the draw
belongs to) and an *element index*. Nothing is stateful, nothing touches
NumPy's global generator, so a rerun, another backend or another rank order
gives the same bits.

The generator is Philox-4x32-10 (Salmon, Moraes, Dror, Shaw. *Parallel random
numbers: as easy as 1, 2, 3*. SC 2011), the generator behind cuRAND's
``curand_init`` for Philox and Random123. One evaluation maps a 128-bit
counter and a 64-bit key to 128 random bits:

    counter = (block & 0xffffffff, block >> 32, stream & 0xffffffff, stream >> 32)
    key     = (key & 0xffffffff, key >> 32)

Element ``i`` of a stream of 32-bit words is word ``i % 4`` of block
``i // 4``; element ``i`` of a stream of bytes is byte ``i % 16`` of block
``i // 16`` (the block's four words little-endian, word 0 first), counted from
block ``base`` (0, or :data:`LOW_BYTES` for the second byte stream).
Stochastic rounding draws the 16-bit ``u_i = 256 h_i + g_i`` from the two byte
streams (:func:`dither_u16`), so a fast path can decide most entries from
``h_i`` alone and draw ``g_i`` only where it matters (docs/compressors.md).
``kernels/philox.cuh`` computes the same arithmetic on the GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "LOW_BYTES",
    "MASK64",
    "SeedLike",
    "derive",
    "dither_u16",
    "mix64",
    "philox4x32",
    "random_u8",
    "random_u32",
    "uniform",
]

MASK64 = (1 << 64) - 1
#: first block of the second byte stream (the low bytes of :func:`dither_u16`)
LOW_BYTES = 1 << 63
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
_ROUNDS = 10

SeedLike = int | Sequence[int]


def mix64(z: int) -> int:
    """SplitMix64's finalizer (Steele, Lea, Flood 2014) on a Python int.

    Used only on the host to fold identifiers into a 64-bit stream number.
    """
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def derive(seed: SeedLike, *ids: int) -> tuple[int, int]:
    """Turn a seed and identifiers into a ``(key, stream)`` pair of 64-bit ints.

    Args:
        seed: an int, or a sequence ``(seed, id1, id2, ...)``; the first entry is
            the key, the rest are folded into the stream.
        *ids: more identifiers folded into the stream after those of ``seed``
            (e.g. the rank, for draws that must differ between workers).

    Returns:
        ``(key, stream)``. An int seed with no ids gives stream 0. Each
        identifier is folded as ``stream = mix64(stream ^ (id & MASK64))``.
    """
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError("seed must be an int or a sequence of ints, not bool")
    if isinstance(seed, (int, np.integer)):
        parts = [int(seed)]
    else:
        if isinstance(seed, (str, bytes)) or any(
            isinstance(v, (bool, float, str, bytes)) for v in _iter_or_empty(seed)
        ):
            raise TypeError(f"seed must be an int or a sequence of ints, got {seed!r}")
        try:
            parts = [int(v) for v in seed]
        except TypeError as exc:
            raise TypeError(f"seed must be an int or a sequence of ints, got {seed!r}") from exc
        if not parts:
            raise ValueError("seed sequence is empty")
    parts.extend(int(v) for v in ids)
    if any(p < 0 for p in parts):
        raise ValueError(f"seed and identifiers must be non-negative, got {parts}")
    key = parts[0] & MASK64
    stream = 0
    for v in parts[1:]:
        stream = mix64(stream ^ (v & MASK64))
    return key, stream


def _iter_or_empty(seed: object) -> list:
    try:
        return list(seed)  # type: ignore[call-overload]
    except TypeError:
        return []


def _mulhilo(a: np.ndarray, m: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    prod = a.astype(np.uint64) * m
    return (prod >> np.uint64(32)).astype(np.uint32), prod.astype(np.uint32)


def philox4x32(
    c0: np.ndarray, c1: np.ndarray, c2: np.ndarray, c3: np.ndarray, key: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Philox-4x32-10 on arrays of counters (vectorized, uint32 in and out).

    Args:
        c0, c1, c2, c3: the four 32-bit words of each counter (broadcastable).
        key: the 64-bit key; low word first.

    Returns:
        The four 32-bit output words.
    """
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint32) for c in (c0, c1, c2, c3))
    c0, c1, c2, c3 = np.broadcast_arrays(c0, c1, c2, c3)
    k0 = key & 0xFFFFFFFF
    k1 = (key >> 32) & 0xFFFFFFFF
    for r in range(_ROUNDS):
        if r:
            k0 = (k0 + _W0) & 0xFFFFFFFF
            k1 = (k1 + _W1) & 0xFFFFFFFF
        hi0, lo0 = _mulhilo(c0, _M0)
        hi1, lo1 = _mulhilo(c2, _M1)
        c0, c1, c2, c3 = (
            hi1 ^ c1 ^ np.uint32(k0),
            lo1,
            hi0 ^ c3 ^ np.uint32(k1),
            lo0,
        )
    return c0, c1, c2, c3


def _blocks(key: int, stream: int, first: int, count: int) -> np.ndarray:
    """Philox blocks ``first .. first+count-1`` as a (count, 4) uint32 array."""
    block = np.arange(count, dtype=np.uint64) + np.uint64(first & MASK64)  # wraps mod 2^64
    c0 = (block & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    c1 = (block >> np.uint64(32)).astype(np.uint32)
    s0 = np.uint32(stream & 0xFFFFFFFF)
    s1 = np.uint32((stream >> 32) & 0xFFFFFFFF)
    out = philox4x32(c0, c1, s0, s1, key)
    return np.stack(out, axis=-1)


def _check(start: int, count: int) -> None:
    if start < 0 or count < 0:
        raise ValueError(f"start and count must be non-negative, got {start}, {count}")


def random_u32(key: int, stream: int, start: int, count: int) -> np.ndarray:
    """Elements ``start .. start+count-1`` of the 32-bit word stream ``(key, stream)``."""
    _check(start, count)
    if count == 0:
        return np.empty(0, dtype=np.uint32)
    b0 = start // 4
    b1 = (start + count + 3) // 4
    words = _blocks(key, stream, b0, b1 - b0).reshape(-1)
    off = start - 4 * b0
    return words[off : off + count].copy()


def random_u8(key: int, stream: int, start: int, count: int, *, base: int = 0) -> np.ndarray:
    """Elements ``start .. start+count-1`` of the byte stream ``(key, stream)`` from block ``base``.

    Sixteen entries per Philox block: entry ``i`` is byte ``i % 16`` of block
    ``(base + i // 16) mod 2^64`` (little-endian words, word 0 first).
    """
    _check(start, count)
    if count == 0:
        return np.empty(0, dtype=np.uint8)
    b0 = start // 16
    b1 = (start + count + 15) // 16
    data = _blocks(key, stream, base + b0, b1 - b0).astype("<u4").view(np.uint8).reshape(-1)
    off = start - 16 * b0
    return data[off : off + count].copy()


def dither_u16(key: int, stream: int, start: int, count: int) -> np.ndarray:
    """The 16-bit draws of stochastic rounding: ``u_i = 256 h_i + g_i``.

    ``h_i`` is entry ``i`` of the byte stream from block 0, ``g_i`` of the one
    from block :data:`LOW_BYTES` (same key and stream), so ``u_i`` is uniform on
    ``0 .. 65535`` and ``h_i`` alone decides ``u_i < t`` unless ``256 h_i < t <=
    256 h_i + 255``.
    """
    high = random_u8(key, stream, start, count).astype(np.uint16)
    low = random_u8(key, stream, start, count, base=LOW_BYTES).astype(np.uint16)
    return (high << np.uint16(8)) | low


def uniform(key: int, stream: int, start: int, count: int, dtype=np.float64) -> np.ndarray:
    """Uniform floats in [0, 1) from the 32-bit stream: ``u32 * 2**-32``."""
    return (random_u32(key, stream, start, count).astype(np.float64) * 2.0**-32).astype(dtype)
