"""The mlp problem sharded over any number of ranks: the same split, loss, gradient and test
metrics as one rank holding every row, and a resumed run that continues bit for bit."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).parent))
from _helpers import shared_tmpdir

import ecmpi
from ecmpi.log import open_log
from ecmpi.problems import make

SPEC = "synthetic:n=83,d=6,classes=4,seed=5"
OPTS = {"hidden": "5,4", "l2": 0.01, "seed": 2, "test_fraction": 0.3}


def test_sharded_gradient_equals_the_single_rank_one(comm):
    p = make("mlp", SPEC, comm=comm, **OPTS)
    one = make("mlp", SPEC, comm=MPI.COMM_SELF, **OPTS)  # every row on this rank
    assert (p.n_global, p.n_test, p.d) == (one.n_global, one.n_test, one.d)
    assert comm.allreduce(p.n_local) == one.n_local
    x = p.initial_point() + 0.1 * np.cos(np.arange(p.d))
    np.testing.assert_array_equal(x, one.initial_point() + 0.1 * np.cos(np.arange(p.d)))
    # the same rows summed in another grouping: equal to rounding (a few ulps of the sums)
    g, g1 = p.grad(x), one.grad(x)
    np.testing.assert_allclose(g, g1, rtol=1e-12, atol=1e-14)
    assert p.loss(x) == one.loss(x) or abs(p.loss(x) - one.loss(x)) <= 1e-13 * one.loss(x)
    m, m1 = p.metrics(x), one.metrics(x)
    assert m["test_accuracy"] == m1["test_accuracy"]
    assert abs(m["test_loss"] - m1["test_loss"]) <= 1e-13 * m1["test_loss"]
    # every rank holds the same reduced values, bit for bit
    for v in comm.allgather(g.tobytes()):
        assert v == g.tobytes()
    # the node gradients average to the gradient (f = (1/P) sum f_tau)
    mean = sum(comm.allgather(p.local_grad(x))) / comm.size
    np.testing.assert_allclose(mean, g, rtol=1e-12, atol=1e-14)


def test_resumed_run_continues_bit_for_bit(comm):
    where = Path(shared_tmpdir(comm)) / f"mlp_resume_np{comm.size}"
    if comm.rank == 0:
        where.mkdir(parents=True, exist_ok=True)
    comm.Barrier()
    kw = dict(
        problem="mlp",
        dataset=SPEC,
        hidden="5",
        lr=0.3,
        batch_size=4,
        log_every=4,
        seed=1,
        quiet=True,
        compressor="qsgd:levels=2",
        overwrite=True,
    )
    whole, part = where / "whole.h5", where / "part.h5"
    ecmpi.run("ecq-sgd", comm=comm, steps=16, out=whole, **kw)
    ecmpi.run("ecq-sgd", comm=comm, steps=8, checkpoint_every=8, out=part, **kw)
    kw.pop("overwrite")
    ecmpi.run("ecq-sgd", comm=comm, steps=16, resume=part, **kw)
    if comm.rank == 0:
        a, b = open_log(whole), open_log(part)
        assert b.status == "completed"
        np.testing.assert_array_equal(a.x_final, b.x_final)
        for name in ("step", "loss", "test_accuracy", "test_loss", "bits_up"):
            np.testing.assert_array_equal(a.trajectory[name], b.trajectory[name], err_msg=name)
    comm.Barrier()
