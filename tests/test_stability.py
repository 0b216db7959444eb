"""Every compressor's stated omega/delta holds, and the defaults built on them are stable.

The bound of an unbiased compressor is ``E||C(x) - x||^2 <= omega ||x||^2``, of a
biased one ``E||C(x) - x||^2 <= (1 - delta) ||x||^2``. For each registered
compressor (several configurations) and a few fixed vectors, the mean of the
ratio ``||C(x) - x||^2 / ||x||^2`` over ``DRAWS`` seeds must stay below the
bound plus a sampling margin: ``Z`` sample standard deviations of the mean
(one-sided normal tail ``P(Z > 5) < 3e-7`` per check by the central limit
theorem; zero for deterministic compressors, whose every draw is the same),
plus the rounding of the decoded vector to the input dtype: ``|fl(y_i) - y_i| <=
eps |y_i|`` moves the ratio by at most ``2 eps (1 + sqrt(ratio))^2`` (to first order).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from mpi4py import MPI

from ecmpi import compressor
from ecmpi.algorithms import RunContext, get
from ecmpi.algorithms.ec import resolve_p
from ecmpi.algorithms.ecqsgd import resolve_alpha
from ecmpi.compress import available
from ecmpi.compress.feedback import auto_alpha, contraction_scale, ef_scale_option, stability
from ecmpi.problems import make

DRAWS = 200
Z = 5.0
N = 512

#: configurations per registered name (every name must appear: see the coverage test)
CASES = {
    "none": ["none"],
    "fp16": ["fp16"],
    "bf16": ["bf16"],
    "qsgd": [
        f"qsgd:levels={s},bucket={b},norm={nm}"
        for s in (1, 2, 4, 16)
        for b in (64, 512)
        for nm in ("l2", "linf")
    ]
    + ["qsgd:levels=4,bucket=256,norm=l2", "qsgd:levels=16,bucket=64,stochastic=false"],
    "terngrad": ["terngrad:bucket=64", "terngrad:bucket=512"],
    "sign": ["sign:bucket=64", "sign:bucket=512"],
    "topk": ["topk:k=1", "topk:ratio=0.1"],
    "randk": ["randk:k=8", "randk:ratio=0.1,unbiased=true"],
    "uniform": ["uniform:bits=6,scale=true", "uniform:bits=5.5,scale=true", "uniform:bits=4"],
}


def _vectors(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261206)
    spiky = rng.normal(size=n) * 1e-2
    spiky[7] = 5.0
    flat = np.where(rng.random(n) < 0.5, -1.0, 1.0)  # equal magnitudes: QSGD's sqrt(b)/s case
    return {
        "gauss": rng.normal(size=n),
        "spiky": spiky,
        "flat": flat,
        "heavy": rng.standard_cauchy(size=n).clip(-1e3, 1e3),
    }


def _ratios(c, x: np.ndarray) -> np.ndarray:
    nx = float(np.dot(x, x))
    out = []
    for s in range(DRAWS):
        y = c.roundtrip(x, seed=(11, s), rank=s % 3)
        e = y.astype(np.float64) - x
        out.append(float(np.dot(e, e)) / nx)
    return np.array(out)


def _bound(c, n: int) -> float:
    """omega for unbiased compressors, ``1 - delta`` for the others."""
    if c.unbiased:
        return float(c.omega(n))
    return 1.0 - float(c.delta(n))


def test_every_registered_compressor_has_cases():
    assert sorted(CASES) == available()


@pytest.mark.parametrize("spec", [s for specs in CASES.values() for s in specs])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stated_bound_holds(spec, dtype):
    c = compressor(spec)
    bound = _bound(c, N)
    assert math.isfinite(bound) and bound >= 0.0, (spec, bound)
    if not c.unbiased:
        assert 0.0 <= c.delta(N) <= 1.0
        if c.delta(N) == 0.0:  # stated as no contraction: nothing to check
            assert spec == "uniform:bits=4"
            return
    for name, v in _vectors(N).items():
        x = v.astype(dtype)
        r = _ratios(c, x)
        rounding = 2 * np.finfo(dtype).eps * (1 + math.sqrt(r.max())) ** 2
        margin = Z * r.std(ddof=1) / math.sqrt(DRAWS) + rounding
        assert r.mean() <= bound + margin, (spec, name, r.mean(), bound, margin)


def test_bounds_are_the_documented_formulas():
    n = 256
    assert compressor("none").omega(n) == 0.0 and compressor("none").delta(n) == 1.0
    assert compressor("qsgd:levels=4,bucket=256").omega(n) == min(256 / 16, 16 / 4)
    assert compressor("terngrad:bucket=64").omega(n) == 8.0
    assert compressor("sign:bucket=64").delta(n) == 1 / 64
    assert compressor("topk:k=3").delta(n) == 3 / n
    assert compressor("randk:k=4,unbiased=true").omega(n) == n / 4 - 1
    assert compressor("fp16").delta(n) == 1 - 2.0**-22
    assert compressor("uniform:bits=4").delta(n) == 0.0  # range per call: no relative bound
    c = ((1 + 2.0**-23) * (1 + 2.0**-8)) ** 2  # float32 scale and output rounding
    assert compressor("uniform:bits=6,scale=true").delta(n) == pytest.approx(1 - c * n / 4**6)
    assert compressor("uniform:bits=4,scale=true").delta(n) == 0.0  # n 4^-R = 1: not contractive
    # the bound is nearly attained: equal magnitudes in one l2 bucket
    c = compressor("qsgd:levels=1,bucket=256")
    r = _ratios(c, _vectors(256)["flat"][:256])
    assert r.mean() >= 0.9 * (c.omega(256) - 1)


# -- alpha = auto ------------------------------------------------------------------
UNBIASED = [
    s for specs in CASES.values() for s in specs if compressor(s).unbiased and "none" not in s
]


@pytest.mark.parametrize("spec", [*UNBIASED, "none"])
@pytest.mark.parametrize("beta", [1.0, 0.9, 0.5])
@pytest.mark.parametrize("d", [50, 256, 20000])
def test_auto_alpha_satisfies_the_stability_bound(spec, beta, d):
    om = compressor(spec).omega(d)
    alpha, warning = resolve_alpha("auto", om, beta)
    assert alpha == auto_alpha(om, beta)
    assert stability(om, alpha, beta) < 1.0 and warning is None
    for other in (alpha * 0.9, alpha * 1.1, alpha + 1e-3, max(alpha - 1e-3, 0.0)):
        assert stability(om, alpha, beta) <= stability(om, other, beta)


def test_auto_alpha_of_a_contraction_is_beta_and_warnings_name_the_bound():
    assert auto_alpha(float("inf"), 0.7) == 0.7
    om = compressor("qsgd:levels=4,bucket=256").omega(256)  # 4
    assert auto_alpha(om, 1.0) == pytest.approx(0.2)
    alpha, warning = resolve_alpha(1.0, om, 1.0)
    assert alpha == 1.0 and "alpha^2*omega + (beta - alpha)^2 < 1" in warning
    assert resolve_alpha(0.2, om, 1.0)[1] is None
    assert "beta^2 < (1 + omega)/omega" in resolve_alpha("auto", om, 1.2)[1]


def test_ecqsgd_records_auto_alpha_and_warns_on_rank_0():
    prob = make("lsq", "syn:d=256,n=512", comm=MPI.COMM_SELF)
    spec = "qsgd:levels=4,norm=l2"

    def ctx(**params):
        return RunContext(
            problem=prob, comm=MPI.COMM_SELF, compressor=compressor(spec), lr=0.02, params=params
        )

    alg = get("ecq-sgd")(ctx())
    cfg = alg.describe()
    assert cfg["alpha"] == pytest.approx(1 / (1 + cfg["omega"])) and cfg["alpha_option"] == "auto"
    assert cfg["stability"] < 1.0
    with pytest.warns(RuntimeWarning, match=r"alpha\^2\*omega"):
        get("ecq-sgd")(ctx(alpha=1.0))
    # the former name of --residual-units still works
    assert get("ecq-sgd")(ctx(ef_scale="step")).residual_units == "step"


# -- --ef-scale and p --------------------------------------------------------------
def test_ef_scale_makes_unbiased_compressors_contractive():
    d = 50
    for spec in UNBIASED:
        c = compressor(spec)
        s = contraction_scale(c, d)
        assert s == pytest.approx(1 / (1 + c.omega(d)))
        assert contraction_scale(c, d, "none") == 1.0
    assert contraction_scale(compressor("topk:k=2"), d) == 1.0
    assert contraction_scale(compressor("none"), d) == 1.0
    assert ef_scale_option("0.5") == 0.5 and ef_scale_option("AUTO") == "auto"
    with pytest.raises(ValueError, match="auto, none or a positive number"):
        ef_scale_option("-1")


@pytest.mark.parametrize("k", [1, 2, 5])
def test_p_default_is_k_over_d_for_topk(k):
    prob = make("logreg", "synthetic:n=200,d=40,seed=1", comm=MPI.COMM_SELF, l2_rel=1e-3)
    c = compressor(f"topk:k={k}")
    assert resolve_p("auto", 1.0, prob, c, 4) == k / 40
    ctx = RunContext(problem=prob, comm=MPI.COMM_SELF, compressor=c, batch_size=4)
    for name in ("ec-lsvrg", "ec-lsvrg-diana"):
        assert get(name)(ctx).p == k / 40
    assert get("ec-lkatyusha")(ctx).hp["p"] == k / 40
    # without compression p stays 1/m
    assert get("lkatyusha")(ctx).hp["p"] == pytest.approx(4 / 200)
