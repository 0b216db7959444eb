"""Aggregation on integer codes (homomorphic compression) for qsgd and terngrad.

When every rank quantizes a bucket against the **same** scale ``R``, its codes
``c = s + sign(x_i) l_i`` (``l_i`` in ``0..s``) are integers in one common
unit ``R/s``, so the sum of P ranks' quantized vectors is the sum of their
signed levels, an integer ``S_i = sum_p (c_{p,i} - s)`` in ``-Ps .. Ps``,
times ``R/s``. An owner can add codes instead of decoding to floats and
re-encoding, and the reduced chunk either travels

- **wide** (default): ``S_i + Ps`` in ``code_width(P s) = ceil(log2(2Ps + 1))``
  bits: the exact sum of the quantized vectors, no second compression; or
- **requantized** (``requantize=True``): ``S_i / P`` rounded stochastically to
  an integer level in ``-s .. s`` (``floor(S/P)``, plus one with probability
  ``(S mod P)/P`` from a 16-bit draw), in the input's ``code_width(s)`` bits,
  decoded as ``P R/s`` per level.

The shared scale of bucket ``k`` is ``R_k = max_p r_{p,k}``, each rank's
qsgd scale (its l2 or linf norm, float32) of that bucket, agreed by one
``Allreduce(MAX)`` of ``n/b`` floats. Quantizing against ``R_k >= r_{p,k}``
keeps every level in ``0..s`` and rounding stochastic, so each rank's term
stays unbiased (up to the 16-bit rounding bias of qsgd, ``< 2^-16 R/s``).
The variance and when this pays are stated in docs/compressors.md
("Aggregation on codes").

:class:`CodeSum` holds the codec's parameters (read from the compressor's
public attributes) and runs each step with the fused numba kernels of
:mod:`ecmpi.comm._codes_numba` when :func:`ecmpi.compress._fused.enabled`,
else with the NumPy reference; both give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..compress import _fused
from ..compress.base import Compressor
from ..compress.buckets import NORMS, bucket_scales, num_buckets
from ..compress.packing import pack_bits, packed_nbytes, unpack_bits
from ..compress.quantize import MAX_LEVELS, QSGD, code_width, qsgd_codes_reference
from ..rng import derive, dither_u16

__all__ = ["CodeSum"]

_KERNELS: Any = None


def _kernels() -> Any:
    global _KERNELS
    if _KERNELS is None:
        from . import _codes_numba

        _KERNELS = _codes_numba
    return _KERNELS


@dataclass(frozen=True)
class CodeSum:
    """Shared-scale qsgd coding: quantize, add codes, repack, decode.

    Attributes:
        levels: s.
        bucket: entries per scale.
        norm: ``"l2"`` or ``"linf"``.
        stochastic: stochastic rounding (unbiased) or round to nearest.
    """

    levels: int
    bucket: int
    norm: str
    stochastic: bool

    @classmethod
    def of(cls, c: Compressor, what: str = "aggregation on codes") -> CodeSum:
        """The parameters of a qsgd/terngrad compressor.

        Raises:
            ValueError: another codec (the message names the ones that work).
        """
        if not cls.accepts(c):
            raise ValueError(
                f"{what} needs a qsgd or terngrad compressor (shared bucket scales, integer "
                f"codes) with fixed-width codes, got {c.spec!r}"
                + ("; Elias-coded levels travel through allgather, sra, ring or ps" if
                   isinstance(c, QSGD) else "")
            )  # fmt: skip
        return cls(int(c.levels), int(c.bucket), str(c.norm), bool(c.stochastic))

    @staticmethod
    def accepts(c: Compressor) -> bool:
        """Whether ``c`` can be aggregated on codes (qsgd and terngrad, fixed width)."""
        return isinstance(c, QSGD) and c.fixed_size

    @property
    def width(self) -> int:
        """Bits of one rank's code: ``ceil(log2(2s + 1))``."""
        return code_width(self.levels)

    def sum_width(self, ranks: int) -> int:
        """Bits of a sum of ``ranks`` codes: ``ceil(log2(2 P s + 1))``.

        Raises:
            ValueError: ``P s`` above 32767 (use ``requantize=True``).
        """
        if ranks * self.levels > MAX_LEVELS:
            raise ValueError(
                f"a sum of {ranks} codes of {self.levels} levels needs more than 16 bits; "
                "pass requantize=True"
            )
        return code_width(ranks * self.levels)

    # -- scales ----------------------------------------------------------------------
    def scales(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Every bucket's float32 scale of ``x`` and the count of non-finite ones."""
        nb = num_buckets(x.shape[0], self.bucket)
        if _fused.enabled():
            out = np.empty(nb, dtype=np.float32)
            bad = _kernels().bucket_scales(x, self.bucket, NORMS[self.norm], out)
            return out, int(bad)
        with np.errstate(over="ignore", invalid="ignore"):
            out = bucket_scales(x, self.bucket, self.norm)
        return out, int((~np.isfinite(out)).sum())

    # -- one rank's codes ----------------------------------------------------------------
    def encode(self, x: np.ndarray, scales: np.ndarray, seed: Any, rank: int) -> np.ndarray:
        """Packed codes (``width`` bits) of ``x`` against ``scales``; draws keyed by
        ``derive(seed, rank)`` as the qsgd encoder's."""
        key, stream = derive(seed, rank)
        out = np.empty(packed_nbytes(x.shape[0], self.width), dtype=np.uint8)
        if _fused.enabled():
            k = _fused.PhiloxKey.of(key, stream)
            _kernels().encode_shared(
                x, scales, self.bucket, self.levels, self.width, self.stochastic, k, out
            )
            return out
        codes = qsgd_codes_reference(
            x, scales, self.levels, self.bucket, self.stochastic, key, stream
        )
        return pack_bits(codes, self.width, out=out)

    # -- sums of codes ---------------------------------------------------------------------
    def add(self, codes: Any, n: int, acc: np.ndarray, width: int, offset: int) -> None:
        """``acc += unpack(codes) - offset`` (int32)."""
        codes = np.asarray(codes)
        if _fused.enabled():
            _kernels().add_codes(codes, width, offset, n, acc)
        else:
            acc += unpack_bits(codes, width, n).astype(np.int32) - np.int32(offset)

    def sum_wide(self, bufs: list[Any], n: int, width: int) -> np.ndarray:
        """``pack(sum_p unpack(bufs[p]), width)``: the P ranks' codes summed as unsigned
        integers, which is ``S + P s`` (the wide code of :mod:`ecmpi.comm.codesum`)."""
        out = np.empty(packed_nbytes(n, width), dtype=np.uint8)
        if _fused.enabled() and self.width in (2, 4, 8) and width <= 8:
            _kernels().sum_codes_wide(
                np.stack([np.asarray(b) for b in bufs]), n, self.width, width, out
            )
            return out
        acc = np.zeros(n, dtype=np.int32)
        for buf in bufs:
            self.add(buf, n, acc, self.width, 0)
        return self.pack(acc, width, 0)

    def add_pack(self, a: Any, wa: int, b: Any, wb: int, n: int, width: int) -> np.ndarray:
        """``pack(unpack(a, wa) + unpack(b, wb), width)``: two sums of codes (unsigned)
        added into one, the step of a ring hop."""
        out = np.empty(packed_nbytes(n, width), dtype=np.uint8)
        if _fused.enabled() and max(wa, wb, width) <= 8:
            _kernels().add_pack(np.asarray(a), wa, np.asarray(b), wb, n, width, out)
            return out
        acc = np.zeros(n, dtype=np.int32)
        self.add(a, n, acc, wa, 0)
        self.add(b, n, acc, wb, 0)
        return self.pack(acc, width, 0)

    def pack(self, acc: np.ndarray, width: int, offset: int) -> np.ndarray:
        """``pack(acc + offset)`` in ``width`` bits."""
        out = np.empty(packed_nbytes(acc.shape[0], width), dtype=np.uint8)
        if _fused.enabled():
            _kernels().pack_sum(acc, offset, width, out)
            return out
        return pack_bits((acc + offset).astype(np.uint16), width, out=out)

    def requantize(self, acc: np.ndarray, ranks: int, seed: Any, worker: int) -> np.ndarray:
        """``acc / P`` rounded stochastically to integer levels (int32):
        ``floor(S/P) + [u P < (S mod P) 65536]``, ``u`` the 16-bit draws of
        :func:`ecmpi.rng.dither_u16` under ``derive(seed, worker)``."""
        key, stream = derive(seed, worker)
        q, rem = np.divmod(acc.astype(np.int64), ranks)
        u = dither_u16(key, stream, 0, acc.shape[0]).astype(np.int64)
        return (q + (u * ranks < rem * 65536)).astype(np.int32)

    # -- decoding ------------------------------------------------------------------------
    def decode(
        self,
        codes: Any,
        n: int,
        scales: np.ndarray,
        out: np.ndarray,
        *,
        width: int,
        offset: int,
        mult: int,
        div: int,
        add: bool = False,
    ) -> None:
        """``out (+)= (c_i - offset) * (float64(R_k) * mult / div)``, rounded to float32 for a
        float32 ``out`` (the same arithmetic on every rank)."""
        weights = scales.astype(np.float64) * float(mult) / float(div)
        codes = np.asarray(codes)
        f32 = out.dtype == np.float32
        if _fused.enabled():
            k = _kernels()
            if width in (2, 4, 8) and self.bucket % (8 // width) == 0:
                k.decode_table(codes, width, offset, n, weights, self.bucket, f32, out, add)
            else:
                k.decode_codes(codes, width, offset, n, weights, self.bucket, f32, out, add)
            return
        m = unpack_bits(codes, width, n).astype(np.int64) - offset
        y = m * np.repeat(weights, self.bucket)[:n]
        if f32:
            y = y.astype(np.float32)
        if add:
            out += y.astype(out.dtype)
        else:
            out[:] = y
