"""Error feedback: telescoping identity, ECQ form, state handling, errors, and its users.

The recursion is defined once (:mod:`ecmpi.compress.feedback`); the collectives' residuals,
CompensatedMean and the ECQ-SGD driver must produce its values.
"""

from __future__ import annotations

import numpy as np
import pytest

import ecmpi
from ecmpi.compress import ErrorFeedback, FeedbackState
from ecmpi.compress.feedback import compensate, next_residual, residual_from_error, stability


def grads(steps, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) for _ in range(steps)]


@pytest.mark.parametrize("spec", ["qsgd:levels=1", "sign:bucket=32", "topk:k=3", "randk:k=5"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_telescoping_identity(spec, dtype):
    ef = ErrorFeedback(spec)
    gs = grads(30, 100, dtype)
    state = ef.init(gs[0])
    sent = np.zeros(100, np.float64)
    for t, g in enumerate(gs):
        payload, q, state = ef.update(g, state, seed=(1, t), rank=2)
        np.testing.assert_array_equal(q, ef.compressor.decode(payload))
        sent += q
    total = np.sum(gs, axis=0, dtype=np.float64)
    eps = np.finfo(dtype).eps
    # each step rounds p = g + h and p - q once: the identity holds to 2*eps*|p| per step
    scale = max(np.abs(total).max(), np.abs(state.residual).max(), 1.0)
    np.testing.assert_allclose(sent + state.residual, total, rtol=0, atol=60 * 4 * eps * scale)


def test_residual_is_p_minus_q():
    ef = ErrorFeedback(ecmpi.compressor("topk:k=2"))
    g = np.array([3.0, -1.0, 0.5, 4.0], np.float32)
    state = ef.init(g)
    _, q, state = ef.update(g, state, seed=0)
    np.testing.assert_array_equal(q, [3.0, 0, 0, 4.0])
    np.testing.assert_array_equal(state.residual, [0, -1.0, 0.5, 0])
    _, q, state = ef.update(g, state, seed=1)  # p = [3, -2, 1, 4]
    np.testing.assert_array_equal(q, [3.0, 0, 0, 4.0])
    np.testing.assert_array_equal(state.residual, [0, -2.0, 1.0, 0])


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, 0.9), (0.8, 0.3)])
def test_ecq_form(alpha, beta):
    c = ecmpi.compressor("qsgd:levels=2,bucket=16")
    ef = ErrorFeedback(c, alpha=alpha, beta=beta)
    plain = ErrorFeedback(c)
    gs = grads(10, 64, np.float64, seed=3)
    state, h = ef.init(gs[0]), np.zeros(64)
    state_ef, e = plain.init(gs[0]), np.zeros(64)
    for t, g in enumerate(gs):
        _, q, state = ef.update(g, state, seed=t)
        q_ref = c.roundtrip(g + alpha * h, seed=t)
        np.testing.assert_array_equal(q, q_ref)
        h = beta * h + (g - q_ref)
        np.testing.assert_allclose(state.residual, h, rtol=0, atol=1e-12)
        _, q_ef, state_ef = plain.update(g, state_ef, seed=t)
        v = c.roundtrip(g + e, seed=t)
        e = g + e - v
        np.testing.assert_array_equal(q_ef, v)
        np.testing.assert_array_equal(state_ef.residual, e)
        if alpha == beta == 1.0:
            np.testing.assert_array_equal(state.residual, state_ef.residual)


def test_stability_condition():
    assert ErrorFeedback("qsgd", alpha=1.0, beta=1.0).is_stable(0.5)
    assert not ErrorFeedback("qsgd", alpha=1.0, beta=1.0).is_stable(1.0)
    assert ErrorFeedback("qsgd", alpha=0.5, beta=0.5).is_stable(3.9)
    assert not ErrorFeedback("qsgd", alpha=0.5, beta=1.4).is_stable(3.0)


def test_state_is_a_namedtuple_of_zeros():
    ef = ErrorFeedback("sign")
    st = ef.init(np.ones(5, np.float32))
    assert isinstance(st, FeedbackState) and st._fields == ("residual",)
    assert st.residual.dtype == np.float32 and not st.residual.any()


def test_errors():
    ef = ErrorFeedback("sign")
    g = np.ones(5, np.float32)
    with pytest.raises(ValueError, match="does not match"):
        ef.update(g, FeedbackState(np.zeros(4, np.float32)), seed=0)
    with pytest.raises(ValueError, match="does not match"):
        ef.update(g, FeedbackState(np.zeros(5, np.float64)), seed=0)
    with pytest.raises(TypeError, match="FeedbackState"):
        ef.update(g, np.zeros(5, np.float32), seed=0)
    with pytest.raises(ValueError, match="1-D"):
        ef.init(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="alpha"):
        ErrorFeedback("sign", alpha="big")
    with pytest.raises(ValueError, match="beta"):
        ErrorFeedback("sign", beta=float("nan"))
    with pytest.raises(ValueError, match="unknown compressor"):
        ErrorFeedback("nope")


# -- the one recursion and its users --------------------------------------------------------


def test_functions_are_the_recursion():
    g, h = grads(2, 50, np.float32, seed=5)
    q = ecmpi.compressor("qsgd:levels=2,bucket=8").roundtrip(g + h, seed=0)
    assert compensate(g, h, 0.0) is g
    np.testing.assert_array_equal(compensate(g, h), g + h)
    np.testing.assert_array_equal(compensate(g, h, 0.5), g + np.float32(0.5) * h)
    p = g + h
    np.testing.assert_array_equal(next_residual(g, h, p, q), p - q)
    np.testing.assert_array_equal(
        next_residual(g, h, p, q, alpha=0.5, beta=0.8), np.float32(0.8) * h + (g - q)
    )
    np.testing.assert_array_equal(next_residual(g, h, p, q, scale=0.25), p - np.float32(0.25) * q)
    # from the compression error r = p - q: h' = r + (beta - alpha) h, a copy of r if alpha = beta
    r = p - q
    out = residual_from_error(r, h, alpha=0.5, beta=0.5)
    assert out is not r
    np.testing.assert_array_equal(out, r)
    np.testing.assert_array_equal(
        residual_from_error(r, h, alpha=0.5, beta=0.8), r + np.float32(0.3) * h
    )
    np.testing.assert_array_equal(
        residual_from_error(r, h, p, scale=0.25), p - np.float32(0.25) * (p - r)
    )
    with pytest.raises(ValueError, match="scale"):
        residual_from_error(r, h, p, alpha=0.5, beta=0.5, scale=0.25)
    with pytest.raises(ValueError, match="scale"):
        residual_from_error(r, h, scale=0.25)
    assert stability(0.5, 0.8, 0.6) == 0.8**2 * 0.5 + (0.6 - 0.8) ** 2
    assert ErrorFeedback("qsgd", alpha=0.8, beta=0.6).stability(0.5) == stability(0.5, 0.8, 0.6)


def test_collective_residual_is_errorfeedback():
    from ecmpi.comm.residuals import compensated_encode

    c = ecmpi.compressor("qsgd:levels=1,bucket=16")
    ef = ErrorFeedback(c)
    g, h = grads(2, 64, np.float64, seed=6)
    want, _, state = ef.update(g, FeedbackState(h.copy()), seed=(3, 1), rank=2)
    got = compensated_encode(c, g, h, seed=(3, 1), rank=2)
    assert got.to_bytes() == want.to_bytes()
    np.testing.assert_array_equal(h, state.residual)


def _one_rank_ctx(spec, **kw):
    from mpi4py import MPI

    from ecmpi.algorithms.base import RunContext
    from ecmpi.problems import make

    prob = make("lsq", "synthetic:n=240,d=20,seed=3", comm=MPI.COMM_SELF)
    return RunContext(
        problem=prob,
        comm=MPI.COMM_SELF,
        compressor=ecmpi.compressor(spec),
        collective="allgather",
        seed=11,
        lr=0.05,
        batch_size=4,
        **kw,
    )


@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_compensated_mean_is_errorfeedback(scale):
    from ecmpi.algorithms.ec import CompensatedMean
    from ecmpi.comm.allgather import PHASE

    ctx = _one_rank_ctx("topk:k=4")
    gs = grads(6, 20, np.float64, seed=7)
    cm = CompensatedMean(ctx, ctx.compressor, gs[0], ecmpi.CommStats(), scale=scale)
    ef = ErrorFeedback(ctx.compressor)
    state = ef.init(gs[0])
    for t, a in enumerate(gs):
        _, q, new = ef.update(a, state, seed=(11, t, PHASE, 0), rank=0)
        p = a + state.residual
        got = cm(a, (11, t))
        if scale == 1.0:  # the same recursion, op for op
            np.testing.assert_array_equal(got, q)
            np.testing.assert_array_equal(cm.e, new.residual)
            state = new
        else:  # v = scale*C(p), e = p - v, with C(p) taken as p - (p - q)
            np.testing.assert_array_equal(got, scale * q)
            want = next_residual(a, state.residual, p, q, scale=scale)
            np.testing.assert_allclose(cm.e, want, rtol=0, atol=8e-16 * np.abs(p).max())
            state = FeedbackState(cm.e.copy())


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, 0.5), (0.7, 0.9), (0.0, 0.0)])
def test_ecqsgd_residual_is_errorfeedback(alpha, beta):
    from ecmpi.algorithms import get
    from ecmpi.algorithms.sgd import minibatch_gradient
    from ecmpi.comm.allgather import PHASE

    params = dict(alpha=alpha, beta=beta, residual_units="grad", coder="off")
    alg = get("ecq-sgd")(_one_rank_ctx("qsgd:levels=2,bucket=8", params=params))
    ef = ErrorFeedback(alg.ctx.compressor, alpha=alpha, beta=beta)
    for t in range(8):
        w = alg.x.copy()
        g = minibatch_gradient(alg.ctx, w, t)
        _, q, new = ef.update(g, FeedbackState(alg.h.copy()), seed=(11, t, PHASE, 0), rank=0)
        alg.step(t)
        np.testing.assert_array_equal(alg.x, w - alg.lr * q)
        if alpha == beta == 1.0:
            np.testing.assert_array_equal(alg.h, new.residual)
        else:  # r + (beta - alpha) h: the same value, rounded differently
            scale = max(np.abs(g).max(), np.abs(alg.h).max(), 1.0)
            np.testing.assert_allclose(alg.h, new.residual, rtol=0, atol=8e-16 * scale)
    omega = alg.ctx.compressor.omega(alg.ctx.problem.d)
    assert alg.describe()["stability"] == stability(omega, alpha, beta) == ef.stability(omega)
