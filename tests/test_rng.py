"""Counter-based RNG: Random123 known answers, slicing, uniformity, key derivation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ecmpi import rng
from ecmpi.compress import _fused

# Random123 kat_vectors for philox4x32_10: (counter, key, expected)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (
        (0xFFFFFFFF,) * 4,
        (0xFFFFFFFF, 0xFFFFFFFF),
        (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD),
    ),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_philox_known_answers(ctr, key, want):
    out = rng.philox4x32(*[np.uint32(c) for c in ctr], key[0] | (key[1] << 32))
    assert tuple(int(v) for v in out) == want


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_stream_layout_matches_philox(ctr, key, want):
    # block b of stream s has counter (b lo, b hi, s lo, s hi)
    block = ctr[0] | (ctr[1] << 32)
    stream = ctr[2] | (ctr[3] << 32)
    k = key[0] | (key[1] << 32)
    assert tuple(int(v) for v in rng.random_u32(k, stream, 4 * block, 4)) == want
    octets = rng.random_u8(k, stream, 16 * block, 16)
    words = [int.from_bytes(bytes(octets[4 * i : 4 * i + 4]), "little") for i in range(4)]
    assert tuple(words) == want
    # the low-byte stream is the same generator from block 2^63 on
    low = rng.random_u8(k, stream, 16 * block, 16, base=rng.LOW_BYTES)
    want_low = rng.random_u32(k, stream, 4 * ((rng.LOW_BYTES + block) & rng.MASK64), 4)
    assert bytes(low) == want_low.astype("<u4").tobytes()


def test_dither_is_high_byte_then_low_byte():
    key, stream = rng.derive(3, 1)
    u = rng.dither_u16(key, stream, 5, 300)
    high = rng.random_u8(key, stream, 5, 300).astype(np.uint16)
    low = rng.random_u8(key, stream, 5, 300, base=rng.LOW_BYTES).astype(np.uint16)
    np.testing.assert_array_equal(u, high * 256 + low)
    assert u.dtype == np.uint16


@pytest.mark.parametrize("start,count", [(0, 1), (3, 17), (5, 0), (1001, 999), (7, 8)])
def test_slices_agree_with_longer_draw(start, count):
    key, stream = rng.derive(11, 2, 3)
    full32 = rng.random_u32(key, stream, 0, 2100)
    full8 = rng.random_u8(key, stream, 0, 2100)
    full16 = rng.dither_u16(key, stream, 0, 2100)
    np.testing.assert_array_equal(rng.random_u32(key, stream, start, count), full32[start:][:count])
    np.testing.assert_array_equal(rng.random_u8(key, stream, start, count), full8[start:][:count])
    np.testing.assert_array_equal(rng.dither_u16(key, stream, start, count), full16[start:][:count])


@pytest.mark.skipif(not _fused.enabled(), reason="numba fast path disabled")
@pytest.mark.parametrize("n", [1, 3, 4, 5, 1000, 4099])
def test_fused_random_u32_matches(n):
    key, stream = rng.derive((5, 9), 1)
    np.testing.assert_array_equal(
        _fused.random_u32(key, stream, n), rng.random_u32(key, stream, 0, n)
    )


@pytest.mark.parametrize("bits", [8, 16, 32])
def test_uniformity_chi_square(bits):
    # 64 equal cells, 2**16 draws; under H0 the statistic is chi2(63). The bound is its
    # 1 - 1e-6 quantile, so a correct generator fails this fixed-seed test with p < 1e-6.
    n, cells = 1 << 16, 64
    key, stream = rng.derive(2024)
    draw = {8: rng.random_u8, 16: rng.dither_u16, 32: rng.random_u32}[bits]
    u = draw(key, stream, 0, n).astype(np.uint64)
    counts = np.bincount((u * cells >> np.uint64(bits)).astype(np.int64), minlength=cells)
    chi2 = float(((counts - n / cells) ** 2 / (n / cells)).sum())
    assert chi2 < stats.chi2.ppf(1 - 1e-6, cells - 1)
    # and it is not suspiciously perfect either (lower 1e-6 quantile)
    assert chi2 > stats.chi2.ppf(1e-6, cells - 1)


def test_uniform_in_unit_interval():
    u = rng.uniform(1, 2, 0, 10000)
    assert u.dtype == np.float64 and u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 6 * np.sqrt(1 / 12 / 10000)  # 6 sigma


def test_derive():
    assert rng.derive(7) == (7, 0)
    assert rng.derive((7, 3)) == rng.derive(7, 3)
    assert rng.derive(7, 3) == (7, rng.mix64(0 ^ 3))
    assert rng.derive(7, 1, 2) == (7, rng.mix64(rng.mix64(1) ^ 2))
    assert rng.derive(7, 1) != rng.derive(7, 2)
    assert rng.derive(7, 1, 2) != rng.derive(7, 2, 1)
    assert rng.derive(2**64 + 5)[0] == 5


@pytest.mark.parametrize("bad", [-1, (1, -2), ()])
def test_derive_rejects_bad_seed(bad):
    with pytest.raises(ValueError):
        rng.derive(bad)


@pytest.mark.parametrize("bad", [True, "seed", 1.5, None])
def test_derive_rejects_wrong_type(bad):
    with pytest.raises(TypeError):
        rng.derive(bad)


def test_negative_start_rejected():
    with pytest.raises(ValueError):
        rng.random_u32(1, 2, -1, 3)
    with pytest.raises(ValueError):
        rng.random_u8(1, 2, 0, -3)


def test_global_numpy_rng_untouched():
    state = np.random.get_state()[1].copy()  # noqa: NPY002
    rng.random_u32(1, 2, 0, 100)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # noqa: NPY002
