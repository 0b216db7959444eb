"""Fused CPU fast path (numba): one pass per tile instead of many NumPy passes.

The compressors call this module only. It decides whether the fast path is
on, converts the codec's parameters into the kernels' argument groups
(:class:`PhiloxKey`, :class:`QsgdParams`) and calls the compiled kernels of
:mod:`ecmpi.compress._fused_numba` directly; that module imports numba and is
loaded on the first encode or decode that uses it (so ``import ecmpi`` does
not pay for numba). Each kernel produces exactly the bytes of the NumPy
reference in :mod:`ecmpi.compress.quantize` (the arithmetic is fixed by
``docs/compressors.md``).

The fast path is on by default when numba is installed. Set the environment
variable ``ECMPI_FUSED=0`` (read at import) or call :func:`set_enabled` to run
the NumPy reference instead, e.g. to compare both in tests. Kernels are
compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import NamedTuple

import numpy as np

__all__ = [
    "TILE",
    "PhiloxKey",
    "QsgdParams",
    "available",
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

_AVAILABLE = importlib.util.find_spec("numba") is not None
_ENABLED = _AVAILABLE and os.environ.get("ECMPI_FUSED", "1").strip().lower() not in (
    "0",
    "false",
    "no",
    "off",
)
_KERNELS: ModuleType | None = None


class PhiloxKey(NamedTuple):
    """The Philox-4x32 key ``(k0, k1)`` and stream words ``(s0, s1)``, 32 bits each in uint64.

    ``k0, k1`` are the low and high halves of the 64-bit key of
    :func:`ecmpi.rng.derive`, ``s0, s1`` those of its stream.
    """

    k0: np.uint64
    k1: np.uint64
    s0: np.uint64
    s1: np.uint64

    @classmethod
    def of(cls, key: int, stream: int) -> PhiloxKey:
        """The words of a 64-bit ``key`` and ``stream``."""
        m = 0xFFFFFFFF
        return cls(
            np.uint64(key & m),
            np.uint64((key >> 32) & m),
            np.uint64(stream & m),
            np.uint64((stream >> 32) & m),
        )


class QsgdParams(NamedTuple):
    """The qsgd encoder's codec parameters: one argument of the kernel instead of five."""

    bucket: int  #: entries per scale
    levels: int  #: s
    norm: int  #: 0 = l2, 1 = linf (ecmpi.compress.buckets.NORMS)
    width: int  #: bits per packed code
    stochastic: bool  #: stochastic rounding (else round to nearest)


def available() -> bool:
    """True when numba is installed (without importing it)."""
    return _AVAILABLE


def enabled() -> bool:
    """True when encode/decode on the CPU use the fused kernels."""
    return _ENABLED


def set_enabled(flag: bool) -> bool:
    """Turn the fused kernels on or off; returns the previous setting."""
    global _ENABLED
    if flag and not _AVAILABLE:
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


def _kernels() -> ModuleType:
    """The numba kernels, imported (and numba with them) on first use."""
    global _KERNELS
    if _KERNELS is None:
        from . import _fused_numba

        _KERNELS = _fused_numba
    return _KERNELS


def random_u32(key: int, stream: int, n: int) -> np.ndarray:
    """Elements ``0 .. n-1`` of the 32-bit stream, as :func:`ecmpi.rng.random_u32`."""
    return _kernels().random_u32(int(n), PhiloxKey.of(key, stream))


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
) -> int:
    """Scales and packed qsgd codes of ``x`` into the payload's sections.

    Returns the number of buckets whose float64 scale sum was not finite (a
    NaN/Inf entry, or float64 input large enough to overflow the sum).
    """
    prm = QsgdParams(int(b), int(s), int(norm), int(width), bool(stochastic))
    return int(_kernels().qsgd_encode(x, prm, PhiloxKey.of(key, stream), scales, codes))


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
    """``out = decode`` or ``out += decode`` (values rounded to ``dtype``, then to
    ``out``'s dtype, before the add: a float32 rounding is needed if either is float32)."""
    k = _kernels()
    if s == 1 and b % 4 == 0:  # 2-bit codes, four entries per byte from a table
        k.qsgd_decode_s1(scales, codes, n, b, out, bool(add), k.S1_LEVELS)
        return
    f32 = dtype == np.float32 or out.dtype == np.float32
    k.qsgd_decode(scales, codes, n, b, s, width, f32, out, bool(add))


def sign_encode(x: np.ndarray, b: int, scales: np.ndarray, codes: np.ndarray) -> int:
    """l1 scales and sign bits of ``x``; returns the count of non-finite scale sums."""
    return int(_kernels().sign_encode(x, b, scales, codes))


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
    _kernels().sign_decode(scales, codes, n, b, out, bool(add))
