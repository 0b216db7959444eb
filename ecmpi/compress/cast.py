"""The uncompressed baselines: ``none`` (raw values), ``fp16`` and ``bf16`` casts."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import array_module
from ..rng import SeedLike
from .base import Compressor, register
from .payload import Header, Payload

__all__ = ["BF16", "FP16", "NoCompression", "bf16_bits", "bf16_to_float32"]

_VALUE_FMT = {np.dtype(np.float32): 3, np.dtype(np.float64): 4}


@register
class NoCompression(Compressor):
    """``none``: the vector's own bytes (float32 or float64), for exact baselines."""

    name = "none"
    unbiased = True

    @property
    def is_identity(self) -> bool:
        return True

    def header(self, n: int, dtype: Any) -> Header:
        dt = np.dtype(dtype)
        return self._new_header(n, dt, value_fmt=_VALUE_FMT[dt], nvals=int(n))

    def _encode(self, x: Any, seed: SeedLike, rank: int) -> Payload:
        p = Payload.allocate(self.header(x.shape[0], x.dtype), array_module(x))
        p.values[:] = x
        return p

    def _decode(self, payload: Payload, out: Any) -> None:
        out[:] = payload.values


#: unit roundoffs: |fl(x) - x| <= u |x| for x in the normal range of the format
FP16_ROUNDOFF = 2.0**-11
#: bf16 of float64 input rounds to float32 first: ``2^-8 (1 + 2^-24) + 2^-24``
BF16_ROUNDOFF = 2.0**-8 * (1.0 + 2.0**-24) + 2.0**-24


@register
class FP16(Compressor):
    """``fp16``: IEEE half precision, round to nearest even (|x| > 65504 is an error).

    Contraction for entries in the normal range (``|x_i| >= 2^-14``):
    ``|fl(x_i) - x_i| <= 2^-11 |x_i|``, so ``delta = 1 - 2^-22`` (smaller
    entries round to subnormals or 0, with relative error up to 1).
    """

    name = "fp16"
    unbiased = False

    def delta(self, n: int) -> float:
        return 1.0 - FP16_ROUNDOFF**2

    def header(self, n: int, dtype: Any) -> Header:
        return self._new_header(n, dtype, value_fmt=1, nvals=int(n))

    def _encode(self, x: Any, seed: SeedLike, rank: int) -> Payload:
        xp = array_module(x)
        p = Payload.allocate(self.header(x.shape[0], x.dtype), xp)
        vals = p.values
        vals[:] = x.astype(xp.float16)
        if self.check_finite and not bool(xp.isfinite(vals).all()):
            raise ValueError(
                "fp16: input exceeds the float16 range (|x| > 65504); use bf16 or scale it"
            )
        return p

    def _decode(self, payload: Payload, out: Any) -> None:
        out[:] = payload.values


def bf16_bits(x: Any) -> Any:
    """bfloat16 bit patterns (uint16) of ``x``, rounded to nearest even.

    float64 input is first rounded to float32. NaN maps to the quiet NaN 0x7FC0.
    """
    xp = array_module(x)
    u = x.astype(xp.float32).view(xp.uint32)
    rounded = (u + xp.uint32(0x7FFF) + ((u >> xp.uint32(16)) & xp.uint32(1))) >> xp.uint32(16)
    is_nan = (u & xp.uint32(0x7FFFFFFF)) > xp.uint32(0x7F800000)
    return xp.where(is_nan, xp.uint32(0x7FC0), rounded).astype(xp.uint16)


def bf16_to_float32(bits: Any) -> Any:
    """float32 values of bfloat16 bit patterns."""
    xp = array_module(bits)
    return (bits.astype(xp.uint32) << xp.uint32(16)).view(xp.float32)


@register
class BF16(Compressor):
    """``bf16``: bfloat16 (8 exponent bits, 7 mantissa bits), round to nearest even.

    Contraction for entries in the normal range (``|x_i| >= 2^-126``):
    ``|fl(x_i) - x_i| <= u |x_i|`` with ``u = 2^-8`` for float32 input and
    :data:`BF16_ROUNDOFF` (float32 first, then bf16) for float64; ``delta =
    1 - u^2`` with the latter.
    """

    name = "bf16"
    unbiased = False

    def delta(self, n: int) -> float:
        return 1.0 - BF16_ROUNDOFF**2

    def header(self, n: int, dtype: Any) -> Header:
        return self._new_header(n, dtype, value_fmt=2, nvals=int(n))

    def _encode(self, x: Any, seed: SeedLike, rank: int) -> Payload:
        p = Payload.allocate(self.header(x.shape[0], x.dtype), array_module(x))
        xp = array_module(x)
        p.values[:] = bf16_bits(x)
        if self.check_finite and bool((p.values & xp.uint16(0x7FFF) == 0x7F80).any()):
            raise ValueError("bf16: input exceeds the bfloat16 range (|x| > 3.39e38)")
        return p

    def _decode(self, payload: Payload, out: Any) -> None:
        out[:] = bf16_to_float32(payload.values)
