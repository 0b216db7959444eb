"""Parameter formulas of loopless Katyusha and the snapshot probability (no MPI)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from ecmpi import compressor
from ecmpi.algorithms.ec import compression_ratio, contraction_scale, resolve_p, shared_coin
from ecmpi.algorithms.katyusha import katyusha_parameters


def _prob(n_global=400, size=4, d=50):
    return SimpleNamespace(
        n_global=n_global, comm=SimpleNamespace(size=size), d=d, dtype=np.float64
    )


def test_katyusha_defaults_match_the_standard_formulas():
    L, mu, m = 10.0, 1e-3, 100
    hp = katyusha_parameters(L, mu, 1 / m)
    sigma = mu / L
    assert hp["theta1"] == pytest.approx(min(math.sqrt(2 * m * sigma / 3), 0.5))
    assert hp["theta2"] == 0.5
    assert hp["eta"] == pytest.approx(hp["theta2"] / ((1 + hp["theta2"]) * hp["theta1"]))
    assert katyusha_parameters(1.0, 1.0, 0.01)["theta1"] == 0.5  # capped
    with pytest.raises(ValueError, match="mu = 0"):
        katyusha_parameters(1.0, 0.0, 0.1)
    with pytest.raises(ValueError, match="L must"):
        katyusha_parameters(-1.0, 0.1, 0.1)


def test_resolve_p():
    prob = _prob()
    assert resolve_p("1/m", 1.0, prob, compressor("none")) == pytest.approx(4 / 400)
    assert resolve_p("1/m", 1.0, prob, compressor("none"), 5) == pytest.approx(5 * 4 / 400)
    assert resolve_p("1/m", 1.0, prob, compressor("none"), 0) == 1.0
    c = compressor("topk:k=2")
    r = compression_ratio(c, 50, np.float64)
    assert r == pytest.approx((48 + 2 * 8 + 2 * 4) / 400)
    assert resolve_p("ratio", 2.0, prob, c) == pytest.approx(2 * r)
    assert resolve_p("ratio", 1e6, prob, c) == 1.0
    assert resolve_p("0.25", 1.0, prob, c) == 0.25
    # delta: C's contraction factor, K/d for topk (d = 50 here)
    assert resolve_p("delta", 1.0, prob, c) == pytest.approx(2 / 50)
    assert resolve_p("delta", 3.0, prob, c) == pytest.approx(6 / 50)
    assert resolve_p("delta", 1e6, prob, c) == 1.0
    q = compressor("qsgd:levels=4,bucket=16")
    assert resolve_p("delta", 1.0, prob, q) == pytest.approx(q.delta(50))
    assert 0 < q.delta(50) < 1
    for bad in ("0", "1.5", "often"):
        with pytest.raises(ValueError, match="p must"):
            resolve_p(bad, 1.0, prob, c)


def test_contraction_scale():
    assert contraction_scale(compressor("topk:k=3"), 50) == 1.0
    assert contraction_scale(compressor("none"), 50) == 1.0
    q = compressor("qsgd:levels=4,bucket=16")
    assert contraction_scale(q, 50) == pytest.approx(1 / (1 + q.omega(50)))


def test_shared_coin_is_a_pure_function_of_seed_and_step():
    a = [shared_coin(3, t, 0.5) for t in range(500)]
    assert a == [shared_coin(3, t, 0.5) for t in range(500)]
    assert a != [shared_coin(4, t, 0.5) for t in range(500)]
    assert all(shared_coin(3, t, 1.0) for t in range(100))
    # Binomial(500, 0.5): within 5 standard deviations
    assert abs(sum(a) - 250) < 5 * math.sqrt(500 * 0.25)


def test_reproduction_follows_the_template():
    """The ec-lkatyusha runs: 4 values of R over 1e-2..1e-5, five data sets, three seeds,
    start x* + 1, TopK K = 1..3 and dithering, full and minibatch gradients, and a stop
    below eps so that the last crossing of eps lies inside every log."""
    from ecmpi.experiments import get_experiment
    from ecmpi.experiments.eclkatyusha import BATCH, DATASETS, EPS, METHODS, RELS

    full = get_experiment("ec-lkatyusha").full
    opts = [r.options for r in full.runs]
    assert len(RELS) >= 4 and min(RELS) <= 1e-5 and max(RELS) >= 1e-2
    assert {o["l2_rel"] for o in opts} == set(RELS)
    assert {o["dataset"] for o in opts} == {v["dataset"] for v in DATASETS.values()}
    assert {"keel:mushroom", "keel:magic", "keel:spambase", "sklearn:breast_cancer"} <= {
        o["dataset"] for o in opts
    }
    assert {r.algorithm for r in full.runs} == set(METHODS)
    for data in DATASETS:
        for rel in RELS:
            for alg in METHODS:
                seeds = {
                    o["seed"]
                    for r, o in zip(full.runs, opts, strict=True)
                    if r.algorithm == alg
                    and o["l2_rel"] == rel
                    and o["dataset"] == DATASETS[data]["dataset"]
                    and o["compressor"] == "topk:k=1"
                    and o["batch_size"] == (BATCH if alg == "ec-lsvrg-diana" else 0)
                }
                assert len(seeds) >= 3, (data, rel, alg)
    assert {o["compressor"] for o in opts} >= {"topk:k=1", "topk:k=2", "topk:k=3"}
    assert any(o["compressor"].startswith("qsgd") for o in opts)
    assert any(o["batch_size"] > 0 for o in opts) and any(o["batch_size"] == 0 for o in opts)
    assert any(
        r.algorithm == "ec-lkatyusha" and o["batch_size"] > 0 for r, o in zip(full.runs, opts)
    )
    assert all(o["x0"] == "star+1" and o["target"] < EPS for o in opts)
    assert full.eps == EPS == 1e-6 and full.ranks == 4


def test_extrapolated_rounds_solve_the_last_linear_rate():
    """f - f* = 2 exp(-t/500) after a slower start: the second half's fit gives
    t = 500 ln(2/eps) exactly; a flat or rising tail gives inf."""
    from ecmpi.experiments.eclkatyusha import extrapolated_rounds

    t = np.arange(0, 4001, 10)
    f = np.where(t < 1000, 2 * np.exp(-t / 500) * (1 + t / 100), 2 * np.exp(-t / 500))
    eps = 1e-6
    assert extrapolated_rounds({"step": t, "suboptimality": f}, eps) == pytest.approx(
        500 * np.log(2 / eps), rel=1e-9
    )
    flat = {"step": t, "suboptimality": np.full(t.shape, 1e-3)}
    assert extrapolated_rounds(flat, eps) == np.inf
    assert extrapolated_rounds({"step": t[:1], "suboptimality": f[:1]}, eps) == np.inf
