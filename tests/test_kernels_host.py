"""Host emulation of the CUDA kernels: kernels/harness.cu runs the kernels'
``__host__ __device__`` functions on the CPU, replaying each kernel's phases,
and the results must equal ecmpi.rng and the NumPy reference byte for byte.

The harness is built twice where possible: by g++ (CUDA qualifiers defined
away, ``-ffp-contract=off``) and by nvcc as the host code of a ``.cu`` file
(``--fmad=false``), i.e. the same front end the device code goes through.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ecmpi import compressor, rng
from ecmpi.compress import _fused
from ecmpi.compress.feedback import ErrorFeedback
from ecmpi.compress.gpu import fused_segment, radix_select
from ecmpi.compress.sparsify import randk_indices, smallest_k, topk_indices

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
OPS = {"l2": 0, "linf": 1, "l1": 2}


def _build(tmp: Path, which: str) -> Path:
    exe = tmp / f"harness_{which}"
    src = str(KERNELS / "harness.cu")
    if which == "gcc":
        if shutil.which("g++") is None:
            pytest.skip("g++ not found")
        cmd = ["g++", "-x", "c++", "-O2", "-ffp-contract=off", "-std=c++17", "-I", str(KERNELS)]
    else:
        if shutil.which("nvcc") is None:
            pytest.skip("nvcc not found")
        cmd = ["nvcc", "-x", "cu", "-O2", "--fmad=false", "-std=c++17", "-I", str(KERNELS)]
    proc = subprocess.run([*cmd, src, "-o", str(exe)], capture_output=True, text=True)
    assert proc.returncode == 0, f"building the harness with {which} failed:\n{proc.stderr}"
    return exe


@pytest.fixture(scope="module", params=["gcc", "nvcc"])
def harness(request, tmp_path_factory):
    exe = _build(tmp_path_factory.mktemp("harness"), request.param)

    def run(*args, stdin: bytes = b"") -> bytes:
        proc = subprocess.run(
            [str(exe), *map(str, args)], input=stdin, capture_output=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr.decode()
        return proc.stdout

    return run


@pytest.fixture
def reference():
    """Force the NumPy reference (the definition) on the CPU path."""
    prev = _fused.set_enabled(False)
    yield
    _fused.set_enabled(prev)


# -- Philox -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,stream,start",
    [
        (0, 0, 0),
        (7, 0, 3),
        (0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 1),
        *[(*rng.derive((11, 3), 2), (1 << 34) + 5)],
    ],
)
def test_philox_matches_rng(harness, key, stream, start):
    count = 1000
    out = harness("philox", key, stream, start, count)
    u32 = np.frombuffer(out[: 4 * count], dtype="<u4")
    high = np.frombuffer(out[4 * count : 5 * count], dtype=np.uint8)
    low = np.frombuffer(out[5 * count :], dtype=np.uint8)
    np.testing.assert_array_equal(u32, rng.random_u32(key, stream, start, count))
    np.testing.assert_array_equal(high, rng.random_u8(key, stream, start, count))
    np.testing.assert_array_equal(low, rng.random_u8(key, stream, start, count, base=rng.LOW_BYTES))


def test_philox_known_answer(harness):
    # Random123 known-answer vector: counter 0, key 0.
    out = np.frombuffer(harness("philox", 0, 0, 0, 4)[:16], dtype="<u4")
    assert [hex(v) for v in out] == ["0x6627e8d5", "0xe169c58d", "0xbc57ac4c", "0x9b00dbd8"]


# -- quantizers -------------------------------------------------------------------------


def _data(n: int, dtype, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    x = g.standard_normal(n) * np.exp(g.uniform(-3, 3, n))
    x[g.integers(0, n, max(1, n // 50))] = 0.0  # exact zeros, a zero bucket below
    if n > 300:
        x[100:300] = 0.0
        x[5] = -0.0
    return x.astype(dtype)


def _encode_via_harness(harness, c, x, path, wsel, seed, rank, h=None, alpha=1.0, beta=1.0):
    name = c.name
    hdr = c.header(x.shape[0], x.dtype)
    if name == "sign":
        s, op, stoch = 1, OPS["l1"], 0
    elif name == "terngrad":
        s, op, stoch = 1, OPS["linf"], 1
    else:
        s, op, stoch = c.levels, OPS[c.norm], int(c.stochastic)
    key, stream = rng.derive(seed, rank)
    ef = 0 if h is None else (1 if alpha == 1.0 and beta == 1.0 else 2)
    tn = "f32" if x.dtype == np.float32 else "f64"
    stdin = x.tobytes() + (b"" if h is None else h.tobytes())
    out = harness(
        "encode",
        tn,
        "sign" if name == "sign" else "qsgd",
        path,
        wsel,
        x.shape[0],
        hdr.bucket,
        s,
        op,
        stoch,
        hdr.bits,
        key,
        stream,
        ef,
        repr(alpha),
        repr(beta),
        stdin=stdin,
    )
    nb, ncb, n, isz = hdr.nscales, (x.shape[0] * hdr.bits + 7) // 8, x.shape[0], x.itemsize
    scales = out[: 4 * nb]
    codes = out[4 * nb : 4 * nb + ncb]
    q = np.frombuffer(out[4 * nb + ncb : 4 * nb + ncb + n * isz], dtype=x.dtype)
    h_out = np.frombuffer(out[4 * nb + ncb + n * isz :], dtype=x.dtype) if ef else None
    assert len(out) == 4 * nb + ncb + n * isz * (2 if ef else 1)
    return scales, codes, q, h_out


def _paths(b: int):
    return ["fused", "groups"] if fused_segment(b) else ["groups"]


QUANT_CASES = [
    # spec, n, dtype
    ("qsgd:levels=1,bucket=512", 5000, np.float32),
    ("qsgd:levels=2,bucket=100,norm=linf", 1234, np.float64),
    ("qsgd:levels=4,bucket=512,stochastic=false", 4099, np.float32),
    ("qsgd:levels=7,bucket=7", 333, np.float32),
    ("qsgd:levels=127,bucket=4096,norm=linf", 9000, np.float64),
    ("qsgd:levels=32767,bucket=64", 1000, np.float32),
    ("qsgd:levels=3,bucket=5000", 12001, np.float32),  # two-pass only, strided partials
    ("qsgd:levels=4,bucket=300", 31, np.float64),  # a single partial group and bucket
    ("terngrad:bucket=256", 3000, np.float32),
    ("sign:bucket=512", 5000, np.float32),
    ("sign:bucket=1000", 2500, np.float64),
    ("sign:bucket=100000", 70000, np.float32),
    # tiny scales: below 2^-64 (lifted by 2^64), subnormal float32, float64 beyond float32
    ("qsgd:levels=3,bucket=64", 2000, np.float32, -100),
    ("qsgd:levels=1,bucket=64", 2000, np.float32, -140),
    ("qsgd:levels=300,bucket=128", 2000, np.float64, -70),
    ("qsgd:levels=2,bucket=64", 500, np.float64, -1000),
]


@pytest.mark.parametrize("case", QUANT_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2].__name__}")
def test_encode_decode_match_reference(harness, reference, case):
    spec, n, dtype, exponent = (*case, 0)[:4]
    c = compressor(spec)
    x = (_data(n, dtype, n) * 2.0**exponent).astype(dtype)
    ref = c.encode(x, seed=(5, 9), rank=3)
    want_q = c.decode(ref)
    w = ref.header.bits
    for path in _paths(c.bucket):
        for wsel in sorted({w, 0}):
            scales, codes, q, _ = _encode_via_harness(harness, c, x, path, wsel, (5, 9), 3)
            assert scales == ref.scales.tobytes(), (path, wsel)
            assert codes == ref.codes.tobytes(), (path, wsel)
            assert q.tobytes() == want_q.tobytes(), (path, wsel)
    # decode and decode-add from the CPU payload
    codec = "sign" if c.name == "sign" else "qsgd"
    s = getattr(c, "levels", 1)
    tn = "f32" if dtype == np.float32 else "f64"
    body = ref.scales.tobytes() + ref.codes.tobytes()
    y = harness("decode", tn, codec, w, n, c.bucket, s, w, "none", stdin=body)
    assert y == want_q.tobytes()
    for acc_dt, an in ((np.float32, "f32"), (np.float64, "f64")):
        acc = _data(n, acc_dt, 1)
        got = harness("decode", tn, codec, w, n, c.bucket, s, w, an, stdin=body + acc.tobytes())
        want = acc + want_q.astype(acc_dt)
        assert got == want.tobytes()


@pytest.mark.parametrize(
    "spec,dtype,alpha,beta",
    [
        ("qsgd:levels=1,bucket=512", np.float32, 1.0, 1.0),
        ("qsgd:levels=5,bucket=96,norm=linf", np.float64, 1.0, 1.0),
        ("qsgd:levels=2,bucket=512", np.float32, 0.7, 0.9),
        ("terngrad:bucket=128", np.float64, 1.0, 0.5),
        ("sign:bucket=256", np.float32, 1.0, 1.0),
        ("qsgd:levels=4,bucket=6000", np.float32, 1.0, 1.0),
    ],
)
def test_fused_error_feedback_matches_errorfeedback(harness, reference, spec, dtype, alpha, beta):
    c = compressor(spec)
    n = 7777
    g = _data(n, dtype, 3)
    h = (_data(n, dtype, 4) * dtype(0.1)).astype(dtype)
    ef = ErrorFeedback(c, alpha=alpha, beta=beta)
    state = ef.init(g)._replace(residual=h.copy())
    payload, q, new = ef.update(g, state, seed=(2, 1), rank=1)
    for path in _paths(c.bucket):
        scales, codes, q_h, h_out = _encode_via_harness(
            harness, c, g, path, payload.header.bits, (2, 1), 1, h=h, alpha=alpha, beta=beta
        )
        assert scales == payload.scales.tobytes()
        assert codes == payload.codes.tobytes()
        assert q_h.tobytes() == q.tobytes()
        assert h_out.tobytes() == new.residual.tobytes()


def test_codes_section_not_overrun(harness):
    # n*w not a multiple of 32 bits: the harness checks a canary past the section.
    c = compressor("qsgd:levels=2,bucket=64")
    x = _data(77, np.float32, 0)
    _encode_via_harness(harness, c, x, "fused", 3, 0, 0)


# -- sparsifiers ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_topk_keys_and_select_match_reference(harness, dtype):
    n = 20000
    x = _data(n, dtype, 8)
    x[::7] = x[3]  # many ties in magnitude
    x[11] = -x[3]
    tn, kt = ("f32", "<u4") if dtype == np.float32 else ("f64", "<u8")
    keys = np.frombuffer(harness("topkkey", tn, n, stdin=x.tobytes()), dtype=kt)
    for k in (1, 2, 17, 2857, 2858, 2859, 5000, n):
        np.testing.assert_array_equal(radix_select(keys, k), topk_indices(x, k))


def test_topk_key_orders_nan_like_inf(harness):
    x = np.array([1.0, np.nan, np.inf, -np.inf, 0.0, -2.0], dtype=np.float32)
    keys = np.frombuffer(harness("topkkey", "f32", x.shape[0], stdin=x.tobytes()), dtype="<u4")
    for k in range(1, 7):
        np.testing.assert_array_equal(radix_select(keys, k), topk_indices(x, k))


def test_randk_keys_and_select_match_reference(harness):
    n = 50001
    key, stream = rng.derive((4, 2))
    keys = np.frombuffer(harness("randkkey", n, key, stream), dtype="<u4")
    np.testing.assert_array_equal(keys, rng.random_u32(key, stream, 0, n))
    for k in (1, 5, 500, n - 1, n):
        np.testing.assert_array_equal(radix_select(keys, k), randk_indices(key, stream, n, k))


@pytest.mark.parametrize("kind,shift", [("u32", 24), ("u32", 0), ("u64", 56), ("u64", 8)])
def test_digits(harness, kind, shift):
    g = np.random.default_rng(1)
    dt = np.uint32 if kind == "u32" else np.uint64
    keys = g.integers(0, np.iinfo(dt).max, 1000, dtype=dt, endpoint=True)
    got = np.frombuffer(harness("digits", kind, 1000, shift, stdin=keys.tobytes()), np.uint8)
    np.testing.assert_array_equal(got, ((keys >> dt(shift)) & dt(255)).astype(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_randk_unbiased_value(harness, reference, dtype):
    n = 1000
    c = compressor("randk", k=37, unbiased=True)
    x = _data(n, dtype, 2)
    p = c.encode(x, seed=3)
    y = c.decode(p)
    tn = "f32" if dtype == np.float32 else "f64"
    got = np.frombuffer(harness("randkvalue", tn, n, 37, 1, stdin=p.values.tobytes()), dtype)
    key, stream = rng.derive(3)
    np.testing.assert_array_equal(got, y[randk_indices(key, stream, n, 37)])


# -- pure-Python pieces of the GPU driver ------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_radix_select_against_smallest_k(dtype):
    g = np.random.default_rng(0)
    for n, hi in ((1, 3), (100, 3), (5000, 50), (5000, int(np.iinfo(dtype).max))):
        keys = g.integers(0, hi, n, dtype=dtype, endpoint=True)
        for k in sorted({1, n // 3 + 1, n}):
            np.testing.assert_array_equal(radix_select(keys, k), smallest_k(keys, k))


def test_radix_select_rejects_bad_input():
    with pytest.raises(ValueError, match="k=0"):
        radix_select(np.arange(5, dtype=np.uint32), 0)
    with pytest.raises(TypeError, match="uint32 or uint64"):
        radix_select(np.arange(5, dtype=np.int32), 2)


def test_fused_segment_geometry():
    for b in range(1, 5000):
        seg = fused_segment(b)
        if seg:
            assert seg % b == 0 and seg % 32 == 0 and seg <= 4096
            # no larger bucket multiple fits
            assert all((m * b) % 32 for m in range(seg // b + 1, 4096 // b + 1))
        else:
            assert b > 4096 or all((m * b) % 32 for m in range(1, 4096 // b + 1))
    assert fused_segment(512) == 4096 and fused_segment(100) == 4000
