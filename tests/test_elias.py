"""qsgd with Elias-coded levels (codec qsgd-elias): bytes, round trip, malformed streams."""

from __future__ import annotations

import numpy as np
import pytest

import ecmpi
from ecmpi.compress import _fused, elias
from ecmpi.compress.payload import HEADER_SIZE, Payload

pytestmark = pytest.mark.skipif(not _fused.available(), reason="needs numba")

SIZES = [1, 2, 7, 255, 256, 257, 511, 1000, 4099]
LEVELS = [1, 2, 4, 7, 127]
BUCKETS = [1, 3, 256, 512, 10000]


def _vector(n: int, seed: int, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng([seed, n]).standard_normal(n).astype(dtype)


def _spec(levels: int, bucket: int, **kw) -> str:
    extra = "".join(f",{k}={v}" for k, v in kw.items())
    return f"qsgd:levels={levels},bucket={bucket}{extra}"


def _both(c, x, seed):
    """(numba payload, NumPy reference payload) of the same encode."""
    fast = c.encode(x, seed=seed, rank=3)
    with _fused.disabled():
        ref = c.encode(x, seed=seed, rank=3)
    return fast, ref


def test_known_stream():
    # s = 1, codes 1 2 1 0: levels 0 +1 0 -1 -> gap 2 (010), +, gap 2 (010), -
    stream, nbits = elias.encode_reference(np.array([1, 2, 1, 0], dtype=np.uint16), 1)
    assert nbits == 8 and stream.tolist() == [0b10100010]
    # s = 5, codes 5 10 5 -> level +5 at index 1: gap 2 (010), + (0), gamma(5) = 00101
    stream, nbits = elias.encode_reference(np.array([5, 10, 5], dtype=np.uint16), 5)
    bits = np.unpackbits(stream, bitorder="little")[:nbits].tolist()
    assert bits == [0, 1, 0, 0, 0, 0, 1, 0, 1]
    assert elias.decode_reference(stream, nbits, 3, 5).tolist() == [5, 10, 5]


@pytest.mark.parametrize("levels", LEVELS)
@pytest.mark.parametrize("bucket", BUCKETS)
def test_numpy_and_numba_write_the_same_bytes(levels, bucket):
    c = ecmpi.compressor(_spec(levels, bucket, coding="elias"))
    for seed, n in enumerate(SIZES):
        for dtype in (np.float32, np.float64):
            x = _vector(n, seed, dtype)
            fast, ref = _both(c, x, seed)
            assert fast.to_bytes() == ref.to_bytes(), (n, dtype)
            assert fast.nbytes == len(fast.to_bytes()) == fast.header.total_nbytes


@pytest.mark.parametrize("kw", [{"norm": "linf"}, {"stochastic": "false"}])
def test_same_bytes_other_norm_and_rounding(kw):
    c = ecmpi.compressor(_spec(3, 100, coding="elias", **kw))
    for seed, n in enumerate(SIZES):
        fast, ref = _both(c, _vector(n, seed), seed)
        assert fast.to_bytes() == ref.to_bytes()


@pytest.mark.parametrize("n", [1, 100, 1000])
def test_all_zero_vector_is_an_empty_stream(n):
    c = ecmpi.compressor(_spec(2, 64, coding="elias"))
    fast, ref = _both(c, np.zeros(n, np.float32), 0)
    assert fast.to_bytes() == ref.to_bytes()
    assert fast.header.ncodes == 0 and fast.nbytes == HEADER_SIZE + 4 * (-(-n // 64))
    assert not c.decode(Payload.from_bytes(fast.to_bytes())).any()


@pytest.mark.parametrize("levels", [1, 2, 4, 31])
@pytest.mark.parametrize("bucket", [1, 5, 256, 512, 5000])
def test_round_trip_equals_fixed_width(levels, bucket):
    el = ecmpi.compressor(_spec(levels, bucket, coding="elias"))
    fx = ecmpi.compressor(_spec(levels, bucket))
    for seed, n in enumerate([1, 3, 255, 513, 2049]):
        for dtype in (np.float32, np.float64):
            x = _vector(n, seed, dtype)
            pe = Payload.from_bytes(el.encode(x, seed=seed, rank=1).to_bytes(), n=n)
            pf = fx.encode(x, seed=seed, rank=1)
            want = fx.decode(pf)
            assert np.array_equal(pe.scales, pf.scales)
            for fused in (True, False):
                prev = _fused.set_enabled(fused)
                try:
                    got = el.decode(pe)
                    acc = np.linspace(-1, 1, n).astype(np.float64)
                    acc_f = acc.copy()
                    el.decode_add(pe, acc)
                    fx.decode_add(pf, acc_f)
                finally:
                    _fused.set_enabled(prev)
                assert got.dtype == want.dtype and np.array_equal(got, want)
                assert np.array_equal(acc, acc_f)


def test_stream_is_never_longer_than_the_bound():
    # dense worst cases: every entry nonzero (gap 1), every other (gap 2), top levels
    for s in (1, 2, 5, 16):
        for step in (1, 2, 3):
            n = 999
            codes = np.full(n, s, dtype=np.uint16)
            codes[::step] = np.where(np.arange(0, n, step) % 2, 0, 2 * s)
            _, nbits = elias.encode_reference(codes, s)
            assert nbits <= elias.max_stream_bits(n, s)
    c = ecmpi.compressor(_spec(4, 16, coding="elias"))
    x = _vector(3000, 1)
    assert c.encode(x).nbytes <= c.wire_nbytes(3000)


def test_spec_coding_and_codec():
    c = ecmpi.compressor("qsgd:levels=1,bucket=512,coding=elias")
    assert ecmpi.compressor(c.spec) == c and "coding=elias" in c.spec
    assert "coding" not in ecmpi.compressor("qsgd:levels=1").spec
    assert c.codec == 9 and not c.fixed_size and ecmpi.compressor("qsgd").fixed_size
    assert c.omega(1000) == ecmpi.compressor("qsgd:levels=1,bucket=512").omega(1000)
    with pytest.raises(ValueError, match="unknown coding 'huffman'"):
        ecmpi.compressor("qsgd:coding=huffman")
    fixed = ecmpi.compressor("qsgd:levels=1,bucket=512")
    x = _vector(600, 2)
    with pytest.raises(ValueError, match="encoded by 'qsgd'"):
        c.decode(fixed.encode(x))
    with pytest.raises(ValueError, match="encoded by 'qsgd-elias'"):
        fixed.decode(c.encode(x))
    with pytest.raises(ValueError, match="param=1"):
        ecmpi.compressor("qsgd:levels=2,bucket=512,coding=elias").decode(c.encode(x))


def test_bits_per_entry_on_gaussian_vectors():
    # s = 1, l2 bucket b: P(level != 0) = E|x|/||v|| ~ sqrt(2/(pi b)); each nonzero costs
    # gamma(gap) + 1 bits with gaps ~ 1/p, so well under the 2 bits of fixed width
    n = 1 << 16
    x = _vector(n, 5)
    for b in (256, 512):
        p = ecmpi.compressor(_spec(1, b, coding="elias")).encode(x, seed=1)
        per = 8 * p.nbytes / n
        frac = np.sqrt(2 / (np.pi * b))
        expect = frac * (2 * np.log2(1 / frac) + 2) + 32 / b
        assert 0.7 * expect < per < 1.3 * expect, (b, per, expect)


# -- malformed streams ---------------------------------------------------------------


def _payloads():
    out = []
    for levels, bucket, n in [(1, 512, 3000), (4, 256, 1000), (2, 7, 50), (127, 64, 300)]:
        c = ecmpi.compressor(_spec(levels, bucket, coding="elias"))
        out.append((c, c.encode(_vector(n, levels), seed=levels).to_bytes()))
    return out


def _rejects(data: bytes, n=None):
    for fused in (True, False):
        prev = _fused.set_enabled(fused)
        try:
            with pytest.raises(ValueError):
                Payload.from_bytes(data, n=n)
        finally:
            _fused.set_enabled(prev)


def test_truncations_and_lengths_raise():
    for _, raw in _payloads():
        for cut in sorted({0, 1, 47, 48, 49, len(raw) // 2, len(raw) - 1}):
            _rejects(raw[:cut])
        _rejects(raw + b"\0")
        _rejects(raw + raw)


def test_bit_flips_and_random_bytes_raise():
    rng = np.random.default_rng(0)
    for _, raw in _payloads():
        for _ in range(200):
            bad = bytearray(raw)
            k = int(rng.integers(0, 8 * len(raw)))
            bad[k // 8] ^= 1 << (k % 8)
            _rejects(bytes(bad))
        for size in (8, 48, 100, len(raw)):
            junk = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
            _rejects(bytes(junk))
            junk[:4] = raw[:4]  # a plausible start: magic, version, codec
            _rejects(bytes(junk))


def _parse(data: bytes):
    """(accepted?, decoded) by the numba path; the reference must agree."""
    got = []
    for fused in (True, False):
        prev = _fused.set_enabled(fused)
        try:
            try:
                p = Payload.from_bytes(data)
                got.append(("ok", p))
            except ValueError as exc:
                got.append(("error", str(exc)))
        finally:
            _fused.set_enabled(prev)
    assert got[0][0] == got[1][0], got
    return got[0]


def test_resealed_corrupt_streams_are_refused_or_decode_consistently():
    # a stream changed and re-checksummed (what a buggy sender would send): the body
    # check refuses it, or it parses into n entries that both decoders agree on
    rng = np.random.default_rng(1)
    refused = 0
    for c, raw in _payloads():
        p = Payload.from_bytes(raw)
        start = p.header.section_offsets()["codes"][0]
        for trial in range(150):
            q = Payload(p.header, np.frombuffer(raw, np.uint8).copy())
            body = q.buf[start:]
            if trial % 3 == 0 and body.shape[0]:
                body[int(rng.integers(0, body.shape[0]))] ^= np.uint8(1 << int(rng.integers(8)))
            elif trial % 3 == 1:
                body[:] = rng.integers(0, 256, body.shape[0], dtype=np.uint8)
            else:  # padding bits after the stream
                if p.header.ncodes % 8 == 0:
                    continue
                body[-1] |= np.uint8(0x80)
            q.seal()
            status, got = _parse(q.to_bytes())
            if status == "error":
                refused += 1
                assert "qsgd-elias payload" in got
                continue
            with _fused.disabled():
                ref = c.decode(got)
            assert np.array_equal(c.decode(got), ref)
    assert refused > 150


def test_header_lies_are_refused():
    c = ecmpi.compressor(_spec(2, 64, coding="elias"))
    p = c.encode(_vector(500, 3))
    for change in (
        {"bits": 2},
        {"param": 0},
        {"nscales": p.header.nscales + 1},
        {"ncodes": elias.max_stream_bits(500, 2) + 8},
    ):
        h = p.with_header(**change)
        q = Payload.allocate(h)
        m = min(q.nbytes, p.nbytes) - HEADER_SIZE
        q.buf[HEADER_SIZE : HEADER_SIZE + m] = p.buf[HEADER_SIZE : HEADER_SIZE + m]
        q.seal()
        _rejects(q.to_bytes())


def test_entropy_estimate_of_an_elias_payload_is_its_size():
    from ecmpi.compress.entropy import coded_bits

    p = ecmpi.compressor(_spec(2, 256, coding="elias")).encode(_vector(3000, 4))
    assert coded_bits(p, "entropy") == coded_bits(p, "huffman") == 8 * p.nbytes
