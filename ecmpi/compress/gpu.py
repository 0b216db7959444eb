"""CuPy implementations of the compressors, on the CUDA kernels of ``kernels/``.

The compressors call these for CuPy inputs through the table :data:`DRIVERS`
(codec name -> ``encode(compressor, x, seed, rank) -> Payload``,
``decode(compressor, payload, out)`` and, for the quantizers, a fused
``decode_add(compressor, payload, acc)``); each writes the same bytes as the
NumPy path (docs/compressors.md).

- qsgd, terngrad, sign: one fused kernel per launch reads ``x`` (and the
  error-feedback residual) once and writes the scales, packed codes and the
  new residual, when a bucket-aligned segment of at most 4096 entries that is
  a multiple of 32 exists (any bucket up to 4096 whose multiples reach a
  multiple of 32); otherwise two passes (per-bucket scale kernel, then the
  group kernel). Widths 2, 4, 8 run width-specialized kernels, others the
  general one.
- topk, randk: keys on the device (magnitude bits, or Philox words), a radix
  select over 8-bit digits (histogram kernel, 4 or 8 passes, 256 counters
  copied to the host per pass), then ``cupy.cumsum`` / ``cupy.flatnonzero``
  for the kept set in ascending index order, and CuPy indexing to gather.
- :func:`ef_encode` fuses error feedback (``p = g + alpha*h``; encode;
  ``h' = beta*h + (g - q)``, or ``p - q`` when ``alpha = beta = 1``) into the
  quantizers' kernel; topk/randk compose it from CuPy element-wise operations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .. import _kernels
from ..rng import SeedLike, derive
from .payload import Payload

__all__ = [
    "DRIVERS",
    "Drivers",
    "ef_encode",
    "fused_segment",
    "qsgd_decode",
    "qsgd_decode_add",
    "qsgd_encode",
    "radix_select",
    "randk_decode",
    "randk_encode",
    "sign_decode",
    "sign_decode_add",
    "sign_encode",
    "terngrad_decode",
    "terngrad_decode_add",
    "terngrad_encode",
    "topk_decode",
    "topk_encode",
]

_L2, _LINF, _L1 = 0, 1, 2
_SEG_MAX = 4096  # EC_SEG_MAX in kernels/common.cuh
_GROUP_THREADS = 128
_THREADS = 256
_NULL = np.uint64(0)  # a null device pointer argument


def _cupy() -> Any:
    import cupy

    return cupy


def _tn(dtype: Any) -> str:
    dt = np.dtype(dtype)
    if dt == np.float32:
        return "f32"
    if dt == np.float64:
        return "f64"
    raise TypeError(f"GPU compressors take float32 or float64, got {dt}")


def _check_device(name: str, *arrays: Any) -> None:
    for a in arrays:
        if a is not None and type(a).__module__.split(".", 1)[0] != "cupy":
            raise TypeError(f"{name}: expected a CuPy array, got {type(a).__name__}")


def fused_segment(b: int) -> int:
    """Entries per block of the fused encoder for bucket ``b`` (0: use two passes).

    The largest ``m*b <= 4096`` with ``m*b % 32 == 0`` (``ec_fused_segment``).
    """
    if b > _SEG_MAX:
        return 0
    m = _SEG_MAX // b
    while m > 0 and (m * b) % 32:
        m -= 1
    return m * b


# -- quantizers -------------------------------------------------------------------------


def _quant_params(compressor: Any, codec: str) -> tuple[int, int, int]:
    """``(levels, norm op, stochastic)`` of qsgd / terngrad / sign."""
    if codec == "sign":
        return 1, _L1, 0
    if codec == "terngrad":
        return 1, _LINF, 1
    norm = {"l2": _L2, "linf": _LINF}.get(getattr(compressor, "norm", "l2"))
    if norm is None:
        raise ValueError(f"qsgd: unknown norm {compressor.norm!r}")
    return int(compressor.levels), norm, int(bool(compressor.stochastic))


def _encode_quant(
    codec: str,
    compressor: Any,
    x: Any,
    seed: SeedLike,
    rank: int,
    h: Any = None,
    q_out: Any = None,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> Payload:
    _check_device(codec, x, h, q_out)
    cp = _cupy()
    n = int(x.shape[0])
    tn = _tn(x.dtype)
    T = x.dtype.type
    header = compressor.header(n, x.dtype)
    payload = Payload.allocate(header, cp)
    s, op, stochastic = _quant_params(compressor, codec)
    b, w = int(header.bucket), int(header.bits)
    key, stream = derive(seed, rank) if stochastic else (0, 0)
    codes = payload.codes
    plain = int(h is not None and alpha == 1.0 and beta == 1.0)
    args = (
        x,
        h if h is not None else _NULL,
        h if h is not None else _NULL,
        q_out if q_out is not None else _NULL,
        T(alpha),
        T(beta),
        np.int64(n),
        np.int64(b),
        np.int32(s),
        np.int32(op),
        np.int32(stochastic),
        np.int32(plain),
        np.int32(w),
        np.uint64(key),
        np.uint64(stream),
        payload.scales,
        codes,
        np.int64(codes.shape[0]),
    )
    fname, prefix, wv = (
        ("sign.cu", "sign", 1)
        if codec == "sign"
        else ("qsgd.cu", "qsgd", w if w in (2, 4, 8) else 0)
    )
    groups = (n + 31) // 32
    seg = fused_segment(b)
    if seg:
        kern = _kernels.get_function(fname, f"{prefix}_fused_{tn}_w{wv}")
        kern(((n + seg - 1) // seg,), (seg // 32,), (*args, np.int64(seg)))
    else:
        nb = int(header.nscales)
        _kernels.get_function(fname, f"scale_{tn}")((nb,), (_THREADS,), args)
        kern = _kernels.get_function(fname, f"{prefix}_groups_{tn}_w{wv}")
        kern(((groups + _GROUP_THREADS - 1) // _GROUP_THREADS,), (_GROUP_THREADS,), args)
    return payload


def _decode_quant(codec: str, compressor: Any, payload: Payload, out: Any, add: bool) -> None:
    _check_device(codec, payload.buf, out)
    h = payload.header
    s, _, _ = _quant_params(compressor, codec)
    tn = _tn(h.out_dtype)
    w = int(h.bits)
    fname, prefix, wv = (
        ("sign.cu", "sign", 1)
        if codec == "sign"
        else ("qsgd.cu", "qsgd", w if w in (2, 4, 8) else 0)
    )
    name = (
        f"{prefix}_decode_add_{tn}_{_tn(out.dtype)}_w{wv}"
        if add
        else (f"{prefix}_decode_{tn}_w{wv}")
    )
    if not add and out.dtype != h.out_dtype:
        raise TypeError(f"{codec}: out dtype {out.dtype} differs from the payload's {h.out_dtype}")
    codes = payload.codes
    groups = (h.n + 31) // 32
    _kernels.get_function(fname, name)(
        ((groups + _THREADS - 1) // _THREADS,),
        (_THREADS,),
        (
            codes,
            np.int64(codes.shape[0]),
            payload.scales,
            np.int64(h.n),
            np.int64(h.bucket),
            np.int32(s),
            np.int32(w),
            out,
        ),
    )


def qsgd_encode(compressor: Any, x: Any, seed: SeedLike, rank: int) -> Payload:
    """qsgd payload of the CuPy vector ``x`` (same bytes as the CPU path)."""
    return _encode_quant("qsgd", compressor, x, seed, rank)


def qsgd_decode(compressor: Any, payload: Payload, out: Any) -> None:
    """``out[:] = decode(payload)``: ``y_i = (r * (c - s)) / s`` in float64, cast."""
    _decode_quant("qsgd", compressor, payload, out, add=False)


def qsgd_decode_add(compressor: Any, payload: Payload, acc: Any) -> None:
    """``acc += decode(payload)`` (each decoded value cast to ``acc``'s dtype, then added)."""
    _decode_quant("qsgd", compressor, payload, acc, add=True)


def terngrad_encode(compressor: Any, x: Any, seed: SeedLike, rank: int) -> Payload:
    """terngrad payload: qsgd with ``s = 1``, linf scale, stochastic rounding."""
    return _encode_quant("terngrad", compressor, x, seed, rank)


def terngrad_decode(compressor: Any, payload: Payload, out: Any) -> None:
    """``out[:] = decode(payload)`` for terngrad."""
    _decode_quant("terngrad", compressor, payload, out, add=False)


def terngrad_decode_add(compressor: Any, payload: Payload, acc: Any) -> None:
    """``acc += decode(payload)`` for terngrad."""
    _decode_quant("terngrad", compressor, payload, acc, add=True)


def sign_encode(compressor: Any, x: Any, seed: SeedLike, rank: int) -> Payload:
    """Scaled-sign payload: l1 scale per bucket, one bit per entry (1 for ``x >= 0``)."""
    return _encode_quant("sign", compressor, x, seed, rank)


def sign_decode(compressor: Any, payload: Payload, out: Any) -> None:
    """``out[:] = +r`` or ``-r`` per entry."""
    _decode_quant("sign", compressor, payload, out, add=False)


def sign_decode_add(compressor: Any, payload: Payload, acc: Any) -> None:
    """``acc += decode(payload)`` for sign."""
    _decode_quant("sign", compressor, payload, acc, add=True)


# -- sparsifiers -------------------------------------------------------------------------


def _hist_numpy(keys: np.ndarray, prefix: int, mask: int, shift: int) -> np.ndarray:
    kt = keys.dtype.type
    sel = keys[(keys & kt(mask)) == kt(prefix)]
    return np.bincount(((sel >> kt(shift)) & kt(0xFF)).astype(np.int64), minlength=256)


def _hist_cupy(keys: Any, prefix: int, mask: int, shift: int, fname: str) -> np.ndarray:
    cp = _cupy()
    hist = cp.zeros(256, dtype=cp.uint64)
    kn = "u32" if keys.dtype == np.uint32 else "u64"
    kt = np.uint32 if kn == "u32" else np.uint64
    n = int(keys.shape[0])
    blocks = max(1, min((n + _THREADS - 1) // _THREADS, 4096))
    _kernels.get_function(fname, f"radix_hist_{kn}")(
        (blocks,),
        (_THREADS,),
        (keys, np.int64(n), kt(prefix), kt(mask), np.int32(shift), hist),
    )
    return hist.get().astype(np.int64)


def radix_select(keys: Any, k: int, hist: Any = None) -> Any:
    """Indices (ascending) of the ``k`` smallest ``(key, index)`` pairs of unsigned ``keys``.

    Finds the k-th smallest key ``t`` from the top 8-bit digit down (one
    histogram per digit), then keeps every key below ``t`` and the first
    ``k - count(keys < t)`` keys equal to ``t`` by index.

    Args:
        keys: uint32 or uint64 array (NumPy or CuPy).
        k: how many to keep, ``1 <= k <= len(keys)``.
        hist: ``hist(keys, prefix, mask, shift) -> int64[256]``; defaults to
            ``numpy.bincount`` for NumPy keys (used by the CPU tests of this
            algorithm).

    Returns:
        int64 indices in ascending order (same backend as ``keys``).
    """
    n = int(keys.shape[0])
    if not 1 <= k <= n:
        raise ValueError(f"radix_select: k={k} outside 1..{n}")
    if keys.dtype not in (np.uint32, np.uint64):
        raise TypeError(f"radix_select: keys must be uint32 or uint64, got {keys.dtype}")
    if hist is None:
        hist = _hist_numpy
    bits = keys.dtype.itemsize * 8
    prefix = mask = 0
    remaining = k
    for shift in range(bits - 8, -1, -8):
        cum = np.cumsum(hist(keys, prefix, mask, shift))
        d = int(np.searchsorted(cum, remaining, side="left"))
        remaining -= int(cum[d - 1]) if d else 0
        prefix |= d << shift
        mask |= 0xFF << shift
    xp = _cupy() if type(keys).__module__.split(".", 1)[0] == "cupy" else np
    t = keys.dtype.type(prefix)
    eq = keys == t
    keep = (keys < t) | (eq & (xp.cumsum(eq) <= remaining))
    return xp.flatnonzero(keep)


def _select(fname: str, keys: Any, k: int) -> Any:
    return radix_select(keys, k, lambda *a: _hist_cupy(*a, fname=fname))


def _topk_keys(x: Any) -> Any:
    cp = _cupy()
    n = int(x.shape[0])
    tn = _tn(x.dtype)
    keys = cp.empty(n, dtype=cp.uint32 if tn == "f32" else cp.uint64)
    _kernels.get_function("topk.cu", f"topk_keys_{tn}")(
        ((n + _THREADS - 1) // _THREADS,), (_THREADS,), (x, np.int64(n), keys)
    )
    return keys


def topk_encode(compressor: Any, x: Any, seed: SeedLike, rank: int) -> Payload:
    """TopK payload: the k largest ``|x_i|`` (ties to the smaller index), indices ascending."""
    cp = _cupy()
    _check_device("topk", x)
    n = int(x.shape[0])
    header = compressor.header(n, x.dtype)
    k = int(header.nidx)
    payload = Payload.allocate(header, cp)
    idx = _select("topk.cu", _topk_keys(x), k)
    payload.indices[:] = idx.astype(cp.uint32)
    payload.values[:] = x[idx]
    return payload


def topk_decode(compressor: Any, payload: Payload, out: Any) -> None:
    """``out`` = zeros with the kept values at their indices."""
    _check_device("topk", payload.buf, out)
    out[:] = 0
    out[payload.indices.astype(np.int64)] = payload.values.astype(out.dtype)


def _randk_keys(n: int, key: int, stream: int) -> Any:
    cp = _cupy()
    keys = cp.empty(n, dtype=cp.uint32)
    blocks = (n + 3) // 4
    _kernels.get_function("randk.cu", "randk_keys")(
        ((blocks + _THREADS - 1) // _THREADS,),
        (_THREADS,),
        (np.int64(n), np.uint64(key), np.uint64(stream), keys),
    )
    return keys


def randk_indices(n: int, k: int, key: int, stream: int) -> Any:
    """The k coordinates of RandK (ascending, CuPy int64): smallest ``(random_u32(i), i)``."""
    return _select("randk.cu", _randk_keys(n, key, stream), k)


def randk_encode(compressor: Any, x: Any, seed: SeedLike, rank: int) -> Payload:
    """RandK payload: values at the shared random coordinates; the key words as indices."""
    cp = _cupy()
    _check_device("randk", x)
    n = int(x.shape[0])
    header = compressor.header(n, x.dtype)
    k = int(header.nvals)
    key, stream = derive(seed)
    payload = Payload.allocate(header, cp)
    words = np.array(
        [key & 0xFFFFFFFF, key >> 32, stream & 0xFFFFFFFF, stream >> 32], dtype=np.uint32
    )
    payload.indices[:] = cp.asarray(words)
    payload.values[:] = x[randk_indices(n, k, key, stream)]
    return payload


def randk_decode(compressor: Any, payload: Payload, out: Any) -> None:
    """Scatter the values to the coordinates the key words give (``(v*n)/k`` if unbiased)."""
    _check_device("randk", payload.buf, out)
    h = payload.header
    words = [int(v) for v in payload.indices.get()]
    key, stream = words[0] | (words[1] << 32), words[2] | (words[3] << 32)
    k = int(h.nvals)
    idx = randk_indices(int(h.n), k, key, stream).astype(np.uint32)
    vals = payload.values
    tn = _tn(h.out_dtype)
    if out.dtype != h.out_dtype:
        raise TypeError(f"randk: out dtype {out.dtype} differs from the payload's {h.out_dtype}")
    out[:] = 0
    _kernels.get_function("randk.cu", f"randk_scatter_{tn}")(
        ((k + _THREADS - 1) // _THREADS,),
        (_THREADS,),
        (vals, idx, np.int64(k), np.int64(h.n), np.int32(h.flags & 1), out),
    )


# -- dispatch ----------------------------------------------------------------------------


class Drivers(NamedTuple):
    """The CuPy drivers of one codec."""

    encode: Callable[[Any, Any, SeedLike, int], Payload]
    decode: Callable[[Any, Payload, Any], None]
    #: ``acc += decode(payload)`` in one kernel; None: the codec adds a decoded copy
    decode_add: Callable[[Any, Payload, Any], None] | None


#: codec name -> its drivers (the compressors look up their own ``name`` here)
DRIVERS: dict[str, Drivers] = {
    "qsgd": Drivers(qsgd_encode, qsgd_decode, qsgd_decode_add),
    "terngrad": Drivers(terngrad_encode, terngrad_decode, terngrad_decode_add),
    "sign": Drivers(sign_encode, sign_decode, sign_decode_add),
    "topk": Drivers(topk_encode, topk_decode, None),
    "randk": Drivers(randk_encode, randk_decode, None),
}


# -- error feedback ----------------------------------------------------------------------

_FUSED_EF = {"qsgd", "terngrad", "sign"}


def ef_encode(
    compressor: Any,
    g: Any,
    residual: Any,
    *,
    seed: SeedLike,
    rank: int = 0,
    alpha: float = 1.0,
    beta: float = 1.0,
    out_q: Any = None,
) -> Payload:
    """Error feedback in one pass: compress ``p = g + alpha*h`` and update ``h`` in place.

    Steps 1 to 4 of the recursion defined in :mod:`ecmpi.compress.feedback`
    (``h' = beta*h + (g - q)``, ``p - q`` when ``alpha = beta = 1``), each
    operation rounded in the vector's dtype, as
    :class:`ecmpi.compress.feedback.ErrorFeedback` computes it. qsgd,
    terngrad and sign run one fused kernel (one read of ``g`` and ``h``, one
    write of ``h`` and the codes; ``kernels/quant.cuh`` computes the same
    operations); other codecs, and ``alpha = 0`` (``p = g``, no compensation),
    compose CuPy operations with the functions of that module.

    Args:
        compressor: the compressor.
        g: the gradient (CuPy, float32/float64, 1-D).
        residual: ``h``, same shape and dtype; overwritten with ``h'``.
        seed, rank: as for ``compressor.encode``.
        alpha, beta: ECQ-SGD's coefficients.
        out_q: optional array that receives ``q``.

    Returns:
        The payload of ``p``.
    """
    _check_device("ef_encode", g, residual, out_q)
    if residual.shape != g.shape or residual.dtype != g.dtype:
        raise ValueError(
            f"ef_encode: residual {residual.shape} {residual.dtype} does not match "
            f"gradient {g.shape} {g.dtype}"
        )
    if out_q is not None and (out_q.shape != g.shape or out_q.dtype != g.dtype):
        raise ValueError(f"ef_encode: out_q must be {g.shape} {g.dtype}")
    from . import feedback as ef

    if compressor.name in _FUSED_EF and alpha != 0.0 and compressor.fixed_size:
        g = compressor._check_input(g)
        return _encode_quant(
            compressor.name, compressor, g, seed, int(rank), residual, out_q, alpha, beta
        )
    p = ef.compensate(g, residual, alpha)
    payload = compressor.encode(p, seed=seed, rank=rank)
    q = compressor.decode(payload)
    residual[...] = ef.next_residual(g, residual, p, q, alpha=alpha, beta=beta)
    if out_q is not None:
        out_q[...] = q
    return payload
