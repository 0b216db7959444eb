"""Per-bucket scales (l2, linf, l1) with the summation order fixed by docs/compressors.md.

A vector of ``n`` entries is split into buckets of ``b`` entries (the last may
be shorter). Sums over a bucket are *tree sums*: the terms are copied into a
float64 array zero-padded to a power of two ``B``, and halves are added,
``v[j] = v[j] + v[j+h]`` for ``h = B/2, ..., 1``. This is the order a GPU
shared-memory reduction uses, so every backend gets the same bits.

Zero padding beyond the terms adds exact zeros (every term is ``>= 0``), so
``B = next_pow2(min(b, n))`` gives the same result as ``next_pow2(b)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NORMS", "bucket_scales", "next_pow2", "num_buckets", "tree_sum"]

#: norm name -> code used by the fused kernels
NORMS: dict[str, int] = {"l2": 0, "linf": 1, "l1": 2}


def next_pow2(m: int) -> int:
    """The smallest power of two ``>= m`` (1 for ``m <= 1``)."""
    return 1 << max(0, int(m) - 1).bit_length()


def num_buckets(n: int, b: int) -> int:
    """``ceil(n / b)``."""
    return -(-int(n) // int(b))


def tree_sum(terms: np.ndarray, b: int) -> np.ndarray:
    """Per-bucket tree sums of non-negative float64 ``terms`` (see the module docstring).

    Returns:
        float64 array of ``ceil(len(terms)/b)`` sums.
    """
    n = terms.shape[0]
    nb = num_buckets(n, b)
    width = next_pow2(min(b, n))
    a = np.zeros((nb, width), dtype=np.float64)
    if b <= n:
        tmp = np.zeros(nb * b, dtype=np.float64)
        tmp[:n] = terms
        a[:, :b] = tmp.reshape(nb, b)
    else:
        a[0, :n] = terms
    h = width // 2
    while h >= 1:
        a = a[:, :h] + a[:, h : 2 * h]
        h //= 2
    return a[:, 0]


def bucket_scales(x: np.ndarray, b: int, norm: str) -> np.ndarray:
    """float32 scale of every bucket of ``x``.

    - ``l2``:   ``float32(sqrt(treesum(x_i^2)))`` (squares in float64)
    - ``linf``: ``float32(max |x_i|)``
    - ``l1``:   ``float32(treesum(|x_i|) / len_k)``, ``len_k`` the bucket's true length
    """
    x64 = x.astype(np.float64)
    n = x64.shape[0]
    if norm == "l2":
        return np.sqrt(tree_sum(x64 * x64, b)).astype(np.float32)
    if norm == "linf":
        nb = num_buckets(n, b)
        pad = np.zeros(nb * b if b <= n else n, dtype=np.float64)
        pad[:n] = np.abs(x64)
        return pad.reshape(nb, -1).max(axis=1).astype(np.float32)
    if norm == "l1":
        nb = num_buckets(n, b)
        lengths = np.full(nb, min(b, n), dtype=np.float64)
        lengths[-1] = n - (nb - 1) * b
        return (tree_sum(np.abs(x64), b) / lengths).astype(np.float32)
    raise ValueError(f"unknown norm {norm!r}; use one of {', '.join(NORMS)}")
