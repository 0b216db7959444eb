"""ECQ-SGD under MPI: its special cases equal ef-sgd and qsgd bit for bit, the h recursion."""

import sys
from pathlib import Path

import numpy as np
import pytest

import ecmpi
from ecmpi.algorithms import RunContext, counted_step, get
from ecmpi.problems import make

sys.path.insert(0, str(Path(__file__).parent))
from _helpers import trajectory

QSGD = "qsgd:levels=4,bucket=8,norm=l2"
STEPS = 12


def _problem(comm, name="lsq"):
    return make(name, "synthetic:n=240,d=20,seed=3", comm=comm)


def _ctx(comm, prob, spec=QSGD, collective="allgather", lr=0.05, **params):
    return RunContext(
        problem=prob,
        comm=comm,
        compressor=ecmpi.compressor(spec),
        collective=collective,
        seed=11,
        lr=lr,
        batch_size=4,
        params=params,
    )


def _same_on_all_ranks(comm, x):
    ref = comm.bcast(x, root=0)
    assert np.array_equal(ref, x)


@pytest.mark.parametrize("spec", [QSGD, "qsgd:levels=1,bucket=16,norm=linf", "topk:k=3"])
def test_alpha_beta_one_is_ef_sgd_bit_for_bit(comm, spec):
    prob = _problem(comm)
    ecq = get("ecq-sgd")(_ctx(comm, prob, spec, alpha=1.0, beta=1.0, residual_units="step"))
    ef = get("ef-sgd")(_ctx(comm, prob, spec, ef_scale="none"))
    xe, ce = trajectory(ecq, STEPS)
    xf, cf = trajectory(ef, STEPS)
    for a, b in zip(xe, xf):
        assert np.array_equal(a, b)
    assert ce == cf
    assert not np.array_equal(xe[0], xe[-1])
    _same_on_all_ranks(comm, xe[-1])


@pytest.mark.parametrize("collective", ["allgather", "sra", "ring", "ps"])
def test_alpha_beta_zero_is_qsgd_bit_for_bit(comm, collective):
    prob = _problem(comm, "logreg")
    ecq = get("ecq-sgd")(_ctx(comm, prob, collective=collective, alpha=0.0, beta=0.0))
    qs = get("qsgd")(_ctx(comm, prob, collective=collective))
    xe, ce = trajectory(ecq, STEPS)
    xq, cq = trajectory(qs, STEPS)
    for a, b in zip(xe, xq):
        assert np.array_equal(a, b)
    assert ce == cq
    _same_on_all_ranks(comm, xe[-1])


@pytest.mark.parametrize("schedule", ["1/t", "stagewise"])
def test_step_schedule_is_sgds(comm, schedule):
    """ECQ-SGD steps with sgd's schedules: at alpha = beta = 0 it is qsgd on the same schedule."""
    prob = _problem(comm)
    sched = dict(schedule=schedule, t0=2.0, stage_steps=3)
    ecq = get("ecq-sgd")(_ctx(comm, prob, alpha=0.0, beta=0.0, **sched))
    qs = get("qsgd")(_ctx(comm, prob, **sched))
    const = get("ecq-sgd")(_ctx(comm, prob, alpha=0.0, beta=0.0))
    xe, _ = trajectory(ecq, STEPS)
    xq, _ = trajectory(qs, STEPS)
    xc, _ = trajectory(const, STEPS)
    for a, b in zip(xe, xq):
        assert np.array_equal(a, b)
    assert not np.array_equal(xe[-1], xc[-1])  # the schedule changed the steps
    with pytest.raises(ValueError, match="t0"):
        get("ecq-sgd")(_ctx(comm, prob, schedule="1/t", t0=0.0))


class _Recording:
    """A problem proxy that records every minibatch gradient it returns."""

    def __init__(self, prob):
        self._prob = prob
        self.grads = []

    def __getattr__(self, name):
        return getattr(self._prob, name)

    def batch_grad(self, x, idx, out=None):
        g = self._prob.batch_grad(x, idx)
        self.grads.append(g.copy())
        return g


@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.5), (0.4, 0.9), (1.0, 0.3)])
def test_h_recursion_and_unrolled_sum(comm, alpha, beta):
    """h_{t+1} = beta h_t + g_t - q_t with q_t = Q(g_t + alpha h_t), and
    h_T = sum_t beta^(T-1-t) (g_t - q_t) (h_0 = 0)."""
    prob = _Recording(_problem(comm))
    ctx = _ctx(comm, prob, alpha=alpha, beta=beta)
    alg = get("ecq-sgd")(ctx)
    c = ctx.compressor
    hs, qs = [alg.h.copy()], []
    for t in range(STEPS):
        alg.step(t)
        hs.append(alg.h.copy())
        g, h = prob.grads[t], hs[t]
        # the payload allgather sent: seed (seed, t, phase 0, chunk 0), this rank
        q = c.roundtrip(g + alpha * h, seed=(ctx.seed, t, 0, 0), rank=comm.rank)
        qs.append(q)
        scale = np.abs(g).max() + np.abs(h).max()
        np.testing.assert_allclose(hs[t + 1], beta * h + (g - q), rtol=0, atol=1e-13 * scale)
    unrolled = sum(beta ** (STEPS - 1 - t) * (prob.grads[t] - qs[t]) for t in range(STEPS))
    scale = max(np.abs(gr).max() for gr in prob.grads)
    np.testing.assert_allclose(hs[-1], unrolled, rtol=0, atol=1e-12 * scale)
    assert np.abs(hs[-1]).max() > 1e-6  # the quantizer really dropped something


def test_grad_units_equal_step_units_with_constant_lr(comm):
    """h in gradient units (paper) and in step units (ef-sgd) are the same method;
    with lr a power of two the two scalings differ by exact factors, so bit for bit."""
    prob = _problem(comm)
    a = get("ecq-sgd")(_ctx(comm, prob, lr=0.0625, alpha=0.5, beta=0.5, residual_units="grad"))
    b = get("ecq-sgd")(_ctx(comm, prob, lr=0.0625, alpha=0.5, beta=0.5, residual_units="step"))
    xa, _ = trajectory(a, STEPS)
    xb, _ = trajectory(b, STEPS)
    np.testing.assert_allclose(xa[-1], xb[-1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(0.0625 * a.h, b.h, rtol=1e-12, atol=1e-14)


def test_entropy_bits_logged_and_below_fixed_width(comm):
    # d = 400 in one l2 bucket: |v_i| s / ||v|| ~ 4/20, so most levels are 0
    prob = make("lsq", "synthetic:n=60,d=400,seed=3", comm=comm)
    spec = "qsgd:levels=4,bucket=400,norm=l2"
    alg = get("ecq-sgd")(_ctx(comm, prob, spec, alpha=0.5, beta=0.5))
    cost = counted_step(alg, 0)
    ent = cost.extra["entropy_bits_up"]
    if comm.size == 1:
        assert cost.bits_up == 0 and ent == 0  # nothing leaves a single rank
    else:
        assert 0 < ent < 0.6 * cost.bits_up
    off = get("ecq-sgd")(_ctx(comm, prob, coder="off"))
    assert off.step(0).extra == {}
