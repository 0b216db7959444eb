"""Wire format: header round trip, validation, property tests and fuzzing of from_bytes."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ecmpi
from ecmpi.compress.payload import (
    BODY_CHECKS,
    CODECS,
    HEADER_SIZE,
    VALUE_FORMATS,
    Header,
    Payload,
)

SPECS = [
    "none",
    "fp16",
    "bf16",
    "qsgd",
    "qsgd:levels=3,bucket=7",
    "terngrad",
    "sign",
    "topk:k=5",
    "randk:ratio=0.3,unbiased=true",
]


def _encode(spec, n, dtype=np.float32, seed=0):
    x = np.random.default_rng(n).standard_normal(n).astype(dtype)
    return ecmpi.compressor(spec).encode(x, seed=seed)


@pytest.mark.parametrize("spec", SPECS)
def test_bytes_round_trip(spec):
    p = _encode(spec, 37)
    q = Payload.from_bytes(p.to_bytes())
    assert q.header == p.header and q == p and q.nbytes == len(p.to_bytes())
    np.testing.assert_array_equal(
        ecmpi.compressor(spec).decode(q), ecmpi.compressor(spec).decode(p)
    )


headers = st.builds(
    Header,
    codec=st.sampled_from(sorted(CODECS.values())),
    dtype=st.sampled_from([0, 1]),
    bits=st.integers(1, 16),
    value_fmt=st.sampled_from(sorted(VALUE_FORMATS)),
    flags=st.integers(0, 255),
    n=st.integers(0, 2**40),
    ncodes=st.integers(0, 4000),
    bucket=st.integers(0, 2**32 - 1),
    param=st.integers(0, 2**32 - 1),
    nscales=st.integers(0, 300),
    nidx=st.integers(0, 300),
    nvals=st.integers(0, 300),
)


@given(headers)
@settings(max_examples=200, deadline=None)
def test_header_pack_unpack(h):
    if h.nvals and not h.value_fmt:
        with pytest.raises(ValueError):
            h.pack()
        return
    raw = h.pack()
    assert len(raw) == HEADER_SIZE
    assert Header.unpack(raw) == h
    # the sections tile the buffer exactly
    offs = h.section_offsets()
    assert offs["values"][0] == HEADER_SIZE and offs["end"][0] == h.total_nbytes
    assert (offs["values"][1] - offs["values"][0]) % 4 == 0


@given(headers, st.integers(0, 2**32 - 1))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_payload_from_allocate(h, salt):
    if (h.nvals and not h.value_fmt) or h.codec in BODY_CHECKS:
        return  # a codec whose body is parsed is fuzzed in tests/test_elias.py
    p = Payload.allocate(h)
    body = np.random.default_rng(salt).integers(0, 256, p.nbytes - HEADER_SIZE, dtype=np.uint8)
    p.buf[HEADER_SIZE:] = body
    p.seal()
    q = Payload.from_bytes(p.to_bytes(), n=h.n)  # any n, as the receiver states it
    assert q.header == h and q.to_bytes() == p.to_bytes()
    with pytest.raises(ValueError, match=r"truncated|too short"):
        Payload.from_bytes(p.to_bytes()[:-1], n=h.n)
    with pytest.raises(ValueError, match="too long"):
        Payload.from_bytes(p.to_bytes() + b"\0", n=h.n)


def _only_clean_errors(data):
    try:
        p = Payload.from_bytes(data)
    except (ValueError, TypeError):
        return
    # accepted: must decode with the compressor it names, or be refused cleanly
    try:
        name = p.header.codec_name
        c = ecmpi.compressor(name) if name != "uniform" else None
        if c is not None:
            c.decode(p)
    except (ValueError, TypeError):
        pass


@given(st.binary(max_size=400))
@settings(max_examples=200, deadline=None)
def test_fuzz_random_bytes(data):
    _only_clean_errors(data)


@pytest.mark.parametrize("spec", SPECS)
def test_fuzz_truncated_and_flipped(spec):
    raw = _encode(spec, 41).to_bytes()
    for cut in range(len(raw)):
        with pytest.raises(ValueError):
            Payload.from_bytes(raw[:cut])
    rng = np.random.default_rng(0)
    for _ in range(200):
        buf = bytearray(raw)
        pos = int(rng.integers(0, len(buf)))
        buf[pos] ^= 1 << int(rng.integers(0, 8))
        if pos < HEADER_SIZE:  # header bits are covered by the checksum
            with pytest.raises(ValueError):
                Payload.from_bytes(bytes(buf))
        else:
            _only_clean_errors(bytes(buf))


def test_header_with_fixed_checksum_still_validated():
    raw = bytearray(_encode("qsgd", 10).to_bytes()[:HEADER_SIZE])
    raw[5] = 40  # code width out of range, checksum recomputed
    raw[44:48] = zlib.crc32(bytes(raw[:44])).to_bytes(4, "little")
    with pytest.raises(ValueError, match="code width"):
        Header.unpack(bytes(raw))


@pytest.mark.parametrize(
    "mutate,msg",
    [
        (lambda b: b.__setitem__(slice(0, 2), b"XX"), "magic"),
        (lambda b: b.__setitem__(2, 9), "version"),
        (lambda b: b.__setitem__(20, b[20] ^ 1), "checksum"),
    ],
)
def test_header_errors_named(mutate, msg):
    raw = bytearray(_encode("sign", 10).to_bytes())
    mutate(raw)
    with pytest.raises(ValueError, match=msg):
        Payload.from_bytes(bytes(raw))


def test_from_bytes_type_errors():
    with pytest.raises(TypeError):
        Payload.from_bytes(np.zeros(60, dtype=np.float32))
    with pytest.raises(TypeError):
        Payload.from_bytes("not bytes")


def _resealed(raw: bytearray) -> bytes:
    """``raw`` with a valid checksum again: a crafted message, not a damaged one."""
    h = Header.unpack(bytes(raw[:HEADER_SIZE]))
    return Payload(h, np.frombuffer(bytes(raw), dtype=np.uint8).copy()).seal().to_bytes()


@pytest.mark.parametrize("spec", SPECS)
def test_every_bit_flip_is_caught(spec):
    """Version 2 checksums the body too: no single flipped bit decodes silently."""
    raw = _encode(spec, 41).to_bytes()
    for pos in range(len(raw)):
        for bit in range(8):
            buf = bytearray(raw)
            buf[pos] ^= 1 << bit
            with pytest.raises(ValueError):
                Payload.from_bytes(bytes(buf))


@pytest.mark.parametrize("spec", ["topk:k=5", "randk:k=5"])
def test_header_lying_about_n_refused_before_allocation(spec):
    raw = bytearray(_encode(spec, 41).to_bytes())
    raw[8:16] = (2**32 - 1).to_bytes(8, "little")
    lie = _resealed(raw)
    with pytest.raises(ValueError, match="expects 41"):
        Payload.from_bytes(lie, n=41)
    with pytest.raises(ValueError, match="claims 4294967295 entries from"):
        Payload.from_bytes(lie)  # no stated length: bounded by the message size
    assert Payload.from_bytes(_encode(spec, 41).to_bytes(), n=41).n == 41


def test_fuzz_header_lies_with_valid_checksum():
    """Crafted headers (each field set to an extreme, checksum recomputed) raise ValueError."""
    rng = np.random.default_rng(22)
    for spec in SPECS:
        good = _encode(spec, 41).to_bytes()
        for _ in range(60):
            raw = bytearray(good)
            # (the dtype byte is left alone: float32 -> float64 is another valid message)
            off = int(rng.choice([3, 5, 6, 8, 16, 24, 28, 32, 36, 40]))
            width = 8 if off in (8, 16) else (4 if off >= 24 else 1)
            value = int(rng.choice([0, 1, 2**31, 2 ** (8 * width) - 1, int(rng.integers(0, 256))]))
            raw[off : off + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")
            if bytes(raw) == good:
                continue
            try:
                crafted = _resealed(raw)
            except ValueError:
                continue  # the header itself is out of range
            with pytest.raises(ValueError):
                p = Payload.from_bytes(crafted, n=41)
                ecmpi.compressor(spec).decode(p)


def test_version_1_refused():
    raw = bytearray(_encode("qsgd", 10).to_bytes())
    raw[2] = 1
    with pytest.raises(ValueError, match="version 1, this ecmpi reads 2"):
        Payload.from_bytes(bytes(raw))


@pytest.mark.parametrize(
    "spec,big",
    [("qsgd:levels=4", 1e39), ("terngrad", 1e39), ("bf16", 1e39), ("fp16", 1e5)],
)
def test_values_beyond_the_codec_raise(spec, big):
    """Finite input the codec cannot represent raises instead of decoding to NaN or inf."""
    x = np.ones(100)
    x[5] = big
    with pytest.raises(ValueError, match=r"range|too large"):
        ecmpi.compressor(spec).encode(x)
