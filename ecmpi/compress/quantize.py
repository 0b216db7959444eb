"""Quantizers: ``qsgd`` (stochastic s-level), ``terngrad`` and scaled ``sign``.

The exact arithmetic (operation order, scales, 16-bit stochastic rounding) is
defined in ``docs/compressors.md``; the functions ``*_reference`` here are the
readable NumPy statement of it. Encoding on the CPU runs the fused numba
kernels of :mod:`ecmpi.compress._fused` by default (same bytes); CuPy arrays go
to :mod:`ecmpi.compress.gpu`.

References:
    Alistarh, Grubic, Li, Tomioka, Vojnovic. *QSGD: Communication-efficient SGD
    via gradient quantization and encoding*. NeurIPS 2017.
    Wen, Xu, Yan, Wang, Chen, Li. *TernGrad: Ternary gradients to reduce
    communication in distributed deep learning*. NeurIPS 2017.
    Karimireddy, Rebjock, Stich, Jaggi. *Error feedback fixes SignSGD and other
    gradient compression schemes*. ICML 2019 (scaled sign).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import numpy as np

from .._backend import array_module, is_device_array
from ..rng import SeedLike, derive, dither_u16
from . import _fused, elias
from .base import Compressor, check_bool, check_int, gpu_drivers, register
from .buckets import NORMS, bucket_scales, num_buckets
from .packing import pack_bits, packed_nbytes, unpack_bits
from .payload import CODECS, Header, Payload

__all__ = [
    "QSGD",
    "Sign",
    "TernGrad",
    "code_width",
    "qsgd_codes_reference",
    "qsgd_targets_reference",
    "qsgd_values_reference",
    "sign_codes_reference",
    "sign_values_reference",
]

MAX_LEVELS = 32767
MAX_BUCKET = 1 << 30
#: header flag bits of qsgd/terngrad
FLAG_STOCHASTIC = 1
FLAG_LINF = 2
#: qsgd's level codings: fixed width (codec qsgd) or Elias gamma (codec qsgd-elias)
CODINGS = ("fixed", "elias")


def code_width(levels: int) -> int:
    """Bits per qsgd code: ``ceil(log2(2s + 1))``."""
    return int(2 * levels).bit_length()


def _expand(scales: np.ndarray, b: int, n: int, dtype: Any = np.float64) -> np.ndarray:
    """The scale of every entry, in ``dtype``."""
    scales = scales.astype(dtype)
    return np.repeat(scales, b)[:n] if b < n else np.full(n, scales[0])


#: scales below this are multiplied by 2**64 (with the magnitudes) before ``s / r``
TINY_SCALE = np.float32(2.0**-64)


def qsgd_targets_reference(x: np.ndarray, scales: np.ndarray, levels: int, b: int) -> np.ndarray:
    """``T_i = min(fl32(a_i * Q), 65536 s)``: 65536 times the entry's level, float32.

    ``a_i = float32(|x_i|)``, ``Q = float32(s / r) * 65536`` with ``r`` the
    bucket's float32 scale; where ``r < 2^-64`` both ``a_i`` and ``r`` are first
    multiplied by ``2^64`` (exact), so ``s / r`` stays finite. Buckets whose
    scale is zero or not finite get ``T = 0``.
    """
    n = x.shape[0]
    r = _expand(scales, b, n, np.float32)
    ok = (r > 0) & np.isfinite(r)
    tiny = r < TINY_SCALE
    lift = np.float32(2.0**64)
    with np.errstate(over="ignore", invalid="ignore"):  # masked entries only
        a = np.abs(x).astype(np.float32)
        a = np.where(tiny, a * lift, a)
        r = np.where(ok, np.where(tiny, r * lift, r), np.float32(1.0))
        q = (np.float32(levels) / r) * np.float32(65536.0)
        t = np.minimum(a * q, np.float32(65536.0 * levels))
    return np.where(ok, t, np.float32(0.0))


def qsgd_codes_reference(
    x: np.ndarray,
    scales: np.ndarray,
    levels: int,
    b: int,
    stochastic: bool,
    key: int,
    stream: int,
) -> np.ndarray:
    """qsgd codes ``c = s + sign(x_i) * l`` (uint16), as in docs/compressors.md.

    With ``T`` from :func:`qsgd_targets_reference`: stochastic rounding gives
    ``l = #{m >= 0 : 65536 m + u_i < T} = (ceil(T) + 65535 - u_i) >> 16`` with
    the 16-bit draw ``u_i`` of :func:`ecmpi.rng.dither_u16`, so ``P(l = k+1) =
    frac(T / 65536)`` up to ``2^-16``; round to nearest gives ``l = (floor(T) +
    32768) >> 16``.
    """
    t = qsgd_targets_reference(x, scales, levels, b)
    if stochastic:
        u = dither_u16(key, stream, 0, x.shape[0]).astype(np.int64)
        lev = (np.ceil(t).astype(np.int64) + 65535 - u) >> 16
    else:
        lev = (np.floor(t).astype(np.int64) + 32768) >> 16
    codes = np.where(x >= 0, levels + lev, levels - lev)
    return codes.astype(np.uint16)


def qsgd_values_reference(codes: np.ndarray, scales: np.ndarray, levels: int, b: int) -> np.ndarray:
    """Decoded float64 values ``(c - s) * (r / s)``."""
    m = codes.astype(np.int64) - levels
    return m * (_expand(scales, b, codes.shape[0]) / float(levels))


def sign_codes_reference(x: np.ndarray) -> np.ndarray:
    """Sign codes: 1 where ``x_i >= 0``, else 0."""
    return (x >= 0).astype(np.uint8)


def sign_values_reference(codes: np.ndarray, scales: np.ndarray, b: int) -> np.ndarray:
    """Decoded float64 values ``+r`` (code 1) or ``-r`` (code 0)."""
    r = _expand(scales, b, codes.shape[0])
    return np.where(codes.astype(bool), r, -r)


def _store(out: Any, values: np.ndarray, add: bool) -> None:
    """``out[:] = values`` or ``out += values`` (values already in the decoded dtype)."""
    if add:
        out += values.astype(out.dtype, copy=False)
    else:
        out[:] = values


class _FusedScales(Compressor):
    """Codecs whose fused CPU encoder computes float64 bucket sums of every entry.

    A NaN/Inf entry makes its bucket's sum non-finite, so the kernel's count of
    non-finite sums replaces the separate ``isfinite`` pass; a positive count
    (which float64 input can also reach by overflowing the sum) is checked
    exactly by :meth:`_require_finite`.
    """

    def _kernel_checks_finite(self, x: Any) -> bool:
        return _fused.enabled() and not is_device_array(x)

    def _after_kernel(self, x: Any, nonfinite: int) -> None:
        if nonfinite and self.check_finite:
            self._require_finite(x)


class _DecodesInPlace(_FusedScales):
    """Codecs whose decoder writes into, or adds onto, the output: no temporary vector.

    On the CPU :meth:`_decode_host` does both; on a device the codec's CuPy
    drivers ``decode`` and ``decode_add`` (:data:`ecmpi.compress.gpu.DRIVERS`)
    do, the latter for float32/float64 accumulators (others add a decoded copy).
    """

    def _decode(self, payload: Payload, out: Any) -> None:
        self._decode_into(payload, out, add=False)

    def decode_add(self, payload: Payload, acc: Any) -> Any:
        """``acc += decode(payload)`` without a temporary vector (CPU)."""
        self._check_acc(payload, acc)
        self._decode_into(payload, acc, add=True)
        return acc

    def _decode_into(self, payload: Payload, out: Any, add: bool) -> None:
        if is_device_array(payload.buf) or is_device_array(out):
            drivers = gpu_drivers(self.name)
            if not add:
                drivers.decode(self, payload, out)
            elif out.dtype in (np.float32, np.float64):
                drivers.decode_add(self, payload, out)
            else:
                out += self.decode(payload).astype(out.dtype, copy=False)
            return
        self._decode_host(payload, out, add)

    @abstractmethod
    def _decode_host(self, payload: Payload, out: Any, add: bool) -> None: ...


@register
class QSGD(_DecodesInPlace):
    """Stochastic s-level quantizer with one float32 scale per bucket (QSGD).

    Entry ``i`` of bucket ``k`` (scale ``r_k = ||v_k||``, l2 or linf) becomes
    ``r_k * sign(x_i) * l / s`` with ``l`` in ``0..s`` rounded up with
    probability ``frac(s|x_i|/r_k)``, so ``E[Q(x)] = x`` (up to the 16-bit
    rounding bias ``< 2^-16 r_k / s``). ``E||Q(v)-v||^2 <= min(b/s^2,
    sqrt(b)/s) ||v||^2`` per bucket, for both norms (``linf <= l2``).
    Wire: ``48 + 4*ceil(n/b) + ceil(n*w/8)`` bytes, ``w = ceil(log2(2s+1))``;
    with ``coding="elias"`` the same levels go as an Elias gamma stream
    (QSGD Section 3.3; :mod:`ecmpi.compress.elias`, codec ``qsgd-elias``),
    ``48 + 4*ceil(n/b) + ceil(nbits/8)`` bytes, which depend on the data.

    Args:
        levels: s, 1..32767 (default 4); or give ``bits`` (2..16) instead,
            meaning ``s = (2**bits - 1) // 2``.
        bucket: entries per scale, 1..2**30.
        norm: ``"l2"`` or ``"linf"``.
        stochastic: unbiased random rounding; False rounds to nearest (biased).
        coding: ``"fixed"`` (w bits per entry) or ``"elias"`` (variable-length
            codes of the nonzero levels; CuPy input is encoded and decoded on
            the host).
        check_finite: raise on NaN/Inf input.
    """

    name = "qsgd"

    def __init__(
        self,
        levels: int | None = None,
        bucket: int = 512,
        norm: str = "l2",
        stochastic: bool = True,
        *,
        bits: int | None = None,
        coding: str = "fixed",
        check_finite: bool = True,
    ):
        super().__init__(check_finite=check_finite)
        owner = self.name
        if coding not in CODINGS:
            raise ValueError(f"{owner}: unknown coding {coding!r}; use 'fixed' or 'elias'")
        self.coding = coding
        if levels is not None and bits is not None:
            raise ValueError(f"{owner}: give levels or bits, not both")
        if bits is not None:
            bits = check_int(owner, "bits", bits, 2, 16)
            levels = (2**bits - 1) // 2
        elif levels is None:
            levels = 4
        self.levels = check_int(owner, "levels", levels, 1, MAX_LEVELS)
        self.bucket = check_int(owner, "bucket", bucket, 1, MAX_BUCKET)
        if norm not in ("l2", "linf"):
            raise ValueError(f"{owner}: unknown norm {norm!r}; use 'l2' or 'linf'")
        self.norm = norm
        self.stochastic = check_bool(owner, "stochastic", stochastic)

    @property
    def unbiased(self) -> bool:  # type: ignore[override]
        return self.stochastic

    def params(self) -> dict[str, Any]:
        """Constructor parameters; ``coding`` only when it is not the default."""
        out = super().params()
        if out.get("coding") == "fixed":
            del out["coding"]
        return out

    @property
    def uses_elias(self) -> bool:
        """Levels travel Elias-coded (``coding="elias"``)."""
        return getattr(self, "coding", "fixed") == "elias"

    @property
    def fixed_size(self) -> bool:  # type: ignore[override]
        return not self.uses_elias

    @property
    def codec(self) -> int:
        return CODECS["qsgd-elias"] if self.uses_elias else CODECS[self.name]

    @property
    def width(self) -> int:
        """Bits per code."""
        return code_width(self.levels)

    @property
    def flags(self) -> int:
        return (FLAG_STOCHASTIC if self.stochastic else 0) | (
            FLAG_LINF if self.norm == "linf" else 0
        )

    def omega(self, n: int) -> float:
        """``min(b/s^2, sqrt(b)/s)`` with ``b = min(bucket, n)``; inf when not stochastic."""
        if not self.stochastic:
            return float("inf")
        b, s = min(self.bucket, n), self.levels
        return min(b / s**2, math.sqrt(b) / s)

    def delta(self, n: int) -> float:
        """Round to nearest: each error is ``<= min(|x_i|, r/(2s))``, so
        ``delta = max(0, 1 - b/(4 s^2))``; stochastic: ``1/(omega+1)`` of ``Q/(omega+1)``."""
        if self.stochastic:
            return super().delta(n)
        b = min(self.bucket, n)
        return max(0.0, 1.0 - b / (4.0 * self.levels**2))

    def header(self, n: int, dtype: Any, *, nbits: int | None = None) -> Header:
        """The payload header; with Elias coding ``nbits`` is the stream's length
        (default: the longest stream ``n`` entries can need)."""
        if self.uses_elias:
            if nbits is None:
                nbits = elias.max_stream_bits(int(n), self.levels)
            ncodes, width = int(nbits), 1
        else:
            ncodes, width = int(n), self.width
        return self._new_header(
            n,
            dtype,
            bits=width,
            flags=self.flags,
            ncodes=ncodes,
            bucket=self.bucket,
            param=self.levels,
            nscales=num_buckets(n, self.bucket),
        )

    def _expected_header(self, h: Header) -> Header:
        if not self.uses_elias:
            return super()._expected_header(h)
        bound = elias.max_stream_bits(h.n, self.levels)
        return self.header(h.n, h.out_dtype, nbits=h.ncodes if h.ncodes <= bound else bound)

    def _encode_elias(self, x: Any, seed: SeedLike, rank: int) -> Payload:
        """Fixed-width levels (fused or reference), then their Elias stream; on the host."""
        host = x.get() if is_device_array(x) else x
        key, stream = derive(seed, rank)
        n, s, w = host.shape[0], self.levels, self.width
        if _fused.enabled():
            scales = np.empty(num_buckets(n, self.bucket), dtype=np.float32)
            packed = np.empty(packed_nbytes(n, w), dtype=np.uint8)
            nonfinite = _fused.qsgd_encode(
                host, self.bucket, s, NORMS[self.norm], self.stochastic, key, stream, w,
                scales, packed,
            )  # fmt: skip
            self._after_kernel(host, nonfinite)
            body, nbits = elias.encode_packed(packed, n, s, w)
        else:
            scales = bucket_scales(host, self.bucket, self.norm)
            codes = qsgd_codes_reference(host, scales, s, self.bucket, self.stochastic, key, stream)
            body, nbits = elias.encode_reference(codes, s)
        p = Payload.allocate(self.header(n, host.dtype, nbits=nbits))
        p.scales[:] = scales
        p.codes[:] = body
        if host is not x:
            p = Payload(p.header, array_module(x).asarray(p.buf))
        return p

    def _decode_into(self, payload: Payload, out: Any, add: bool) -> None:
        if not self.uses_elias:
            super()._decode_into(payload, out, add)
            return
        h = payload.header
        body, scales = payload.codes, payload.scales
        if is_device_array(payload.buf):
            body, scales = body.get(), scales.get()
        codes = elias.decode_codes(body, h.ncodes, h.n, self.levels)
        if is_device_array(out):  # staged: decode on the host, then copy or add
            host = np.empty(h.n, dtype=out.dtype)
            self._values(codes, scales, h, host, False)
            dev = array_module(out).asarray(host)
            if add:
                out += dev
            else:
                out[...] = dev
            return
        self._values(codes, scales, h, out, add)

    def _values(self, codes: np.ndarray, scales: np.ndarray, h: Header, out: Any, add: bool):
        """``out (+)= (c - s) * r / s`` of qsgd codes: the fixed-width decoder's arithmetic."""
        if _fused.enabled():
            f32 = h.out_dtype == np.float32 or out.dtype == np.float32
            elias.dequantize(codes, scales, h.n, self.bucket, self.levels, f32, out, add)
            return
        vals = qsgd_values_reference(codes, scales, self.levels, self.bucket)
        _store(out, vals.astype(h.out_dtype), add)

    def _encode(self, x: Any, seed: SeedLike, rank: int) -> Payload:
        if self.uses_elias:
            return self._encode_elias(x, seed, rank)
        if is_device_array(x):
            return gpu_drivers(self.name).encode(self, x, seed, rank)
        key, stream = derive(seed, rank)
        p = Payload.allocate(self.header(x.shape[0], x.dtype))
        if _fused.enabled():
            nonfinite = _fused.qsgd_encode(
                x,
                self.bucket,
                self.levels,
                NORMS[self.norm],
                self.stochastic,
                key,
                stream,
                self.width,
                p.scales,
                p.codes,
            )
            self._after_kernel(x, nonfinite)
            return p
        scales = bucket_scales(x, self.bucket, self.norm)
        p.scales[:] = scales
        codes = qsgd_codes_reference(
            x, scales, self.levels, self.bucket, self.stochastic, key, stream
        )
        pack_bits(codes, self.width, out=p.codes)
        return p

    def _decode_host(self, payload: Payload, out: Any, add: bool) -> None:
        h = payload.header
        if _fused.enabled():
            _fused.qsgd_decode(
                payload.scales,
                payload.codes,
                h.n,
                self.bucket,
                self.levels,
                self.width,
                np.dtype(h.out_dtype),
                out,
                add,
            )
            return
        codes = unpack_bits(payload.codes, self.width, h.n)
        vals = qsgd_values_reference(codes, payload.scales, self.levels, self.bucket)
        _store(out, vals.astype(h.out_dtype), add)


@register
class TernGrad(QSGD):
    """TernGrad: stochastic ternary levels {-1, 0, 1} times the bucket's max |x_i|.

    Exactly ``qsgd(levels=1, norm="linf", stochastic=True)`` under its own codec
    id: 2 bits per entry plus one float32 scale per bucket; unbiased with
    ``omega = min(b, sqrt(b)) = sqrt(b)``.

    Args:
        bucket: entries per scale, 1..2**30.
    """

    name = "terngrad"

    def __init__(self, bucket: int = 512, *, check_finite: bool = True):
        super().__init__(
            levels=1, bucket=bucket, norm="linf", stochastic=True, check_finite=check_finite
        )


@register
class Sign(_DecodesInPlace):
    """Scaled sign: ``sign(x_i) * ||v_k||_1 / len_k`` per bucket (1 bit per entry).

    Contraction, per bucket ``v`` of length ``d``: with ``r = ||v||_1/d``,
    ``||C(v)-v||^2 = ||v||^2 - 2r||v||_1 + d r^2 = ||v||^2 - ||v||_1^2/d
    <= (1 - 1/d) ||v||^2`` because ``||v||_1 >= ||v||_2`` (zero entries map to
    ``+r``, which leaves the identity unchanged). Summing over buckets gives
    ``delta = 1/min(b, n)`` (up to float32 rounding of ``r``).

    Args:
        bucket: entries per scale, 1..2**30.
    """

    name = "sign"

    def __init__(self, bucket: int = 512, *, check_finite: bool = True):
        super().__init__(check_finite=check_finite)
        self.bucket = check_int(self.name, "bucket", bucket, 1, MAX_BUCKET)

    def delta(self, n: int) -> float:
        return 1.0 / min(self.bucket, n)

    def header(self, n: int, dtype: Any) -> Header:
        return self._new_header(
            n,
            dtype,
            bits=1,
            ncodes=int(n),
            bucket=self.bucket,
            nscales=num_buckets(n, self.bucket),
        )

    def _encode(self, x: Any, seed: SeedLike, rank: int) -> Payload:
        if is_device_array(x):
            return gpu_drivers(self.name).encode(self, x, seed, rank)
        p = Payload.allocate(self.header(x.shape[0], x.dtype))
        if _fused.enabled():
            self._after_kernel(x, _fused.sign_encode(x, self.bucket, p.scales, p.codes))
            return p
        p.scales[:] = bucket_scales(x, self.bucket, "l1")
        pack_bits(sign_codes_reference(x), 1, out=p.codes)
        return p

    def _decode_host(self, payload: Payload, out: Any, add: bool) -> None:
        h = payload.header
        if _fused.enabled():
            _fused.sign_decode(
                payload.scales, payload.codes, h.n, self.bucket, np.dtype(h.out_dtype), out, add
            )
            return
        codes = unpack_bits(payload.codes, 1, h.n)
        vals = sign_values_reference(codes, payload.scales, self.bucket)
        _store(out, vals.astype(h.out_dtype), add)
