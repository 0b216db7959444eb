"""The fused CPU kernels against the NumPy reference on adversarial inputs.

The quantizer's fast path decides most levels from the high random byte alone
and draws the low byte only for the entries it flags (``_quantize`` and
``_finish_ties`` in ``ecmpi/compress/_fused_numba.py``); it computes in float32
for ``s <= 255`` and in int64 otherwise, and lifts tiny scales by ``2^64``.
These inputs sit on, or one ulp beside, level boundaries and span tiny and huge
scales, so a wrong flag, a lost low byte or an inexact float32 step shows up
as differing bytes.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import ecmpi
from ecmpi.compress import _fused

pytestmark = pytest.mark.skipif(not _fused.enabled(), reason="numba fast path disabled")

LEVELS = [1, 2, 3, 4, 8, 9, 127, 1000]


def _boundary_vector(levels: int, dtype, bucket: int = 64) -> np.ndarray:
    """Buckets led by their scale r (linf) and filled with r * (m/65536 + l) / s and neighbours."""
    g = np.random.default_rng(levels)
    r = 1.5
    parts = []
    for _ in range(24):
        lev = g.integers(0, levels + 1, bucket - 1)
        m = g.integers(0, 65536, bucket - 1)
        m[: bucket // 4] = 0  # exact levels
        m[bucket // 4 : bucket // 2] = 32768  # exact midpoints (round to nearest)
        v = (r * (lev + m / 65536.0)) / levels
        v = np.minimum(v, r).astype(dtype)
        step = g.integers(-1, 2, v.shape[0])  # one ulp below, on, or above
        v = np.where(step < 0, np.nextafter(v, dtype(0)), v)
        v = np.where(step > 0, np.nextafter(v, dtype(np.inf)), v)
        v = np.minimum(v, dtype(r))
        sign = np.where(g.random(v.shape[0]) < 0.5, -1, 1).astype(dtype)
        parts.append(np.concatenate([[dtype(r)], v * sign]))
    return np.concatenate(parts).astype(dtype)


def _same_bytes(spec: str, x: np.ndarray, seeds=range(6)) -> None:
    c = ecmpi.compressor(spec)
    for seed in seeds:
        fast = c.encode(x, seed=seed, rank=1)
        with _fused.disabled():
            ref = c.encode(x, seed=seed, rank=1)
        assert fast.to_bytes() == ref.to_bytes(), (spec, x.dtype, seed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("levels", LEVELS)
@pytest.mark.parametrize("stochastic", [True, False])
def test_level_boundaries(levels, dtype, stochastic):
    x = _boundary_vector(levels, dtype)
    for norm in ("linf", "l2"):
        _same_bytes(f"qsgd:levels={levels},bucket=64,norm={norm},stochastic={stochastic}", x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("levels", [1, 4, 127])
def test_tiny_and_huge_scales(levels, dtype):
    g = np.random.default_rng(7)
    base = g.standard_normal(4096)
    exps = [-140, -126, -100, -90, -60, 0, 60, 100, 126]
    if dtype == np.float64:
        exps += [-1000, -700, -300, 300, 700]
    for e in exps:
        x = (base * 2.0**e).astype(dtype)
        for norm in ("l2", "linf"):  # check_finite=false: 2**126 overflows the l2 scales
            spec = f"qsgd:levels={levels},bucket=256,norm={norm},check_finite=false"
            _same_bytes(spec, x, seeds=range(2))
    # lifted and plain buckets in one tile (each quantized by a different kernel)
    x = (base * np.repeat(2.0 ** np.array([-90.0, 0.0, -70.0, 3.0]), 1024)).astype(dtype)
    _same_bytes(f"qsgd:levels={levels},bucket=256", x, seeds=range(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mixed_magnitudes_in_one_bucket(dtype):
    # entries far below their bucket's scale: T' near zero or subnormal
    g = np.random.default_rng(3)
    tiny = -145 if dtype == np.float32 else -1070
    e = g.integers(tiny, 20, 8192).astype(np.float64)
    x = (g.standard_normal(8192) * 2.0**e).astype(dtype)
    x[::97] = 0.0
    x[1::97] = -0.0
    for levels in (1, 3, 8, 127):
        for norm in ("l2", "linf"):
            _same_bytes(f"qsgd:levels={levels},bucket=512,norm={norm}", x, seeds=range(3))


def test_flagged_entries_are_exactly_those_the_low_byte_decides():
    # one bucket of 2^16 entries: every flag must mark l(256 h) != l(256 h + 255), every
    # unflagged entry must have l(256 h) == l(256 h + 255), and the flagged share is
    # Binomial(n, 1/256) for uniform high bytes (bounds: 6 standard deviations)
    from ecmpi.compress import _fused_numba as k

    n = 1 << 16
    g = np.random.default_rng(11)
    x = g.standard_normal(n).astype(np.float32)
    hb = g.integers(0, 256, n).astype(np.uint8)
    ct = np.zeros(n + 8, np.uint8)
    tie = np.zeros(n, np.uint8)
    tt = np.zeros(n, np.float32)
    low, at = np.zeros(4 * n, np.uint32), np.zeros(n, np.int64)
    for levels in (1, 3, 255):
        r = np.float32(np.abs(x).max())
        q = (np.float32(levels) / r) * np.float32(65536.0)
        k._quantize(x, 0, n, 0, q, np.float32(65536.0 * levels), k.Tile(hb, ct, tie, tt, at, low))
        c = np.ceil(tt).astype(np.int64)
        h = hb.astype(np.int64) * 256
        decided_by_low = (c + 65535 - h) >> 16 != (c + 65535 - (h + 255)) >> 16
        np.testing.assert_array_equal(tie.astype(bool), decided_by_low)
        mean, sd = n / 256, np.sqrt(n / 256 * (1 - 1 / 256))
        assert abs(int(tie.sum()) - mean) < 6 * sd, (levels, int(tie.sum()))
        if levels == 1:  # the comparison form for s = 1: same codes, flags in bit 7
            ct1 = np.zeros_like(ct)
            k._quantize_s1(x, 0, n, 0, q, k.Tile(hb, ct1, tie, np.zeros_like(tt), at, low))
            np.testing.assert_array_equal(ct1 & 0x7F, ct)
            np.testing.assert_array_equal(ct1[:n] >> 7, tie)


def test_import_does_not_load_numba():
    code = "import sys, ecmpi; ecmpi.compressor('qsgd'); print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_disabled_by_environment():
    code = (
        "import sys, numpy as np, ecmpi; from ecmpi.compress import _fused; "
        "ecmpi.compressor('qsgd').encode(np.ones(9, np.float32), seed=0); "
        "print(_fused.enabled(), 'numba' in sys.modules)"
    )
    env = {"ECMPI_FUSED": "0", "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "False False"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "spec",
    [
        "qsgd:levels=1,bucket=512",
        "qsgd:levels=1,bucket=100",
        "qsgd:levels=1,bucket=7",
        "terngrad:bucket=64",
        "qsgd:levels=3,bucket=64",
        "sign:bucket=33",
    ],
)
def test_decode_and_decode_add_match_reference(spec, dtype):
    # s = 1 with a bucket that is a multiple of 4 decodes four entries per byte from a table;
    # the other cases unpack tiles: every path must give the reference's values
    c = ecmpi.compressor(spec)
    for n in (1, 3, 5, 513, 4099):
        x = np.random.default_rng(n).standard_normal(n).astype(dtype)
        p = c.encode(x, seed=2)
        accs = [np.full(n, 0.25, np.float32), np.full(n, 0.25, np.float64)]
        got = [c.decode(p)] + [c.decode_add(p, a.copy()) for a in accs]
        with _fused.disabled():
            want = [c.decode(p)] + [c.decode_add(p, a.copy()) for a in accs]
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype and g.tobytes() == w.tobytes(), (spec, dtype, n)


def test_warm_up_compiles_the_kernels_for_the_dtype():
    # a fresh interpreter: a dispatcher lists only the signatures compiled or loaded from the
    # disk cache in this process, so after warm_up(float32 vector) the qsgd encoder and the
    # decoder have float32 signatures, and nothing for float64
    code = (
        "import numpy as np, ecmpi; from ecmpi.compress import _fused_numba as k; "
        "ecmpi.compressor('qsgd:levels=1').warm_up(np.zeros(5, np.float32)); "
        "enc = [str(s[0]) for s in k.qsgd_encode.signatures]; "
        "dec = [str(s[-2]) for s in k.qsgd_decode_s1.signatures]; "
        "print(enc, dec)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "array(float32, 1d, C)" in out.stdout and "float64" not in out.stdout, out.stdout
