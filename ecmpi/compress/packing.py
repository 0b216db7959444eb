"""Tight bit packing of unsigned integer codes, 1 to 16 bits per entry.

The packed stream is little-endian at the bit level: entry ``j`` of width
``w`` occupies bits ``j*w .. j*w+w-1`` of the stream, and bit ``k`` of the
stream is bit ``k % 8`` of byte ``k // 8``. ``ceil(n*w/8)`` bytes hold ``n``
entries; unused high bits of the last byte are zero. The CUDA kernels write
the same layout.

Widths 1, 2, 4 and 8 take shift-and-or fast paths (a byte holds a whole
number of entries); 16 is a plain little-endian uint16 view; every other
width goes through groups of eight entries, which fill exactly ``w`` bytes.
All paths are vectorized: no Python loop over entries.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pack_bits", "packed_nbytes", "unpack_bits"]

MAX_WIDTH = 16


def packed_nbytes(n: int, width: int) -> int:
    """Bytes needed for ``n`` entries of ``width`` bits: ``ceil(n*width/8)``."""
    _check_width(width)
    return (n * width + 7) // 8


def _check_width(width: int) -> None:
    if not isinstance(width, (int, np.integer)) or not 1 <= width <= MAX_WIDTH:
        raise ValueError(f"bit width must be an integer in 1..{MAX_WIDTH}, got {width!r}")


def pack_bits(codes: np.ndarray, width: int, out: np.ndarray | None = None) -> np.ndarray:
    """Pack ``codes`` (unsigned ints below ``2**width``) into a uint8 array.

    Args:
        codes: 1-D array of non-negative integer codes.
        width: bits per code, 1..16.
        out: optional uint8 array of length ``packed_nbytes(len(codes), width)``.

    Returns:
        The packed bytes (``out`` when given).
    """
    _check_width(width)
    codes = np.asarray(codes)
    if codes.ndim != 1:
        raise ValueError(f"codes must be 1-D, got shape {codes.shape}")
    n = codes.shape[0]
    nbytes = packed_nbytes(n, width)
    if out is None:
        out = np.empty(nbytes, dtype=np.uint8)
    elif out.dtype != np.uint8 or out.shape != (nbytes,):
        raise ValueError(f"out must be uint8 of shape ({nbytes},), got {out.dtype} {out.shape}")
    if n == 0:
        return out
    if width == 8:
        out[:] = codes
        return out
    if width == 16:
        out.view("<u2")[:] = codes
        return out
    if 8 % width == 0:
        per = 8 // width
        full = (n // per) * per
        c = codes[:full].astype(np.uint8).reshape(-1, per)
        acc = c[:, 0].copy()
        for j in range(1, per):
            acc |= c[:, j] << np.uint8(j * width)
        out[: full // per] = acc
        if full < n:
            tail = codes[full:].astype(np.uint8)
            last = np.uint8(0)
            for j, v in enumerate(tail):
                last |= np.uint8(v) << np.uint8(j * width)
            out[-1] = last
        return out
    # General width: eight entries fill exactly `width` bytes.
    groups = (n + 7) // 8
    padded = np.zeros(groups * 8, dtype=np.uint64)
    padded[:n] = codes
    g = padded.reshape(groups, 8)
    lo = np.zeros(groups, dtype=np.uint64)  # bits 0..63 of the group
    hi = np.zeros(groups, dtype=np.uint64)  # bits 64..127 of the group
    for j in range(8):
        shift = j * width
        if shift + width <= 64:
            lo |= g[:, j] << np.uint64(shift)
        elif shift >= 64:
            hi |= g[:, j] << np.uint64(shift - 64)
        else:  # straddles the 64-bit boundary
            lo |= g[:, j] << np.uint64(shift)
            hi |= g[:, j] >> np.uint64(64 - shift)
    both = np.stack([lo, hi], axis=1).astype("<u8").view(np.uint8).reshape(groups, 16)
    out[:] = both[:, :width].reshape(-1)[:nbytes]
    return out


def unpack_bits(packed: np.ndarray, width: int, n: int, dtype=np.uint16) -> np.ndarray:
    """Inverse of :func:`pack_bits`: the first ``n`` codes of ``width`` bits.

    Raises:
        ValueError: if ``packed`` holds fewer than ``packed_nbytes(n, width)`` bytes.
    """
    _check_width(width)
    packed = np.asarray(packed)
    need = packed_nbytes(n, width)
    if packed.dtype != np.uint8 or packed.ndim != 1:
        raise ValueError(f"packed must be a 1-D uint8 array, got {packed.dtype} {packed.shape}")
    if packed.shape[0] < need:
        raise ValueError(
            f"packed buffer too short: {packed.shape[0]} bytes for {n} codes of {width} bits "
            f"(need {need})"
        )
    packed = packed[:need]
    if n == 0:
        return np.empty(0, dtype=dtype)
    if width == 8:
        return packed.astype(dtype)
    if width == 16:
        return packed.view("<u2").astype(dtype)
    if 8 % width == 0:
        per = 8 // width
        mask = np.uint8((1 << width) - 1)
        shifts = (np.arange(per, dtype=np.uint8) * np.uint8(width))[None, :]
        codes = (packed[:, None] >> shifts) & mask
        return codes.reshape(-1)[:n].astype(dtype)
    groups = (n + 7) // 8
    buf = np.zeros(groups * 16, dtype=np.uint8)
    view = buf.reshape(groups, 16)
    flat = np.zeros(groups * width, dtype=np.uint8)
    flat[:need] = packed
    view[:, :width] = flat.reshape(groups, width)
    words = view.view("<u8")
    lo = words[:, 0]
    hi = words[:, 1]
    mask = np.uint64((1 << width) - 1)
    codes = np.empty((groups, 8), dtype=np.uint64)
    for j in range(8):
        shift = j * width
        if shift + width <= 64:
            codes[:, j] = (lo >> np.uint64(shift)) & mask
        elif shift >= 64:
            codes[:, j] = (hi >> np.uint64(shift - 64)) & mask
        else:
            codes[:, j] = ((lo >> np.uint64(shift)) | (hi << np.uint64(64 - shift))) & mask
    return codes.reshape(-1)[:n].astype(dtype)
