"""The uniform R-bit quantizer: error bound, bit budget, packing, saturation, wire format."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ecmpi
from ecmpi.compress.packing import pack_bits
from ecmpi.compress.payload import HEADER_SIZE, Payload
from ecmpi.compress.uniform import (
    UniformQuantizer,
    bit_widths,
    dequantize,
    l2_error_factor,
    pack_codes,
    quantize,
    total_bits,
    unpack_codes,
)

RATES = [0.3, 1, 2, 2.5, 4, 5.75, 8, 11, 16]


@pytest.mark.parametrize("bits", RATES)
@pytest.mark.parametrize("n", [1, 7, 50, 333])
def test_widths_spread_exactly_floor_nR_bits(n, bits):
    w = bit_widths(n, bits)
    assert w.shape == (n,)
    assert int(w.sum()) == math.floor(n * bits + 1e-9) == total_bits(n, bits)
    assert set(np.unique(w)) <= {math.floor(bits), math.ceil(bits)}


def test_fractional_bits_read_as_decimal():
    # 0.1 * 30 is 3.0000000000000004 in binary floating point; the budget is exactly 3 bits.
    assert total_bits(30, 0.1) == 3
    assert total_bits(10, 2.3) == 23


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 80),
    bits=st.sampled_from(RATES),
    seed=st.integers(0, 2**31),
    per_coord=st.booleans(),
)
def test_error_bound_inside_range(n, bits, seed, per_coord):
    rng = np.random.default_rng(seed)
    r = rng.uniform(0.1, 3.0, n) if per_coord else float(rng.uniform(0.1, 3.0))
    u = rng.uniform(-1, 1, n) * r
    w = bit_widths(n, bits)
    codes, sat = quantize(u, r, w)
    assert sat == 0
    assert np.all(codes < 2 ** w.astype(np.int64))
    y = dequantize(codes, r, w)
    bound = np.asarray(r) * np.exp2(-w.astype(float))
    assert np.all(np.abs(y - u) <= bound * (1 + 1e-12))
    assert np.linalg.norm(y - u) <= l2_error_factor(w) * np.max(r) * (1 + 1e-12)


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_rho_sqrt_d_is_attained(bits):
    # every coordinate on the lower edge of the range: error r*2^-R in each, sqrt(d)*r*2^-R in l2
    d, r = 50, 2.0
    w = bit_widths(d, bits)
    assert l2_error_factor(w) == pytest.approx(math.sqrt(d) * 2.0**-bits, rel=1e-15)
    y = dequantize(*quantize(np.full(d, -r), r, w)[:1], r, w)
    assert np.linalg.norm(y + r) == pytest.approx(l2_error_factor(w) * r, rel=1e-12)


def test_saturation_counted_and_clipped():
    w = bit_widths(6, 3)
    u = np.array([-5.0, -1.0, 0.0, 0.999, 1.0, 7.0])
    codes, sat = quantize(u, 1.0, w)
    assert sat == 2
    assert codes[0] == 0 and codes[-1] == 7
    y = dequantize(codes, 1.0, w)
    assert y[0] == -0.875 and y[-1] == 0.875  # outer midpoints: +-(1 - 2^-3)


def test_zero_range_decodes_zero():
    w = bit_widths(4, 4)
    codes, sat = quantize(np.array([0.0, 0.0, 1.0, 0.0]), 0.0, w)
    assert sat == 1
    assert np.all(dequantize(codes, 0.0, w) == 0.0)


@pytest.mark.parametrize("bits", RATES)
def test_pack_roundtrip_and_tight_size(bits):
    n = 97
    w = bit_widths(n, bits)
    rng = np.random.default_rng(1)
    codes = (rng.integers(0, 2**16, n) % (2 ** w.astype(np.int64))).astype(np.uint16)
    buf = pack_codes(codes, w)
    assert buf.nbytes == math.ceil(total_bits(n, bits) / 8)
    assert np.array_equal(unpack_codes(buf, w), codes)


@pytest.mark.parametrize("width", [3, 5])
def test_variable_width_stream_is_the_packing_layout(width):
    # the generic bit-stream path writes what pack_bits writes for equal widths
    from ecmpi.compress import uniform

    codes = np.arange(23, dtype=np.uint16) % (1 << width)
    w = np.full(23, width, dtype=np.int64)
    generic = np.packbits(uniform._expand_bits(codes, w), bitorder="little")
    assert np.array_equal(generic, pack_bits(codes, width))


@pytest.mark.parametrize("bits", [4, 2.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_payload_fixed_range(bits, dtype):
    c = ecmpi.compressor("uniform", bits=bits)
    x = np.linspace(-1.5, 1.5, 50).astype(dtype)
    p = c.encode(x, r=2.0)
    assert p.nbytes == HEADER_SIZE + math.ceil(total_bits(50, bits) / 8)
    q = Payload.from_bytes(p.to_bytes())
    y = c.decode(q, r=2.0)
    assert y.dtype == dtype
    w = c.widths(50)
    assert np.array_equal(y, dequantize(quantize(x, 2.0, w)[0], 2.0, w, dtype))
    assert c.last_saturated == 0
    c.encode(x, r=1.0)
    assert c.last_saturated == int(np.sum(np.abs(x) > 1.0))


def test_payload_with_sent_scale():
    c = ecmpi.compressor("uniform:bits=3,scale=true")
    x = np.array([0.5, -2.0, 1.25, 0.0], dtype=np.float32)
    p = c.encode(x)
    assert p.nbytes == HEADER_SIZE + 4 + math.ceil(4 * 3 / 8)
    assert p.scales[0] == 2.0
    y = c.decode(Payload.from_bytes(p.to_bytes()))
    assert np.all(np.abs(y - x) <= 2.0 / 8)
    assert c.last_saturated == 0


def test_spec_roundtrip():
    c = ecmpi.compressor("uniform", bits=2.5, r=3.0)
    assert ecmpi.compressor(c.spec) == c
    assert np.array_equal(c.roundtrip(np.ones(8)), c.roundtrip(np.ones(8), r=3.0))


@pytest.mark.parametrize("bits", [0, -1, 16.5, float("nan")])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match="bits per dimension"):
        UniformQuantizer(bits=bits)


def test_bad_arguments():
    with pytest.raises(TypeError, match="bits per dimension"):
        UniformQuantizer(bits="4")
    c = UniformQuantizer(bits=4)
    with pytest.raises(ValueError, match="needs a range"):
        c.encode(np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        c.encode(np.ones(3), r=-1.0)
    with pytest.raises(ValueError, match="3 entries"):
        c.encode(np.ones(3), r=np.ones(4))
    s = UniformQuantizer(bits=4, scale=True)
    with pytest.raises(ValueError, match="do not pass r"):
        s.encode(np.ones(3), r=1.0)
    with pytest.raises(ValueError, match="does not match"):
        UniformQuantizer(bits=5).decode(c.encode(np.ones(3), r=1.0), r=1.0)
