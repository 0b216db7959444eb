"""``hier``: uncompressed inside nodes, compressed between them; nodes set by MPI or overridden."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from mpi4py import MPI

from ecmpi.comm import COLLECTIVES, CollectiveFeedback, CommStats, allreduce
from ecmpi.comm.common import chunk_bounds
from ecmpi.comm.hier import ENV_NODE_SIZE, node_comms


def vector(rank: int, d: int, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng([3, rank, d]).standard_normal(d).astype(dtype)


def same_on_all_ranks(comm, y: np.ndarray) -> bool:
    digest = hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest()
    return len(set(comm.allgather(digest))) == 1


def node_sizes(comm) -> list[int | None]:
    """MPI's nodes, one rank per node, and 2 ranks per node where P is even (2 x 2 at P = 4)."""
    return [None, 1] + ([2] if comm.size % 2 == 0 else [])


@pytest.mark.parametrize("spec", ["qsgd:levels=2,bucket=16", "fp16"])
@pytest.mark.parametrize("d", [1, 3, 1001])
def test_equals_the_inner_collective_on_node_sums(comm, spec, d):
    """Bit for bit: the node sums' slices reduced by sra-int (qsgd) or sra (fp16) among the
    ranks of equal local rank, then gathered in the node."""
    x = vector(comm.rank, d)
    for L in node_sizes(comm):
        y = allreduce(x, spec, comm=comm, collective="hier", node_size=L, seed=(8, 1))
        assert same_on_all_ranks(comm, y)
        intra, inter = node_comms(_lib(comm), L)
        a, b = chunk_bounds(d, intra.size)[intra.rank]
        lengths = [hi - lo for lo, hi in chunk_bounds(d, intra.size)]
        node = np.empty(b - a, dtype=x.dtype)
        intra.Reduce_scatter(x, node, recvcounts=lengths, op=MPI.SUM)
        if b > a and inter.size == 1:  # a single node: the exact node sum
            assert np.array_equal(y[a:b], node)
        elif b > a:
            inner = "sra-int" if spec.startswith("qsgd") else "sra"
            want = COLLECTIVES[inner].run(
                node, _compressor(spec), inter, average=False, seed=(8, 1, 6, intra.rank),
                feedback=None, stats=CommStats(),
            )  # fmt: skip
            assert np.array_equal(y[a:b], want)


def test_average_feedback_and_bytes_at_two_ranks_per_node(comm):
    if comm.size % 2:
        pytest.skip("2 ranks per node needs an even number of ranks")
    x = vector(comm.rank, 999, np.float64)
    ex = np.empty_like(x)
    comm.Allreduce(x, ex, op=MPI.SUM)
    st = CommStats()
    fb = CollectiveFeedback()
    # shared-scale variance <= sum_i (R_i/s)^2/4 per node: about (0.003 ||x||)^2 at s = 1000, b = 16
    y = allreduce(x, "qsgd:levels=1000,bucket=16", comm=comm, collective="hier", node_size=2,
                  average=True, feedback=fb, stats=st)  # fmt: skip
    assert same_on_all_ranks(comm, y)
    assert np.linalg.norm(y - ex / comm.size) <= 0.05 * np.linalg.norm(ex / comm.size)
    a, b = chunk_bounds(999, 2)[comm.rank % 2]
    if comm.size == 2:  # a single node: nothing is compressed, the mean is exact
        assert fb.worker is None and np.allclose(y, ex / comm.size, rtol=0, atol=1e-12)
    else:
        assert fb.worker.shape == (b - a,)  # the residual of this rank's slice
    # inside the node: the float64 reduce-scatter and allgather of the other slice
    assert st.last.bytes_sent >= 8 * (999 - (b - a)) + 8 * (b - a)


def test_environment_override_and_errors(comm, monkeypatch):
    x = vector(comm.rank, 50)
    monkeypatch.setenv(ENV_NODE_SIZE, "1")
    y = allreduce(x, "qsgd:levels=4", comm=comm, collective="hier", seed=2)
    z = allreduce(x, "qsgd:levels=4", comm=comm, collective="hier", node_size=1, seed=2)
    assert np.array_equal(y, z)
    monkeypatch.setenv(ENV_NODE_SIZE, "zero")
    with pytest.raises(ValueError, match=ENV_NODE_SIZE):
        allreduce(x, "qsgd:levels=4", comm=comm, collective="hier")
    monkeypatch.delenv(ENV_NODE_SIZE)
    if comm.size > 1:
        with pytest.raises(ValueError, match="does not divide"):
            allreduce(x, "qsgd:levels=4", comm=comm, collective="hier", node_size=comm.size + 1)
    with pytest.raises(ValueError, match="node_size must be a positive int"):
        allreduce(x, "qsgd:levels=4", comm=comm, collective="hier", node_size=0)
    bad = x.copy()
    if comm.rank == 0:
        bad[0] = np.inf
    for L in node_sizes(comm):
        with pytest.raises(ValueError, match=r"could not encode|non-finite"):
            allreduce(bad, "qsgd:levels=4", comm=comm, collective="hier", node_size=L)
    assert same_on_all_ranks(comm, allreduce(x, "qsgd:levels=4", comm=comm, collective="hier"))


def _lib(comm):
    from ecmpi.comm import library_comm

    return library_comm(comm)


def _compressor(spec):
    import ecmpi

    return ecmpi.compressor(spec)
