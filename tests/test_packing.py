"""Bit packing against a plain-Python bit-string reference, every width 1..16."""

from __future__ import annotations

import numpy as np
import pytest

from ecmpi.compress.packing import pack_bits, packed_nbytes, unpack_bits


def reference_pack(codes, width):
    """LSB-first bit string: entry j occupies bits j*w .. j*w+w-1."""
    bits = "".join(format(int(c), f"0{width}b")[::-1] for c in codes)
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i : i + 8][::-1], 2) for i in range(0, len(bits), 8))


@pytest.mark.parametrize("width", range(1, 17))
@pytest.mark.parametrize("n", [0, 1, 2, 7, 8, 9, 63, 64, 65, 1000])
def test_round_trip_against_reference(width, n):
    rng = np.random.default_rng(width * 1000 + n)
    codes = rng.integers(0, 2**width, size=n).astype(np.uint32)
    packed = pack_bits(codes, width)
    assert packed.dtype == np.uint8 and packed.shape == (packed_nbytes(n, width),)
    assert packed.tobytes() == reference_pack(codes, width)
    np.testing.assert_array_equal(unpack_bits(packed, width, n), codes)


@pytest.mark.parametrize("width", range(1, 17))
def test_extreme_codes(width):
    codes = np.array([0, 2**width - 1] * 9, dtype=np.uint32)
    packed = pack_bits(codes, width)
    assert packed.tobytes() == reference_pack(codes, width)
    np.testing.assert_array_equal(unpack_bits(packed, width, codes.size), codes)


def test_nbytes_formula():
    for n in range(0, 40):
        for w in range(1, 17):
            assert packed_nbytes(n, w) == -(-n * w // 8)


@pytest.mark.parametrize("width", [0, 17, -1, 2.0])
def test_bad_width(width):
    with pytest.raises(ValueError, match="bit width"):
        pack_bits(np.zeros(3, dtype=np.uint8), width)


def test_short_buffer_rejected():
    with pytest.raises(ValueError, match="too short"):
        unpack_bits(np.zeros(2, dtype=np.uint8), 3, 8)


def test_out_shape_checked():
    with pytest.raises(ValueError, match="out must be"):
        pack_bits(np.zeros(8, dtype=np.uint8), 2, out=np.zeros(3, dtype=np.uint8))
