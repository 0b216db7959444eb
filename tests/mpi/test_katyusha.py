"""EC-LKatyusha and loopless Katyusha under MPI (any number of ranks)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from ecmpi import compressor
from ecmpi.algorithms import RunContext, counted_step, get
from ecmpi.algorithms.ec import shared_coin
from ecmpi.algorithms.katyusha import katyusha_parameters
from ecmpi.algorithms.loop import run
from ecmpi.algorithms.sgd import minibatch
from ecmpi.problems import make

sys.path.insert(0, str(Path(__file__).parent))
from _helpers import mean_rank_order

LOGREG = "synthetic:n=120,d=8,seed=4"
QUAD = "quadratic:d=6,kappa=5,n=48"


def _ctx(comm, prob, comp, *, batch=1, x0=None, **params):
    return RunContext(
        problem=prob,
        comm=comm,
        compressor=compressor(comp),
        seed=11,
        batch_size=batch,
        x0=prob.x_star + 1.0 if x0 is None else x0,
        params=params,
    )


def _reference_lkatyusha(comm, prob, ctx, steps, hp):
    """Loopless Katyusha on the distributed estimator, written out without ecmpi's exchange."""
    t1, t2, eta, L, p = hp["theta1"], hp["theta2"], hp["eta"], hp["L"], hp["p"]
    sigma = prob.mu / L
    y = ctx.x0.copy()
    z = y.copy()
    w = y.copy()
    gw = prob.local_grad(w)
    for t in range(steps):
        x = t1 * z + t2 * w + (1.0 - t1 - t2) * y
        idx = minibatch(ctx, t)
        g = prob.batch_grad(x, idx) - prob.batch_grad(w, idx) + gw
        delta = mean_rank_order(comm, (eta / L) * g)
        z_new = (eta * sigma * x + z - delta) / (1.0 + eta * sigma)
        y_old = y
        y = x + t1 * (z_new - z)
        z = z_new
        if shared_coin(ctx.seed, t, p):
            w = y_old.copy()
            gw = prob.local_grad(w)
    return y


@pytest.mark.parametrize("snapshot", ["local", "global"])
def test_identity_equals_lkatyusha_bit_for_bit(comm, snapshot):
    prob = make("logreg", LOGREG, comm=comm, l2_rel=1e-2)
    steps = 40
    ys = []
    for name in ("ec-lkatyusha", "lkatyusha"):
        ctx = _ctx(comm, prob, "none", snapshot=snapshot, p="0.2")
        alg = get(name)(ctx)
        for t in range(steps):
            alg.step(t)
        ys.append(alg.x.copy())
        assert np.all(alg.ec.e == 0.0)
    np.testing.assert_array_equal(ys[0], ys[1])
    if snapshot == "local":  # and both equal the written-out recursion
        ctx = _ctx(comm, prob, "none", p="0.2")
        hp = get("lkatyusha")(ctx).hp
        np.testing.assert_array_equal(ys[1], _reference_lkatyusha(comm, prob, ctx, steps, hp))


def test_default_parameters_follow_the_formulas(comm):
    prob = make("logreg", LOGREG, comm=comm, l2_rel=1e-2)
    alg = get("ec-lkatyusha")(_ctx(comm, prob, "topk:k=2", batch=0, p="1/m"))
    hp = alg.hp
    assert hp["L"] == prob.L and hp["p"] == 1.0  # full local gradients: m = 1
    # the default under compression is C's contraction, K/d for topk
    assert get("ec-lkatyusha")(_ctx(comm, prob, "topk:k=2", batch=0)).hp["p"] == 2 / prob.d
    sigma = prob.mu / prob.L
    assert hp["theta1"] == pytest.approx(min(math.sqrt(2 * sigma / 3), 0.5))
    m = prob.n_global / comm.size / 2  # minibatches of 2 rows per local pass
    hp2 = get("ec-lkatyusha")(_ctx(comm, prob, "topk:k=2", batch=2, p="1/m")).hp
    assert hp2["p"] == pytest.approx(1 / m)
    assert hp2["theta1"] == pytest.approx(min(math.sqrt(2 * m * hp2["sigma"] / 3), 0.5))
    assert hp["theta2"] == 0.5
    assert hp["eta"] == pytest.approx(0.5 / (1.5 * hp["theta1"]))
    assert alg.snapshot_mode == "global" and alg.scale == 1.0
    ratio = compressor("topk:k=2").wire_nbytes(prob.d, np.float64) / (8 * prob.d)
    alg2 = get("ec-lkatyusha")(_ctx(comm, prob, "topk:k=2", p="ratio", p_scale=0.5))
    assert alg2.hp["p"] == pytest.approx(0.5 * ratio)
    q = compressor("qsgd:levels=2,bucket=8")
    alg3 = get("ec-lkatyusha")(_ctx(comm, prob, q, theta1=0.3, eta=2.0, L=3.0))
    assert alg3.scale == pytest.approx(1 / (q.omega(prob.d) + 1))
    assert (alg3.hp["theta1"], alg3.hp["eta"], alg3.hp["L"]) == (0.3, 2.0, 3.0)
    with pytest.raises(ValueError, match="theta1"):
        katyusha_parameters(1.0, 0.1, 0.1, theta1=0.7)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        get("ec-lkatyusha")(_ctx(comm, prob, "topk:k=2", bogus=1))
    with pytest.raises(ValueError, match="p must"):
        get("ec-lkatyusha")(_ctx(comm, prob, "topk:k=2", p="2"))


@pytest.mark.parametrize(
    "prob_args,comp,params",
    [
        (("quadratic", QUAD, {}), "topk:k=2", {"snapshot": "local"}),
        (("logreg", LOGREG, {"l2_rel": 0.05}), "topk:k=2", {}),
        (("logreg", LOGREG, {"l2_rel": 0.05}), "qsgd:levels=2,bucket=8", {}),
        (("logreg", LOGREG, {"l2_rel": 0.05}), "sign", {}),
        (("logreg", LOGREG, {"l2_rel": 0.05}), "none", {"l2_mode": "prox"}),
    ],
)
def test_reaches_1e_8(comm, prob_args, comp, params):
    name, data, kw = prob_args
    prob = make(name, data, comm=comm, **kw)
    for alg in ("ec-lkatyusha", "lkatyusha"):
        res = run(
            get(alg),
            _ctx(comm, prob, comp, batch=0, **params),
            steps=3000,
            target=1e-8,
            log_every=10,
        )
        assert res.stop_reason == "target", (alg, res.last)
        assert res.last["suboptimality"] <= 1e-8


def test_coin_and_iterates_identical_on_every_rank(comm):
    coins = [shared_coin(7, t, 0.3) for t in range(2000)]
    assert all(c == coins for c in comm.allgather(coins))
    # a fair coin: the count of heads is Binomial(2000, 0.3); 5 standard deviations
    assert abs(sum(coins) - 600) < 5 * math.sqrt(2000 * 0.3 * 0.7)
    prob = make("logreg", LOGREG, comm=comm, l2_rel=1e-2)
    alg = get("ec-lkatyusha")(_ctx(comm, prob, "topk:k=1", p="0.3"))
    for t in range(30):
        alg.step(t)
    for v in (alg.y, alg.z, alg.snapshot.w, alg.snapshot.g):
        assert all(np.array_equal(u, v) for u in comm.allgather(v))


def test_exact_bits_per_step(comm):
    prob = make("logreg", LOGREG, comm=comm, l2_rel=1e-2)
    c = compressor("topk:k=2")
    alg = get("ec-lkatyusha")(_ctx(comm, prob, c, p="0.25"))
    P = comm.size
    wc = c.wire_nbytes(prob.d, np.float64)
    wn = compressor("none").wire_nbytes(prob.d, np.float64)
    for t in range(40):
        cost = counted_step(alg, t)
        expect = 8 * (P - 1) * (wc + (wn if shared_coin(11, t, 0.25) else 0))
        assert cost.bits_up == expect and cost.bits_down == expect


def test_residual_bounded_by_the_contraction(comm):
    """TopK: ||e'|| = ||p - C(p)|| <= sqrt(1 - k/d) ||p|| every step, so
    sup ||e|| <= q/(1-q) sup ||a|| with q = sqrt(1 - k/d)."""
    prob = make("logreg", LOGREG, comm=comm, l2_rel=1e-2)
    k = 1
    q = math.sqrt(1 - k / prob.d)
    alg = get("ec-lkatyusha")(_ctx(comm, prob, f"topk:k={k}"))
    inner = alg.ec
    seen = {"a": 0.0, "e": 0.0}

    class Recorder:
        def __getattr__(self, name):
            return getattr(inner, name)

        def __call__(self, a, seed):
            p = inner.e + a
            out = inner(a, seed)
            assert np.linalg.norm(inner.e) <= q * np.linalg.norm(p) * (1 + 1e-12)
            seen["a"] = max(seen["a"], float(np.linalg.norm(a)))
            seen["e"] = max(seen["e"], float(np.linalg.norm(inner.e)))
            return out

    alg.ec = Recorder()
    for t in range(300):
        alg.step(t)
    assert 0 < seen["e"] <= q / (1 - q) * seen["a"] * (1 + 1e-12)


def test_rerun_and_resume_identical(comm):
    prob = make("logreg", LOGREG, comm=comm, l2_rel=1e-2)
    a = get("ec-lkatyusha")(_ctx(comm, prob, "topk:k=2", p="0.2"))
    for t in range(20):
        a.step(t)
    b = get("ec-lkatyusha")(_ctx(comm, prob, "topk:k=2", p="0.2"))
    b.load_state_dict(a.state_dict())
    for t in range(20, 40):
        a.step(t)
        b.step(t)
    np.testing.assert_array_equal(a.x, b.x)
