"""QESGD and Epoch-SGD under MPI: identity quantizer = Epoch-SGD, bits, the server's update."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import ecmpi
from ecmpi.algorithms import RunContext, get
from ecmpi.problems import make

sys.path.insert(0, str(Path(__file__).parent))
from _helpers import trajectory

D = 20
STEPS = 10
STAGE = dict(stage_length=3, stage_growth=2.0, lr_decay=0.5)  # stages start at t = 0, 3, 9


def _ctx(comm, prob, spec, **params):
    return RunContext(
        problem=prob,
        comm=comm,
        compressor=ecmpi.compressor(spec),
        collective="ps",
        seed=5,
        lr=0.5,
        batch_size=6,
        params={**STAGE, **params},
    )


def _problem(comm):
    return make("logreg", f"synthetic:n=180,d={D},seed=2", comm=comm)


def test_identity_quantizer_is_epoch_sgd(comm):
    prob = _problem(comm)
    xq, _ = trajectory(get("qesgd")(_ctx(comm, prob, "none")), STEPS)
    xe, _ = trajectory(get("epoch-sgd")(_ctx(comm, prob, "none")), STEPS)
    # same iterates; the arithmetic differs only in rounding: w~ + mean(w - eta g - w~)
    for a, b in zip(xq, xe):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13 * (1 + np.abs(b).max()))
    assert np.abs(xe[-1] - xe[0]).max() > 1e-3
    assert np.array_equal(comm.bcast(xq[-1], root=0), xq[-1])


def test_epoch_sgd_steps_follow_the_schedule(comm):
    """Epoch-SGD's update is exactly eta_k times the averaged minibatch gradient."""
    prob = _problem(comm)
    ctx = _ctx(comm, prob, "none")
    alg = get("epoch-sgd")(ctx)
    from ecmpi.algorithms.sgd import minibatch

    etas = [0.5] * 3 + [0.25] * 6 + [0.125]
    for t in range(STEPS):
        x = alg.x.copy()
        g = prob.batch_grad(x, minibatch(ctx, t))
        total = np.zeros_like(g)
        for r_g in comm.allgather(g):  # rank order, like the server
            total += r_g
        alg.step(t)
        np.testing.assert_allclose(alg.x, x - etas[t] * (total / comm.size), rtol=0, atol=1e-15)


def _qsgd_bytes(n, levels, bucket):
    return 48 + 4 * math.ceil(n / bucket) + math.ceil(n * math.ceil(math.log2(2 * levels + 1)) / 8)


@pytest.mark.parametrize("downlink", ["same", "none", "qsgd:levels=7,bucket=10,norm=linf"])
def test_bits_both_directions(comm, downlink):
    prob = _problem(comm)
    alg = get("qesgd")(_ctx(comm, prob, "qsgd:levels=2,bucket=8,norm=linf", downlink=downlink))
    _, costs = trajectory(alg, STEPS)
    P = comm.size
    up = _qsgd_bytes(D, 2, 8)
    full = 48 + 8 * D  # float64, format 'none'
    down = {"same": up, "none": full, "qsgd:levels=7,bucket=10,norm=linf": _qsgd_bytes(D, 7, 10)}
    down = down[downlink]
    for bits_up, bits_down in costs:  # no full-precision message at the stage starts (t = 3, 9)
        if comm.rank == 0:  # server: receives P-1 uploads, sends P-1 copies of each broadcast
            assert bits_up == 8 * (P - 1) * down
            assert bits_down == 8 * (P - 1) * up
        else:
            assert bits_up == 8 * up
            assert bits_down == 8 * down
    st = alg.stats
    if comm.rank != 0:
        assert st.bytes_up == STEPS * up
        assert st.bytes_down == STEPS * down


def test_quantized_run_is_identical_on_all_ranks_and_descends(comm):
    prob = _problem(comm)
    alg = get("qesgd")(_ctx(comm, prob, "qsgd:levels=7,bucket=20,norm=linf"))
    f0 = prob.loss(alg.x)
    xs, _ = trajectory(alg, 30)
    assert np.array_equal(comm.bcast(xs[-1], root=0), xs[-1])
    assert prob.loss(xs[-1]) < 0.9 * f0


def test_server_adds_the_mean_of_the_workers_messages(comm):
    """w <- w + (s/P) sum_p Q(m_p), m_p = e_p(before) + u_p, e_p(after) = m_p - s Q(m_p)."""
    prob = _problem(comm)
    alg = get("qesgd")(_ctx(comm, prob, "qsgd:levels=2,bucket=8,norm=linf"))
    trajectory(alg, 4)
    before = alg.state_dict()
    alg.step(4)
    after = alg.state_dict()
    # what this rank's message decodes to, from its residuals: s Q(m_p) = m_p - e_p(after)
    from ecmpi.algorithms.sgd import minibatch

    u = -0.25 * prob.batch_grad(before["w_hat"], minibatch(alg.ctx, 4))
    sent = (u + before["residual"]) - after["residual"]
    assert np.abs(sent).max() > 0
    total = np.zeros_like(sent)
    for v in comm.allgather(sent):
        total += v
    if comm.rank == 0:
        np.testing.assert_allclose(
            after["w_server"], before["w_server"] + total / comm.size, rtol=0, atol=1e-12
        )
    assert np.array_equal(comm.bcast(alg.x, root=0), alg.x)
