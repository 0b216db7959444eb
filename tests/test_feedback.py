"""Error feedback: telescoping identity, ECQ form, state handling and errors."""

from __future__ import annotations

import numpy as np
import pytest

import ecmpi
from ecmpi.compress import ErrorFeedback, FeedbackState


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
