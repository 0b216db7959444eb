"""ec-gd, ec-sgd, ec-lsvrg and the DIANA variants under MPI (any number of ranks)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

from ecmpi import compressor
from ecmpi.algorithms import RunContext, counted_step, get
from ecmpi.algorithms.ec import batch_smoothness, shared_coin
from ecmpi.algorithms.loop import run
from ecmpi.algorithms.sgd import minibatch
from ecmpi.problems import make

sys.path.insert(0, str(Path(__file__).parent))
from _helpers import mean_rank_order

LOGREG = "synthetic:n=120,d=8,seed=4"
QUAD = "quadratic:d=6,kappa=5,n=48"
FAMILY = ("ec-gd", "ec-sgd", "ec-lsvrg", "ec-gd-diana", "ec-sgd-diana", "ec-lsvrg-diana")


def _ctx(comm, prob, comp, *, batch=1, lr=None, **params):
    return RunContext(
        problem=prob,
        comm=comm,
        compressor=compressor(comp),
        seed=3,
        batch_size=batch,
        lr=lr,
        x0=prob.x_star + 1.0,
        params=params,
    )


@pytest.mark.parametrize("snapshot", ["local", "global"])
def test_identity_ec_lsvrg_equals_lsvrg(comm, snapshot):
    """L-SVRG written out: x <- x - mean(gamma*g_tau); w <- x_old with the shared coin."""
    prob = make("logreg", LOGREG, comm=comm, l2_rel=1e-2)
    ctx = _ctx(comm, prob, "none", p="0.1", snapshot=snapshot)
    alg = get("ec-lsvrg")(ctx)
    gamma = alg.lr
    x = ctx.x0.copy()
    w = x.copy()

    def snap(w):  # the full-precision snapshot mean is MPI_Allreduce's sum / P
        g = prob.local_grad(w)
        if snapshot == "local":
            return g
        total = np.empty_like(g)
        comm.Allreduce(g, total, op=MPI.SUM)
        return total / comm.size

    gw = snap(w)
    for t in range(60):
        alg.step(t)
        idx = minibatch(ctx, t)
        g = prob.batch_grad(x, idx) - prob.batch_grad(w, idx) + gw
        x_old = x
        x = x - mean_rank_order(comm, gamma * g)
        if shared_coin(ctx.seed, t, 0.1):
            w = x_old.copy()
            gw = snap(w)
        np.testing.assert_array_equal(alg.x, x)
    assert np.all(alg.ec.e == 0.0)


@pytest.mark.parametrize("name", FAMILY)
def test_reaches_1e_8_on_a_well_conditioned_problem(comm, name):
    """The quadratic's single-row gradients vanish at x*, so every method converges to x*."""
    prob = make("quadratic", QUAD, comm=comm)
    res = run(
        get(name), _ctx(comm, prob, "topk:k=2", batch=4), steps=6000, target=1e-8, log_every=10
    )
    assert res.stop_reason == "target", res.last
    assert res.last["suboptimality"] <= 1e-8


@pytest.mark.parametrize(
    "name,params",
    [
        ("ec-lsvrg", {}),
        ("ec-lsvrg-diana", {}),
        ("ec-lsvrg", {"l2_mode": "prox", "snapshot": "local"}),
    ],
)
def test_heterogeneous_logreg_to_1e_8(comm, name, params):
    """With a global snapshot or DIANA shifts the compressed vectors vanish at x*."""
    prob = make("logreg", LOGREG, comm=comm, l2_rel=0.05)
    comp = "none" if params.get("l2_mode") == "prox" else "topk:k=2"
    res = run(
        get(name), _ctx(comm, prob, comp, batch=0, **params), steps=6000, target=1e-8, log_every=10
    )
    assert res.stop_reason == "target", res.last


def test_ec_gd_diana_removes_the_heterogeneity_floor(comm):
    """On heterogeneous logreg EC-GD's messages tend to gamma*grad f_tau(x*) != 0, so it stalls
    (above 1e-4 after 600 steps at 2+ ranks); the DIANA shifts learn grad f_tau(x*) and
    EC-GD-DIANA reaches 1e-8."""
    prob = make("logreg", LOGREG, comm=comm, l2_rel=0.05)
    ctx = _ctx(comm, prob, "topk:k=2", batch=0)
    res = run(get("ec-gd-diana"), ctx, steps=600, target=1e-8, log_every=10)
    assert res.stop_reason == "target", res.last
    alg = get("ec-gd-diana")(ctx)
    assert alg.batch == 0 and alg.Q.spec.startswith("qsgd") and alg.snapshot is None
    wc = compressor("topk:k=2").wire_nbytes(prob.d, np.float64)
    wq = alg.Q.wire_nbytes(prob.d, np.float64)
    for t in range(3):  # the compressed vector and the shift message, nothing else
        cost = counted_step(alg, t)
        assert cost.bits_up == cost.bits_down == 8 * (comm.size - 1) * (wc + wq)
    if comm.size > 1:  # one worker has no heterogeneity
        base = run(get("ec-gd"), ctx, steps=600, log_every=600)
        assert base.last["suboptimality"] > 1e-4, base.last


def test_defaults(comm):
    prob = make("logreg", LOGREG, comm=comm, l2_rel=1e-2)
    assert get("ec-gd")(_ctx(comm, prob, "topk:k=1")).lr == 1.0 / prob.L
    a = get("ec-sgd")(_ctx(comm, prob, "topk:k=1", batch=2))
    assert a.lr == pytest.approx(1.0 / batch_smoothness(prob, 2))
    assert prob.L_local_max <= batch_smoothness(prob, 2) <= prob.L_max
    b = get("ec-lsvrg")(_ctx(comm, prob, "topk:k=1", p="1/m"))
    assert b.p == pytest.approx(min(1.0, comm.size / prob.n_global)) and b.snapshot_mode == "global"
    assert get("ec-lsvrg")(_ctx(comm, prob, "topk:k=1")).p == 1 / prob.d  # default: K/d
    q = compressor("qsgd:levels=2,bucket=8")
    c = get("ec-lsvrg-diana")(_ctx(comm, prob, q))
    assert c.snapshot_mode == "local" and c.Q == q
    assert c.alpha == pytest.approx(1 / (q.omega(prob.d) + 1))
    assert c.scale == pytest.approx(1 / (q.omega(prob.d) + 1))
    d = get("ec-sgd-diana")(_ctx(comm, prob, "topk:k=1"))
    assert d.Q.spec.startswith("qsgd") and d.scale == 1.0
    with pytest.raises(ValueError, match="unbiased"):
        get("ec-sgd-diana")(_ctx(comm, prob, "topk:k=1", shift_compressor="topk:k=1"))
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        get("ec-gd")(_ctx(comm, prob, "topk:k=1", p="0.1"))
    with pytest.raises(ValueError, match="l2_mode"):
        get("ec-gd")(_ctx(comm, prob, "topk:k=1", l2_mode="both"))


def test_exact_bits_and_identical_iterates(comm):
    prob = make("logreg", LOGREG, comm=comm, l2_rel=1e-2)
    c, q = compressor("topk:k=2"), compressor("qsgd:levels=1,bucket=512")
    alg = get("ec-lsvrg-diana")(_ctx(comm, prob, c, p="0.3", snapshot="global"))
    wc, wq = c.wire_nbytes(prob.d, np.float64), q.wire_nbytes(prob.d, np.float64)
    wn = compressor("none").wire_nbytes(prob.d, np.float64)
    P = comm.size
    for t in range(30):
        cost = counted_step(alg, t)
        expect = 8 * (P - 1) * (wc + wq + (wn if shared_coin(3, t, 0.3) else 0))
        assert cost.bits_up == expect == cost.bits_down
    for v in (alg.x, alg.h, alg.snapshot.w):
        assert all(np.array_equal(u, v) for u in comm.allgather(v))
    # h is the mean of the workers' shifts
    np.testing.assert_allclose(mean_rank_order(comm, alg.h_local), alg.h, rtol=1e-12, atol=1e-15)


def test_ec_gd_residual_bounded(comm):
    """||e'|| <= q ||e + a|| with q = sqrt(1 - k/d) (TopK), so sup||e|| <= q/(1-q) sup||a||,
    even where heterogeneous data keep the messages from vanishing."""
    prob = make("logreg", LOGREG, comm=comm, l2_rel=1e-3)
    k = 1
    qf = math.sqrt(1 - k / prob.d)
    alg = get("ec-gd")(_ctx(comm, prob, f"topk:k={k}"))
    amax = emax = 0.0
    for t in range(400):
        a = alg.lr * alg.gradient(t)
        p = alg.ec.e + a
        alg.step(t)
        e = np.linalg.norm(alg.ec.e)
        assert e <= qf * np.linalg.norm(p) * (1 + 1e-12)
        amax, emax = max(amax, float(np.linalg.norm(a))), max(emax, float(e))
    assert emax <= qf / (1 - qf) * amax * (1 + 1e-12)
