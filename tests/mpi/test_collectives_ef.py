"""Error feedback inside the collectives, under MPI, for any number of ranks."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

import ecmpi
from ecmpi.comm import CollectiveFeedback, allreduce
from ecmpi.comm.common import chunk_bounds

EPS32 = float(np.finfo(np.float32).eps)


def local_vector(comm, d: int, salt: int) -> np.ndarray:
    return np.random.default_rng([salt, comm.rank, d]).standard_normal(d).astype(np.float32)


def mpi_sum(comm, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    comm.Allreduce(x, out, op=MPI.SUM)
    return out


@pytest.mark.parametrize(
    ("collective", "spec"),
    [(a, s) for a in ("sra", "ring") for s in ("bf16", "sign:bucket=16", "topk:ratio=0.25")]
    + [("allgather", "sign:bucket=16"), ("ps", "sign:bucket=16")],
)
def test_error_feedback_time_average_converges(comm, collective, spec):
    """With error feedback at every level, sum_t y_t = T*sum_r g_r - sum_r h_r(T) - e(T).

    So the running mean is off the true sum by at most (sum_r|h_r| + |e|)/T: O(1/T)
    once the residuals stay bounded (they do for contractive compressors), while
    without feedback a biased compressor keeps a constant gap.
    """
    if spec.split(":")[0] not in ecmpi.available():
        pytest.skip(f"{spec} not available")
    d, T = 203, 120
    g = local_vector(comm, d, salt=4)
    true = mpi_sum(comm, g.astype(np.float64))
    fb = CollectiveFeedback()
    total = np.zeros(d)
    plain = np.zeros(d)
    size = []  # this rank's largest residual entry after each step
    for t in range(T):
        total += allreduce(
            g,
            spec,
            comm=comm,
            collective=collective,
            seed=(9, t),
            feedback=fb,
            segment=50,
            check=False,
        )
        size.append(max(np.abs(h).max() for h in fb.residuals.values()))
        if t < 10:
            plain += allreduce(
                g, spec, comm=comm, collective=collective, seed=(9, t), segment=50, check=False
            )
    gap = np.abs(total / T - true).max()
    worker = mpi_sum(comm, fb.worker.astype(np.float64))
    server = np.zeros(d)
    if collective in ("sra", "ring"):
        a, b = chunk_bounds(d, comm.size)[comm.rank]
        if fb.server is not None:
            server[a:b] = fb.server
        server = mpi_sum(comm, server)
    elif collective == "ps" and comm.rank == 0:
        server = fb.server.astype(np.float64)
    if collective == "ps":
        server = comm.bcast(server, root=0)
    # float32 rounding of every step's sums adds at most a few eps * sum|g| per step
    rounding = 8 * comm.size * EPS32 * np.abs(mpi_sum(comm, np.abs(g))).max()
    resid = np.abs(worker + server).max()
    assert gap <= resid / T + rounding
    # bounded residuals: the second half of the run never exceeds twice the first half
    assert max(size[T // 2 :]) <= 2 * max(size[: T // 2])
    plain_gap = np.abs(plain / 10 - true).max()
    assert gap < plain_gap / 5
