"""Compressors: exact bytes (fast path == reference), sizes, determinism, statistics, errors.

Statistical tests use fixed seeds and tolerances derived from theory (Hoeffding or
Chebyshev bounds with the failure probability stated at each test).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import ecmpi
from ecmpi.compress import _fused
from ecmpi.compress.buckets import bucket_scales, tree_sum
from ecmpi.compress.payload import HEADER_SIZE, Payload
from ecmpi.compress.quantize import code_width, qsgd_targets_reference

ALL = [
    "qsgd",
    "qsgd:levels=1",
    "qsgd:levels=3,norm=linf,bucket=10",
    "qsgd:stochastic=false,bucket=64",
    "terngrad:bucket=16",
    "sign:bucket=16",
    "topk:k=7",
    "randk:k=7",
    "randk:ratio=0.2,unbiased=true",
    "none",
    "fp16",
    "bf16",
]
DTYPES = [np.float32, np.float64]


def vec(n, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(n).astype(dtype)


def hoeffding(width, count, alpha):
    """Deviation t with P(|mean - E| >= t) <= alpha for `count` draws in an interval of `width`."""
    return width * math.sqrt(math.log(2.0 / alpha) / (2.0 * count))


# ---------------------------------------------------------------- fast path == reference
FAST_SPECS = (
    [f"qsgd:levels={2 ** (w - 2)},bucket=37" for w in range(2, 17)]
    + [f"qsgd:levels={2 ** (w - 1) - 1},bucket=512,norm=linf" for w in range(2, 17)]
    + [
        "qsgd:levels=5,bucket=1",
        "qsgd:levels=2,bucket=100000",
        "qsgd:stochastic=false,bucket=33",
        "qsgd:stochastic=false,levels=1000,norm=linf,bucket=7",
        "terngrad:bucket=3",
        "terngrad",
        "sign:bucket=1",
        "sign:bucket=100",
        "sign",
        "randk:ratio=0.1",
        "randk:k=3,unbiased=true",
    ]
)


@pytest.mark.skipif(not _fused.enabled(), reason="numba fast path disabled")
@pytest.mark.parametrize("spec", FAST_SPECS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_path_bytes_equal_reference(spec, dtype):
    c = ecmpi.compressor(spec)
    for n in (1, 2, 7, 8, 9, 511, 4097, 2048 * 3 + 5):
        for seed in (0, 1, (9, 4)):
            x = vec(n, hash((n, str(seed))) % 1000, dtype) * 3.0
            if n > 100:
                x[40:90] = 0.0  # a zero bucket (scale 0) for small buckets
                x[95] = -0.0
            fast = c.encode(x, seed=seed, rank=2)
            acc_fast = vec(n, 5, np.float64)
            c.decode_add(fast, acc_fast)
            y_fast = c.decode(fast)
            with _fused.disabled():
                ref = c.encode(x, seed=seed, rank=2)
                acc_ref = vec(n, 5, np.float64)
                c.decode_add(ref, acc_ref)
                y_ref = c.decode(ref)
            assert fast.to_bytes() == ref.to_bytes(), (spec, n, seed)
            np.testing.assert_array_equal(y_fast, y_ref)
            np.testing.assert_array_equal(acc_fast, acc_ref)


@pytest.mark.skipif(not _fused.enabled(), reason="numba fast path disabled")
@pytest.mark.parametrize("levels", [1, 3, 7])
def test_fast_path_at_rounding_boundaries(levels):
    # entries that sit exactly on level boundaries and on multiples of 2^-16 of a level
    s, b = levels, 8
    r = 2.0
    grid = np.array([0, 1, 2**-16, 0.5, 1 - 2**-16, 1 - 2**-17, 0.25, 3 * 2**-16], np.float64)
    x = np.concatenate([[r], (grid * r / s)[1:]] * 64).astype(np.float64)
    for norm in ("linf", "l2"):
        c = ecmpi.compressor("qsgd", levels=levels, bucket=b, norm=norm)
        for seed in range(20):
            fast = c.encode(x, seed=seed)
            with _fused.disabled():
                assert fast.to_bytes() == c.encode(x, seed=seed).to_bytes()


# ---------------------------------------------------------------- arithmetic as documented
def test_tree_sum_order():
    t = np.array([1e16, 1.0, -1e16, 1.0, 3.0], dtype=np.float64)
    # B = 8: ((t0+t4)+(t2+0)) + ((t1+0)+(t3+0))
    want = ((t[0] + t[4]) + (t[2] + 0.0)) + ((t[1] + 0.0) + (t[3] + 0.0))
    assert tree_sum(np.abs(t), 5)[0] == ((1e16 + 3.0) + 1e16) + (1.0 + 1.0)
    assert tree_sum(t, 8)[0] == want


def test_scales_definitions():
    x = vec(10, 1, np.float64)
    np.testing.assert_array_equal(
        bucket_scales(x, 4, "linf"),
        np.array([np.abs(x[i : i + 4]).max() for i in (0, 4, 8)], dtype=np.float32),
    )
    l1 = bucket_scales(x, 4, "l1")
    assert l1[2] == np.float32((abs(x[8]) + abs(x[9])) / 2)
    l2 = bucket_scales(x, 4, "l2")
    assert l2[0] == np.float32(math.sqrt((x[0] ** 2 + x[2] ** 2) + (x[1] ** 2 + x[3] ** 2)))


def test_qsgd_decode_formula():
    c = ecmpi.compressor("qsgd:levels=3,bucket=4,norm=linf")
    x = np.array([3.0, -1.0, 2.0, 0.0, -6.0, 4.0], dtype=np.float32)
    y = c.decode(c.encode(x, seed=1))
    # linf scales 3 and 6: every entry is on the grid r*l/3, so quantization is exact
    np.testing.assert_array_equal(y, x)


def test_topk_ties_go_to_smaller_index():
    c = ecmpi.compressor("topk:k=3")
    x = np.array([1.0, -2.0, 2.0, 0.5, -2.0, 2.0], dtype=np.float32)
    p = c.encode(x)
    np.testing.assert_array_equal(p.indices, [1, 2, 4])
    np.testing.assert_array_equal(c.decode(p), [0, -2, 2, 0, -2, 0])


def test_sign_zero_maps_to_plus():
    c = ecmpi.compressor("sign:bucket=4")
    y = c.decode(c.encode(np.array([0.0, -0.0, -2.0, 2.0], dtype=np.float32)))
    np.testing.assert_array_equal(y, [1.0, 1.0, -1.0, 1.0])


# ---------------------------------------------------------------- sizes
def _pad4(v):
    return v + (-v) % 4


@pytest.mark.parametrize("n", [1, 5, 511, 512, 513, 10000])
@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_nbytes(n, dtype):
    x = vec(n, n, dtype)
    isz = np.dtype(dtype).itemsize
    for levels in (1, 2, 4, 100, 32767):
        c = ecmpi.compressor("qsgd", levels=levels, bucket=512)
        w = code_width(levels)
        want = 48 + 4 * math.ceil(n / 512) + math.ceil(n * w / 8)
        assert c.encode(x).nbytes == want == c.wire_nbytes(n, dtype)
    assert ecmpi.compressor("terngrad:bucket=100").encode(x).nbytes == (
        48 + 4 * math.ceil(n / 100) + math.ceil(n * 2 / 8)
    )
    assert ecmpi.compressor("sign:bucket=64").encode(x).nbytes == (
        48 + 4 * math.ceil(n / 64) + math.ceil(n / 8)
    )
    k = min(3, n)
    assert ecmpi.compressor("topk:k=3").encode(x).nbytes == 48 + _pad4(k * isz) + 4 * k
    assert ecmpi.compressor("randk:k=3").encode(x).nbytes == 48 + _pad4(k * isz) + 16
    kr = max(1, math.ceil(0.1 * n))
    assert ecmpi.compressor("randk:ratio=0.1").encode(x).nbytes == 48 + _pad4(kr * isz) + 16
    assert ecmpi.compressor("none").encode(x).nbytes == 48 + _pad4(n * isz)
    assert ecmpi.compressor("bf16").encode(x).nbytes == 48 + _pad4(2 * n)


def test_bits_alias():
    for bits in range(2, 17):
        c = ecmpi.compressor("qsgd", bits=bits)
        assert c.levels == (2**bits - 1) // 2 and c.width == bits
        assert c == ecmpi.compressor(c.spec)


# ---------------------------------------------------------------- determinism
@pytest.mark.parametrize("spec", ALL)
@pytest.mark.parametrize("dtype", DTYPES)
def test_same_seed_same_bytes_and_round_trip(spec, dtype):
    c = ecmpi.compressor(spec)
    x = vec(1000, 3, dtype)
    a, b = c.encode(x, seed=(4, 2), rank=1), c.encode(x.copy(), seed=(4, 2), rank=1)
    assert a.to_bytes() == b.to_bytes()
    y = c.decode(Payload.from_bytes(a.to_bytes()))
    assert y.dtype == dtype and y.shape == x.shape
    assert ecmpi.compressor(c.spec) == c


@pytest.mark.parametrize("spec", ["qsgd", "qsgd:levels=1", "terngrad"])
def test_seed_and_rank_change_the_draws(spec):
    c = ecmpi.compressor(spec)
    x = vec(1000, 3)
    base = c.encode(x, seed=5, rank=0).to_bytes()
    assert c.encode(x, seed=6, rank=0).to_bytes() != base
    assert c.encode(x, seed=(5, 1), rank=0).to_bytes() != base
    assert c.encode(x, seed=5, rank=1).to_bytes() != base


def test_randk_indices_shared_across_ranks_and_change_with_seed():
    c = ecmpi.compressor("randk:k=50")
    x = vec(1000, 3)
    p0, p3 = c.encode(x, seed=(8, 1), rank=0), c.encode(x, seed=(8, 1), rank=3)
    assert p0.to_bytes() == p3.to_bytes()
    nz0 = np.flatnonzero(c.decode(p0))
    nz1 = np.flatnonzero(c.decode(c.encode(x, seed=(8, 2))))
    assert nz0.size == 50 and nz1.size == 50 and not np.array_equal(nz0, nz1)
    # every rank's vector is sampled on the same coordinates
    other = c.decode(c.encode(vec(1000, 4), seed=(8, 1), rank=2))
    np.testing.assert_array_equal(np.flatnonzero(other), nz0)


# ---------------------------------------------------------------- unbiasedness
ALPHA = 1e-6  # failure probability of each statistical assertion (union bound over entries)


@pytest.mark.parametrize(
    "spec", ["qsgd:levels=1,bucket=16", "qsgd:levels=4,bucket=16,norm=linf", "terngrad:bucket=16"]
)
def test_quantizers_unbiased(spec):
    c = ecmpi.compressor(spec)
    n, trials = 48, 3000
    x = vec(n, 11, np.float64)
    s = c.levels
    r = np.repeat(bucket_scales(x, c.bucket, c.norm).astype(np.float64), c.bucket)[:n]
    mean = np.mean([c.roundtrip(x, seed=t) for t in range(trials)], axis=0)
    # each draw lies in an interval of width r/s around x_i (Hoeffding, per entry, union
    # bound over n); the 16-bit rounding adds a bias below 2^-16 r/s
    tol = hoeffding(r / s, trials, ALPHA / n) + 2.0**-16 * r / s
    assert np.all(np.abs(mean - x) <= tol)
    # pooled over entries: the signed error along sign(x) in units of r/s averages
    # n*trials independent terms in an interval of width 1
    pooled = np.mean(np.sign(x) * (mean - x) * s / r)
    assert abs(pooled) <= hoeffding(1.0, n * trials, ALPHA) + 2.0**-16


def test_randk_unbiased():
    c = ecmpi.compressor("randk:k=4,unbiased=true")
    n, trials = 20, 4000
    x = vec(n, 2, np.float64)
    mean = np.mean([c.roundtrip(x, seed=t) for t in range(trials)], axis=0)
    tol = hoeffding(np.abs(x) * n / 4, trials, ALPHA / n)
    assert np.all(np.abs(mean - x) <= tol)
    # each coordinate is kept with probability k/n
    kept = np.mean([c.roundtrip(x, seed=t) != 0 for t in range(trials)], axis=0)
    assert np.all(np.abs(kept - 4 / n) <= hoeffding(1.0, trials, ALPHA / n))


def test_deterministic_rounding_is_nearest():
    c = ecmpi.compressor("qsgd:levels=4,bucket=8,norm=linf,stochastic=false")
    x = vec(64, 9, np.float64)
    r = np.repeat(bucket_scales(x, 8, "linf").astype(np.float64), 8)
    y = c.roundtrip(x)
    assert np.all(np.abs(y - x) <= r / 8 * (1 + 1e-12))  # half a level r/(2s)
    assert not c.unbiased and c.omega(64) == math.inf


# ---------------------------------------------------------------- variance and contraction
def _expected_sq_error(c, x):
    """E||Q(x)-x||^2 under 16-bit stochastic rounding, from the definition."""
    s = c.levels
    scales = bucket_scales(x, c.bucket, c.norm)
    r = np.repeat(scales.astype(np.float64), c.bucket)[: x.size]
    t = qsgd_targets_reference(x, scales, s, c.bucket).astype(np.float64)
    low = np.floor(t / 65536)  # the level below; one more with probability up
    up = (np.ceil(t) - 65536 * low) / 65536  # P(u < ceil(T) - 65536 low), u uniform on 0..65535
    step = r / s
    a = np.abs(x)
    err = up * ((low + 1) * step - a) ** 2 + (1 - up) * (low * step - a) ** 2
    return float(np.sum(err)), float(np.sum(step**2))


@pytest.mark.parametrize(
    "levels,bucket,norm",
    [(1, 256, "l2"), (4, 512, "l2"), (2, 64, "linf"), (16, 512, "l2"), (1, 8, "l2")],
)
@pytest.mark.parametrize("kind", ["gauss", "flat"])
def test_qsgd_variance_bound(levels, bucket, norm, kind):
    c = ecmpi.compressor("qsgd", levels=levels, bucket=bucket, norm=norm)
    n = bucket
    x = vec(n, 7, np.float64) if kind == "gauss" else np.full(n, 0.3) + 1e-3 * vec(n, 7, np.float64)
    expected, spread = _expected_sq_error(c, x)
    # the theory: E||Q(v)-v||^2 <= omega ||v||^2 with omega = min(b/s^2, sqrt(b)/s)
    assert c.omega(n) == min(bucket / levels**2, math.sqrt(bucket) / levels)
    assert expected <= c.omega(n) * float(x @ x)
    trials = 400
    err = np.array([np.sum((c.roundtrip(x, seed=t) - x) ** 2) for t in range(trials)])
    # Chebyshev: each squared entry error lies in [0, step^2], variance <= step^4/4 per
    # entry, so Var(mean) <= sum(step^4)/(4 trials); failure probability 1e-4
    step4 = spread**2 / n  # every step in one bucket is equal
    bound = math.sqrt(step4 / (4 * trials) / 1e-4)
    assert abs(err.mean() - expected) <= bound
    assert err.mean() <= c.omega(n) * float(x @ x) + bound


@pytest.mark.parametrize("k", [1, 5, 50])
def test_topk_contraction(k):
    c = ecmpi.compressor("topk", k=k)
    for seed in range(5):
        x = vec(100, seed, np.float64) * np.exp(vec(100, seed + 50, np.float64))
        e = np.sum((c.roundtrip(x) - x) ** 2)
        assert e <= (1 - c.delta(100)) * (x @ x)
        assert c.delta(100) == k / 100
        kept = np.sort(np.abs(x))[::-1][:k]
        assert math.isclose(e, x @ x - kept @ kept, rel_tol=1e-12)


def test_randk_contraction_in_expectation():
    c = ecmpi.compressor("randk:k=10")
    n, trials = 100, 2000
    x = vec(n, 1, np.float64)
    errs = np.array([np.sum((c.roundtrip(x, seed=t) - x) ** 2) for t in range(trials)])
    assert c.delta(n) == 0.1
    assert np.all(errs <= x @ x)
    # E = (1 - k/n)||x||^2 exactly; each draw lies in [0, ||x||^2]
    assert abs(errs.mean() - 0.9 * (x @ x)) <= hoeffding(x @ x, trials, ALPHA)


@pytest.mark.parametrize("bucket", [1, 4, 16, 512])
def test_sign_contraction(bucket):
    c = ecmpi.compressor("sign", bucket=bucket)
    n = 64
    for seed in range(5):
        x = vec(n, seed, np.float32).astype(np.float64)
        e = np.sum((c.roundtrip(x) - x) ** 2)
        # rounding r = ||v||_1/d to float32 adds d*(r 2^-24)^2 <= 2^-48 ||v||^2 per bucket
        assert e <= (1 - c.delta(n)) * (x @ x) + 2.0**-40 * (x @ x)
        # the identity behind the bound: per bucket ||v||^2 - ||v||_1^2 / d
        v = x.reshape(-1, min(bucket, n))
        exact = np.sum(v * v) - np.sum(np.abs(v).sum(1) ** 2 / v.shape[1])
        assert math.isclose(e, exact, rel_tol=1e-6)  # the scale is rounded to float32
    assert c.delta(n) == 1 / min(bucket, n)


def test_omega_delta_values():
    assert ecmpi.compressor("randk:k=10,unbiased=true").omega(100) == 9.0
    assert ecmpi.compressor("randk:k=10,unbiased=true").delta(100) == 0.1
    assert ecmpi.compressor("randk:k=10").omega(100) == math.inf
    assert ecmpi.compressor("terngrad:bucket=64").omega(1000) == 8.0
    assert ecmpi.compressor("qsgd:levels=2,bucket=512").omega(16) == min(16 / 4, 4 / 2)
    assert ecmpi.compressor("qsgd:levels=64,bucket=16,stochastic=false").delta(1000) == (
        1 - 16 / (4 * 64**2)
    )
    assert ecmpi.compressor("topk:ratio=0.05").delta(100) == 0.05


# ---------------------------------------------------------------- decode_add
@pytest.mark.parametrize("spec", ALL)
@pytest.mark.parametrize("acc_dtype", DTYPES)
def test_decode_add_equals_decode_plus_add(spec, acc_dtype):
    c = ecmpi.compressor(spec)
    x = vec(777, 1, np.float32)
    p = c.encode(x, seed=3)
    acc = vec(777, 2, acc_dtype)
    want = acc + c.decode(p).astype(acc_dtype)
    np.testing.assert_array_equal(c.decode_add(p, acc), want)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "spec,params,err,msg",
    [
        ("nope", {}, ValueError, "unknown compressor"),
        ("qsgd", {"level": 3}, ValueError, "unknown parameter"),
        ("qsgd", {"levels": 0}, ValueError, "levels"),
        ("qsgd", {"levels": 32768}, ValueError, "levels"),
        ("qsgd", {"levels": 2.5}, TypeError, "levels"),
        ("qsgd", {"bits": 1}, ValueError, "bits"),
        ("qsgd", {"bits": 17}, ValueError, "bits"),
        ("qsgd", {"bits": 4, "levels": 7}, ValueError, "not both"),
        ("qsgd", {"bucket": 0}, ValueError, "bucket"),
        ("qsgd", {"norm": "l3"}, ValueError, "norm"),
        ("qsgd", {"stochastic": "yes"}, TypeError, "stochastic"),
        ("terngrad", {"bucket": -4}, ValueError, "bucket"),
        ("sign", {"bucket": 2**31}, ValueError, "bucket"),
        ("topk", {"k": 0}, ValueError, "k must"),
        ("topk", {"ratio": 0.0}, ValueError, "ratio"),
        ("topk", {"ratio": 1.5}, ValueError, "ratio"),
        ("topk", {"k": 2, "ratio": 0.1}, ValueError, "not both"),
        ("randk", {"k": True}, TypeError, "k must"),
        ("randk", {"unbiased": 1}, TypeError, "unbiased"),
    ],
)
def test_bad_parameters(spec, params, err, msg):
    with pytest.raises(err, match=msg):
        ecmpi.compressor(spec, **params)


@pytest.mark.parametrize("spec", ["qsgd", "terngrad", "sign", "topk:k=2", "randk:k=2"])
def test_bad_arrays(spec):
    c = ecmpi.compressor(spec)
    with pytest.raises(ValueError, match="empty"):
        c.encode(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="1-D"):
        c.encode(np.zeros((3, 3), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        c.encode(np.arange(5))
    for bad in (np.nan, np.inf, -np.inf):
        x = vec(10)
        x[4] = bad
        with pytest.raises(ValueError, match="NaN/Inf"):
            c.encode(x)
        # opting out gives a payload of the right size instead of an error
        c2 = ecmpi.compressor(c.spec, check_finite=False)
        assert c2.encode(x).nbytes == c.wire_nbytes(10)


def test_wrong_compressor_decoding():
    x = vec(100)
    p = ecmpi.compressor("qsgd").encode(x)
    with pytest.raises(ValueError, match="encoded by 'qsgd'"):
        ecmpi.compressor("sign").decode(p)
    with pytest.raises(ValueError, match="does not match"):
        ecmpi.compressor("qsgd:levels=2").decode(p)
    with pytest.raises(ValueError, match="does not match"):
        ecmpi.compressor("qsgd:bucket=64").decode(p)
    with pytest.raises(ValueError, match="encoded by 'randk'"):
        ecmpi.compressor("topk:k=1").decode(ecmpi.compressor("randk:k=1").encode(x))
    with pytest.raises(TypeError, match="Payload"):
        ecmpi.compressor("qsgd").decode(p.to_bytes())
    with pytest.raises(ValueError, match="out must"):
        ecmpi.compressor("qsgd").decode(p, out=np.zeros(99, np.float32))


def test_corrupted_topk_indices_rejected():
    c = ecmpi.compressor("topk:k=4")
    p = c.encode(vec(50))
    raw = bytearray(p.to_bytes())
    start = p.header.section_offsets()["indices"][0]
    raw[start : start + 4] = (1000).to_bytes(4, "little")
    raw = Payload(p.header, np.frombuffer(raw, dtype=np.uint8)).seal().to_bytes()  # a valid CRC
    with pytest.raises(ValueError, match="indices"):
        c.decode(Payload.from_bytes(bytes(raw)))


def test_header_size_constant():
    assert HEADER_SIZE == 48


def test_bench_rows():
    from ecmpi.bench.compress import bench_rows, format_table

    rows = bench_rows([1000], ["qsgd:levels=1", "topk:k=5"], repeats=1)
    assert [(r["compressor"].split(":")[0], r["op"]) for r in rows] == [
        ("numpy.copyto", "copy"),
        ("qsgd", "encode"),
        ("qsgd", "decode"),
        ("topk", "encode"),
        ("topk", "decode"),
    ]
    for r in rows:
        assert r["gbs"] > 0 and math.isclose(r["ratio"], r["gbs"] / r["copy_gbs"])
    assert rows[1]["wire_bytes"] == 48 + 4 * 2 + 250
    assert "| 1000 |" in format_table(rows)
    with pytest.raises(ValueError, match="clock"):
        bench_rows([10], ["sign"], clock="sundial")
