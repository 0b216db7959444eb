"""Sparsifiers: ``topk`` (largest magnitudes) and ``randk`` (shared random coordinates).

Exact selection rules are in ``docs/compressors.md``:

- topk keeps the k entries of largest ``|x_i|``, ties broken towards the
  smaller index, and sends the indices (ascending uint32) and the values.
- randk keeps the k coordinates whose pairs ``(random_u32(key, stream, i), i)``
  are smallest, with ``(key, stream) = derive(seed)`` (no rank), so every worker
  picks the same coordinates for the same seed; only the key words are sent,
  never the indices. ``unbiased=True`` rescales by ``n/k`` on decode.

Both are contractions with ``delta = k/n`` (randk in expectation); unbiased
randk has ``omega = n/k - 1``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from .._backend import is_device_array
from ..rng import SeedLike, derive, random_u32
from . import _fused
from .base import Compressor, check_bool, check_int, gpu_drivers, register
from .payload import Header, Payload

__all__ = ["RandK", "TopK", "randk_indices", "smallest_k", "topk_indices"]

MAX_N = 0xFFFFFFFF  # indices are uint32
FLAG_UNBIASED = 1
_VALUE_FMT = {np.dtype(np.float32): 3, np.dtype(np.float64): 4}


def smallest_k(keys: np.ndarray, k: int) -> np.ndarray:
    """Indices (ascending) of the k smallest ``(keys[i], i)`` pairs: ties go to the smaller i."""
    n = keys.shape[0]
    if k >= n:
        return np.arange(n, dtype=np.uint32)
    t = np.partition(keys, k - 1)[k - 1]
    below = np.flatnonzero(keys < t)
    at = np.flatnonzero(keys == t)[: k - below.shape[0]]
    return np.sort(np.concatenate([below, at])).astype(np.uint32)


def topk_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Ascending indices of the k largest ``|x_i|`` (ties to the smaller index; NaN ranks first)."""
    a = np.abs(x)
    a = np.where(np.isnan(a), np.inf, a)
    return smallest_k(-a, k)


@lru_cache(maxsize=4)
def _randk_cached(key: int, stream: int, n: int, k: int) -> np.ndarray:
    if _fused.enabled():
        words = _fused.random_u32(key, stream, n)
    else:
        words = random_u32(key, stream, 0, n)
    idx = smallest_k(words, k)
    idx.flags.writeable = False
    return idx


def randk_indices(key: int, stream: int, n: int, k: int) -> np.ndarray:
    """The k coordinates randk keeps for ``(key, stream)``, ascending (read-only, cached)."""
    return _randk_cached(int(key), int(stream), int(n), int(k))


class _Sparse(Compressor):
    """Shared parameter handling: ``k`` or ``ratio`` (default ratio 0.01)."""

    def __init__(self, k: int | None = None, ratio: float | None = None, *, check_finite: bool):
        super().__init__(check_finite=check_finite)
        owner = self.name
        if k is not None and ratio is not None:
            raise ValueError(f"{owner}: give k or ratio, not both")
        if k is not None:
            k = check_int(owner, "k", k, 1, MAX_N)
        else:
            if ratio is None:
                ratio = 0.01
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating)):
                raise TypeError(f"{owner}: ratio must be a number, got {ratio!r}")
            ratio = float(ratio)
            if not 0.0 < ratio <= 1.0:
                raise ValueError(f"{owner}: ratio must be in (0, 1], got {ratio}")
        self.k = k
        self.ratio = ratio

    def resolve_k(self, n: int) -> int:
        """Entries kept of a vector of n: ``k`` or ``max(1, ceil(ratio*n))``, capped at n."""
        if n > MAX_N:
            raise ValueError(f"{self.name}: vectors longer than {MAX_N} entries are not supported")
        k = self.k if self.k is not None else max(1, math.ceil(self.ratio * n))
        return min(k, n)

    def _value_fmt(self, dtype: Any) -> int:
        return _VALUE_FMT[np.dtype(dtype)]


@register
class TopK(_Sparse):
    """TopK: the k largest ``|x_i|`` with their indices.

    Contraction: the dropped entries are the n-k smallest, so
    ``||C(x)-x||^2 <= (1 - k/n) ||x||^2``. Wire: ``48 + 4k + k*itemsize``
    (values padded to 4 bytes).

    Args:
        k: entries kept (capped at n), or
        ratio: fraction kept, ``k = max(1, ceil(ratio*n))`` (default 0.01).
    """

    name = "topk"

    def __init__(
        self, k: int | None = None, ratio: float | None = None, *, check_finite: bool = True
    ):
        super().__init__(k, ratio, check_finite=check_finite)

    def delta(self, n: int) -> float:
        return self.resolve_k(n) / n

    def header(self, n: int, dtype: Any) -> Header:
        k = self.resolve_k(n)
        return self._new_header(
            n, dtype, value_fmt=self._value_fmt(dtype), param=k, nidx=k, nvals=k
        )

    def _encode(self, x: Any, seed: SeedLike, rank: int) -> Payload:
        if is_device_array(x):
            return gpu_drivers(self.name).encode(self, x, seed, rank)
        p = Payload.allocate(self.header(x.shape[0], x.dtype))
        idx = topk_indices(x, p.header.param)
        p.indices[:] = idx
        p.values[:] = x[idx]
        return p

    def _indices(self, payload: Payload) -> np.ndarray:
        idx = payload.indices
        n = payload.n
        if idx.shape[0] and (int(idx.max()) >= n or np.any(np.diff(idx.astype(np.int64)) <= 0)):
            raise ValueError("topk payload: indices are not strictly ascending below n (corrupted)")
        return idx

    def _decode(self, payload: Payload, out: Any) -> None:
        if is_device_array(payload.buf) or is_device_array(out):
            gpu_drivers(self.name).decode(self, payload, out)
            return
        idx = self._indices(payload)
        out[:] = 0
        out[idx] = payload.values

    def decode_add(self, payload: Payload, acc: Any) -> Any:
        """``acc[idx] += values`` (CPU); the indices are distinct, so no accumulation clash."""
        if is_device_array(payload.buf) or is_device_array(acc):
            return super().decode_add(payload, acc)
        self._check_acc(payload, acc)
        idx = self._indices(payload)
        acc[idx] += payload.values.astype(acc.dtype, copy=False)
        return acc


@register
class RandK(_Sparse):
    """RandK: k coordinates chosen by a key all workers share; indices are not sent.

    Biased (default): ``E||C(x)-x||^2 = (1 - k/n) ||x||^2``, ``delta = k/n``.
    ``unbiased=True`` scales the kept values by ``n/k`` on decode:
    ``E[C(x)] = x``, ``omega = n/k - 1``. Wire: ``48 + k*itemsize + 16``.

    Args:
        k: entries kept (capped at n), or
        ratio: fraction kept, ``k = max(1, ceil(ratio*n))`` (default 0.01).
        unbiased: rescale by ``n/k``.
    """

    name = "randk"

    def __init__(
        self,
        k: int | None = None,
        ratio: float | None = None,
        unbiased: bool = False,
        *,
        check_finite: bool = True,
    ):
        super().__init__(k, ratio, check_finite=check_finite)
        self.unbiased = check_bool(self.name, "unbiased", unbiased)

    def omega(self, n: int) -> float:
        if not self.unbiased:
            return float("inf")
        return n / self.resolve_k(n) - 1.0

    def delta(self, n: int) -> float:
        """k/n: biased randk is a contraction; unbiased, ``1/(omega+1)`` of ``C/(omega+1)``."""
        if self.unbiased:
            return super().delta(n)
        return self.resolve_k(n) / n

    def header(self, n: int, dtype: Any) -> Header:
        k = self.resolve_k(n)
        return self._new_header(
            n,
            dtype,
            value_fmt=self._value_fmt(dtype),
            flags=FLAG_UNBIASED if self.unbiased else 0,
            param=k,
            nidx=4,
            nvals=k,
        )

    def _encode(self, x: Any, seed: SeedLike, rank: int) -> Payload:
        if is_device_array(x):
            return gpu_drivers(self.name).encode(self, x, seed, rank)
        key, stream = derive(seed)
        p = Payload.allocate(self.header(x.shape[0], x.dtype))
        p.indices[:] = _key_words(key, stream)
        p.values[:] = x[randk_indices(key, stream, x.shape[0], p.header.param)]
        return p

    def _chosen(self, payload: Payload) -> np.ndarray:
        w = [int(v) for v in payload.indices]
        key, stream = w[0] | (w[1] << 32), w[2] | (w[3] << 32)
        return randk_indices(key, stream, payload.n, payload.header.param)

    def _scaled(self, payload: Payload) -> np.ndarray:
        vals = payload.values
        if not self.unbiased:
            return vals
        h = payload.header
        return ((vals.astype(np.float64) * float(h.n)) / float(h.param)).astype(h.out_dtype)

    def _decode(self, payload: Payload, out: Any) -> None:
        if is_device_array(payload.buf) or is_device_array(out):
            gpu_drivers(self.name).decode(self, payload, out)
            return
        out[:] = 0
        out[self._chosen(payload)] = self._scaled(payload)

    def decode_add(self, payload: Payload, acc: Any) -> Any:
        """``acc[idx] += values`` (CPU), indices recomputed from the key words."""
        if is_device_array(payload.buf) or is_device_array(acc):
            return super().decode_add(payload, acc)
        self._check_acc(payload, acc)
        acc[self._chosen(payload)] += self._scaled(payload).astype(acc.dtype, copy=False)
        return acc


def _key_words(key: int, stream: int) -> np.ndarray:
    m = 0xFFFFFFFF
    return np.array([key & m, key >> 32, stream & m, stream >> 32], dtype=np.uint32)
