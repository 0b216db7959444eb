"""Entropy-coded payload sizes (ecmpi.compress.entropy)."""

import math

import numpy as np
import pytest

import ecmpi
from ecmpi.compress.entropy import (
    code_counts,
    coded_bits,
    empirical_entropy_bits,
    huffman_bits,
    huffman_lengths,
)
from ecmpi.compress.packing import pack_bits
from ecmpi.compress.payload import CODECS, Header, Payload


def _payload_with_codes(codes, bits):
    n = len(codes)
    h = Header(
        codec=CODECS["qsgd"], dtype=0, bits=bits, n=n, ncodes=n, bucket=n, param=1, nscales=1
    )
    p = Payload.allocate(h)
    p.scales[:] = 1.0
    pack_bits(np.asarray(codes, dtype=np.uint16), bits, out=p.codes)
    return p


def test_entropy_of_uniform_and_constant():
    assert empirical_entropy_bits(np.array([10, 10, 10, 10])) == pytest.approx(80.0)
    assert empirical_entropy_bits(np.array([0, 7, 0])) == 0.0
    # two symbols p = 1/4, 3/4, n = 4: 4 * H(1/4)
    h = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    assert empirical_entropy_bits(np.array([1, 3])) == pytest.approx(4 * h)


def test_huffman_textbook_example():
    # CLRS 16.3: frequencies a..f = 45, 13, 12, 16, 9, 5 -> lengths 1, 3, 3, 3, 4, 4, 224 bits
    counts = np.array([45, 13, 12, 16, 9, 5])
    assert huffman_lengths(counts).tolist() == [1, 3, 3, 3, 4, 4]
    assert huffman_bits(counts) == 224


@pytest.mark.parametrize("seed", range(5))
def test_huffman_is_optimal_prefix_code(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 1000, size=9)
    counts[0] = 5000
    lengths = huffman_lengths(counts)
    used = counts > 0
    assert (lengths[~used] == 0).all()
    # Kraft equality for a full binary tree; H <= L < H + n
    assert sum(2.0 ** -lengths[used]) == pytest.approx(1.0)
    n = counts.sum()
    h = empirical_entropy_bits(counts)
    assert h <= huffman_bits(counts) < h + n


def test_single_symbol_costs_one_bit_each():
    assert huffman_lengths(np.array([0, 12, 0])).tolist() == [0, 1, 0]


def test_code_counts_and_coded_bits():
    codes = [1] * 60 + [0] * 2 + [2] * 2
    p = _payload_with_codes(codes, 2)
    assert code_counts(p).tolist() == [2, 60, 2, 0]
    fixed = 8 * p.nbytes
    rest = fixed - 8 * 16  # 64 codes of 2 bits = 16 bytes
    ent = empirical_entropy_bits(np.array([2, 60, 2]))
    assert coded_bits(p, "entropy") == pytest.approx(rest + 4 * math.ceil(math.log2(65)) + ent)
    assert coded_bits(p, "huffman") == rest + 4 * 5 + (60 * 1 + 2 * 2 + 2 * 2)
    assert coded_bits(p, "entropy") < fixed


def test_payload_without_codes_is_counted_as_sent():
    p = ecmpi.compressor("none").encode(np.arange(5.0))
    assert coded_bits(p) == 8 * p.nbytes
    assert code_counts(p).size == 0


def test_bad_input():
    p = _payload_with_codes([0, 1], 1)
    with pytest.raises(ValueError, match="unknown coder"):
        coded_bits(p, "lz")
    with pytest.raises(TypeError, match="Payload"):
        coded_bits(b"xx")
    with pytest.raises(ValueError, match="non-negative"):
        empirical_entropy_bits(np.array([1, -1]))
    with pytest.raises(ValueError, match="integer"):
        huffman_lengths(np.array([0.5, 1.0]))
