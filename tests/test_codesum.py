"""Aggregation on codes (ecmpi.comm.codesum): fused kernels against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

import ecmpi
from ecmpi.comm.codesum import CodeSum
from ecmpi.compress import _fused

pytestmark = pytest.mark.skipif(not _fused.available(), reason="numba not installed")

SPECS = ["qsgd:levels=1,bucket=16", "qsgd:levels=3,bucket=7", "qsgd:levels=127,bucket=64",
         "qsgd:levels=2,bucket=16,stochastic=false", "terngrad:bucket=8"]  # fmt: skip


def both(fn):
    """``fn()`` with the fused kernels, then with the NumPy reference."""
    fast = fn()
    with _fused.disabled():
        ref = fn()
    return fast, ref


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("n", [1, 13, 5000])
def test_same_bytes_as_the_reference(spec, n):
    cs = CodeSum.of(ecmpi.compressor(spec))
    xs = [np.random.default_rng([k, n]).standard_normal(n).astype(np.float32) for k in range(3)]
    scales = np.max([cs.scales(x)[0] for x in xs], axis=0)
    codes = both(lambda: [cs.encode(x, scales, (4, 2), k) for k, x in enumerate(xs)])
    for a, b in zip(*codes):
        assert np.array_equal(a, b)
    bufs = codes[0]
    wide = cs.sum_width(3)
    a, b = both(lambda: cs.sum_wide(bufs, n, wide))
    assert np.array_equal(a, b)
    outs = []
    for flag in (True, False):
        prev = _fused.set_enabled(flag)
        try:
            out = np.zeros(n, np.float32)
            cs.decode(a, n, scales, out, width=wide, offset=3 * cs.levels, mult=1, div=cs.levels)
            outs.append(out)
        finally:
            _fused.set_enabled(prev)
    assert np.array_equal(outs[0], outs[1])
    # the wide code is the sum of the signed levels, offset by P s
    acc = np.zeros(n, np.int32)
    for buf in bufs:
        cs.add(buf, n, acc, cs.width, cs.levels)
    assert np.array_equal(cs.pack(acc, wide, 3 * cs.levels), a)
    # a ring hop: the sum of two codes, then of three, equals the wide sum
    if cs.sum_width(3) <= 16:
        w2 = cs.sum_width(2)
        two = both(lambda: cs.add_pack(bufs[0], cs.width, bufs[1], cs.width, n, w2))
        assert np.array_equal(*two)
        three = both(lambda: cs.add_pack(two[0], w2, bufs[2], cs.width, n, wide))
        assert np.array_equal(*three) and np.array_equal(three[0], a)


def test_requantize_is_unbiased():
    """E[floor(S/P) + Bernoulli((S mod P)/P)] = S/P: the mean of 4000 draws per value is
    within 5 standard deviations (at most 1/(2 sqrt(4000)))."""
    cs = CodeSum.of(ecmpi.compressor("qsgd:levels=1"))
    acc = np.repeat(np.arange(-4, 5, dtype=np.int32), 4000)
    lev = cs.requantize(acc, 3, (1,), 0)
    assert lev.min() >= -2 and lev.max() <= 2
    means = lev.reshape(9, 4000).mean(axis=1)
    assert np.all(np.abs(means - np.arange(-4, 5) / 3) <= 5 * 0.5 / np.sqrt(4000))


def test_refuses_other_codecs_and_too_wide_sums():
    with pytest.raises(ValueError, match="qsgd or terngrad"):
        CodeSum.of(ecmpi.compressor("sign"))
    with pytest.raises(ValueError, match="requantize=True"):
        CodeSum.of(ecmpi.compressor("qsgd:levels=20000")).sum_width(2)
