"""DQ-GD and naive QGD on P ranks: identical iterates, exact bits, the P-worker identity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mpi4py import MPI

from ecmpi.algorithms.base import RunContext
from ecmpi.algorithms.dqgd import DQGD, DQHB, DQNAG, QGD
from ecmpi.problems import make as make_problem

DIM, KAPPA, STEPS = 20, 3.5, 30


def build(cls, comm, prob, **params):
    x0 = np.asarray(prob.x_star) + 1.0
    ctx = RunContext(problem=prob, comm=comm, compressor=None, x0=x0, params=params)
    return cls(ctx)


def same_on_all_ranks(comm, arr):
    mine = np.ascontiguousarray(arr).tobytes()
    return all(b == mine for b in comm.allgather(mine))


def hetero(comm, noise=0.5):
    """The quadratic with per-row target noise: every rank's shard has its own minimizer."""
    spec = f"quadratic:d={DIM},kappa={KAPPA},n={10 * DIM},noise={noise}"
    return make_problem("quadratic", comm=comm, dataset=spec)


@pytest.mark.parametrize("cls", [DQGD, QGD, DQHB, DQNAG])
@pytest.mark.parametrize("bits", [5, 2.5])
def test_identical_iterates_and_exact_bits(comm, cls, bits):
    prob = hetero(comm)
    alg = build(cls, comm, prob, bits_per_dim=bits)
    code_bits = math.floor(DIM * bits + 1e-9)
    for t in range(STEPS):
        cost = alg.step(t)
        assert cost.bits_up == code_bits
        assert cost.bits_down == (comm.size - 1) * code_bits
        assert cost.extra["saturated"] >= 0
        assert same_on_all_ranks(comm, alg.x), t
    # every rank logs the same summed saturation count and range
    assert same_on_all_ranks(comm, np.array([cost.extra["saturated"], cost.extra["range"]]))


def test_heterogeneous_shards_differ(comm):
    prob = hetero(comm)
    x_star = np.asarray(prob.x_star)
    g_star = np.asarray(prob.local_grad(x_star), dtype=np.float64)
    # the average of the local gradients vanishes at x*; each one does not (for P > 1)
    g_sum = comm.allreduce(g_star)
    assert np.linalg.norm(g_sum) <= 1e-9 * comm.size * (1 + np.linalg.norm(x_star))
    alg = build(DQGD, comm, prob, bits_per_dim=4)
    if comm.size > 1:
        assert not same_on_all_ranks(comm, g_star)
        assert alg.G > 1e-3
    assert same_on_all_ranks(comm, np.array([alg.G]))


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_p_worker_identity(comm, noise):
    """z_bar = x_hat + eta*mean_p e_p obeys z_bar' = z_bar - eta*mean_p grad f_p(z_p).

    For one worker this is exact GD; with heterogeneous shards (``noise > 0``) the local
    gradients differ and the relation still holds for their average.
    """
    prob = hetero(comm, noise)
    alg = build(DQGD, comm, prob, bits_per_dim=4)
    P = comm.size
    ulp = np.finfo(np.float64).eps
    for t in range(STEPS):
        e_bar = comm.allreduce(alg.e) / P
        g_bar = comm.allreduce(np.asarray(prob.local_grad(alg.z), dtype=np.float64)) / P
        z_bar = alg.x + alg.eta * e_bar
        alg.step(t)
        z_next = alg.x + alg.eta * comm.allreduce(alg.e) / P
        big = np.linalg.norm(z_bar) + alg.eta * (np.linalg.norm(g_bar) + np.linalg.norm(e_bar))
        assert np.linalg.norm(z_next - (z_bar - alg.eta * g_bar)) <= 64 * ulp * (1 + big), t


def test_range_bound_counts_local_gradients_at_optimum(comm):
    prob = make_problem("quadratic", comm=comm, dim=DIM, kappa=KAPPA, n=10 * DIM)
    alg = build(DQGD, comm, prob, bits_per_dim=4)
    local = np.linalg.norm(prob.local_grad(np.asarray(prob.x_star)))
    assert alg.G == pytest.approx(comm.allreduce(local, op=MPI.MAX), rel=1e-12)
    assert alg.L_range >= alg.L
    assert same_on_all_ranks(comm, np.array([alg.G, alg.L_range, alg.D, alg.eps]))


def test_scale_option_sends_32_more_bits_and_never_saturates(comm):
    prob = make_problem("quadratic", comm=comm, dim=DIM, kappa=KAPPA, n=10 * DIM)
    alg = build(DQGD, comm, prob, bits_per_dim=3, send_scale=True)
    for t in range(10):
        cost = alg.step(t)
        assert cost.bits_up == 3 * DIM + 32
        assert cost.extra["saturated"] == 0.0
        assert same_on_all_ranks(comm, alg.x)
