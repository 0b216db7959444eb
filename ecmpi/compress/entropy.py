"""Entropy-coded size of a payload: what its codes would cost after lossless coding.

Fixed-width packing spends ``w = ceil(log2(2s+1))`` bits on every quantized
entry, but a QSGD-style quantizer with few levels and large buckets puts most
entries on level 0, so the codes are highly compressible. This module
measures two coded sizes of the *codes section* of a payload (header, scales,
values and indices are counted as sent):

- ``"entropy"``: the order-0 empirical entropy ``n * H(p)`` with
  ``p_c = count_c / n`` (Shannon 1948): the size an ideal arithmetic coder
  reaches with a static model, within a few bits. The model costs
  ``A * ceil(log2(n + 1))`` bits (one count per symbol of the alphabet of size
  ``A = 2**w``, only used symbols needed but all are charged).
- ``"huffman"``: a real Huffman code (Huffman 1952) built from the counts;
  ``sum_c count_c * len_c`` bits (at least one bit per entry) plus a canonical
  code table of ``A * 5`` bits (one code length 0..31 per symbol).

ECQ-SGD (Wu et al., ICML 2018) reports its large compression ratios with
such a coder on top of the quantized levels; logging both figures lets a run
check that claim against the bits actually sent.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

from .._backend import to_host
from .packing import packed_nbytes, unpack_bits
from .payload import Payload

__all__ = [
    "CODERS",
    "code_counts",
    "coded_bits",
    "empirical_entropy_bits",
    "huffman_bits",
    "huffman_lengths",
]

#: names accepted by :func:`coded_bits`
CODERS = ("entropy", "huffman")
_TABLE_BITS_PER_SYMBOL = 5


def code_counts(payload: Payload) -> np.ndarray:
    """Histogram of the payload's packed codes: ``counts[c]`` = entries with code ``c``.

    Returns an int64 array of length ``2**bits`` (empty when the payload has no codes).
    """
    if not isinstance(payload, Payload):
        raise TypeError(f"code_counts takes a Payload, got {type(payload).__name__}")
    h = payload.header
    if h.ncodes == 0:
        return np.zeros(0, dtype=np.int64)
    codes = unpack_bits(to_host(payload.codes), h.bits, h.ncodes)
    return np.bincount(codes, minlength=1 << h.bits).astype(np.int64)


def _check_counts(counts: Any) -> np.ndarray:
    c = np.asarray(counts)
    if c.ndim != 1 or not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"counts must be a 1-D integer array, got {c.dtype} {c.shape}")
    if (c < 0).any():
        raise ValueError("counts must be non-negative")
    return c.astype(np.int64)


def empirical_entropy_bits(counts: Any) -> float:
    """``sum_c -count_c * log2(count_c / n)``: order-0 entropy of the sequence, in bits."""
    c = _check_counts(counts)
    c = c[c > 0]
    n = int(c.sum())
    if n == 0:
        return 0.0
    p = c / n
    return float(-(c * np.log2(p)).sum())


def huffman_lengths(counts: Any) -> np.ndarray:
    """Huffman code lengths per symbol (0 for unused symbols; a lone symbol gets 1 bit)."""
    c = _check_counts(counts)
    lengths = np.zeros(c.shape[0], dtype=np.int64)
    used = np.flatnonzero(c)
    if used.size == 1:
        lengths[used] = 1
        return lengths
    # heap of (weight, tie-breaker, symbols in the subtree); merging deepens each symbol by 1
    heap = [(int(c[s]), int(s), [int(s)]) for s in used]
    heapq.heapify(heap)
    tie = c.shape[0]
    while len(heap) > 1:
        w1, _, s1 = heapq.heappop(heap)
        w2, _, s2 = heapq.heappop(heap)
        for s in s1:
            lengths[s] += 1
        for s in s2:
            lengths[s] += 1
        heapq.heappush(heap, (w1 + w2, tie, s1 + s2))
        tie += 1
    return lengths


def huffman_bits(counts: Any) -> int:
    """Bits of the Huffman-coded sequence: ``sum_c count_c * len_c`` (table excluded)."""
    c = _check_counts(counts)
    return int((c * huffman_lengths(c)).sum())


def coded_bits(payload: Payload, coder: str = "entropy") -> float:
    """Size in bits of ``payload`` with its codes section entropy coded.

    ``8 * (nbytes - packed code bytes) + coded codes + model/table`` (see the
    module docstring). Payloads without codes (none, topk, ...) return
    ``8 * nbytes``, as do ``qsgd-elias`` payloads (their codes are already a
    variable-length code).

    Args:
        payload: any payload.
        coder: ``"entropy"`` (ideal static arithmetic coder) or ``"huffman"``.
    """
    if coder not in CODERS:
        raise ValueError(f"unknown coder {coder!r}; available: {', '.join(CODERS)}")
    h = payload.header if isinstance(payload, Payload) else None
    if h is None:
        raise TypeError(f"coded_bits takes a Payload, got {type(payload).__name__}")
    total = 8 * payload.nbytes
    if h.ncodes == 0 or h.codec_name == "qsgd-elias":  # no codes, or already Elias coded
        return float(total)
    counts = code_counts(payload)
    rest = total - 8 * packed_nbytes(h.ncodes, h.bits)
    alphabet = counts.shape[0]
    if coder == "entropy":
        model = alphabet * math.ceil(math.log2(h.ncodes + 1))
        return float(rest + model + empirical_entropy_bits(counts))
    return float(rest + alphabet * _TABLE_BITS_PER_SYMBOL + huffman_bits(counts))
