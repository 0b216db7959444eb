"""One rank's bad value never hangs a collective: every rank raises the same ValueError.

Before in-band failure markers, the rank that could not encode raised alone and
the others waited for its payload until killed; each test here carries a short
timeout so such a hang fails fast. Every test passes for any number of ranks.
"""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from ecmpi.comm import allreduce

NAMES = ["allgather", "sra", "ring", "ps"]

#: (compressor, dtype, value placed on the last rank)
BAD = [
    ("none", np.float64, np.nan),
    ("none", np.float32, np.inf),
    ("fp16", np.float32, 1e5),
    ("bf16", np.float64, 1e39),
    ("qsgd:levels=4,bucket=64", np.float64, 1e39),
    ("qsgd:levels=4,bucket=64", np.float64, 1e200),
    ("topk:k=5", np.float32, np.nan),
]


@pytest.fixture
def comm():
    return MPI.COMM_WORLD


def _raises_everywhere(comm, run, match: str) -> str:
    """Run ``run()``, expect ValueError matching ``match`` on every rank, same text on all."""
    with pytest.raises(ValueError, match=match) as info:
        run()
    texts = comm.allgather(str(info.value))
    assert len(set(texts)) == 1, texts
    return texts[0]


def _still_works(comm, collective: str) -> None:
    """The library communicator holds no stale message: the next call is exact."""
    x = np.full(33, float(comm.rank + 1))
    y = allreduce(x, "none", comm=comm, collective=collective, segment=8)
    assert np.all(y == comm.size * (comm.size + 1) / 2)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("collective", NAMES)
@pytest.mark.parametrize("spec,dtype,value", BAD, ids=[f"{s}-{v}" for s, _, v in BAD])
@pytest.mark.parametrize("d", [7, 300])
def test_bad_value_on_one_rank_raises_on_every_rank(comm, collective, spec, dtype, value, d):
    bad = comm.size - 1
    x = np.ones(d, dtype=dtype)
    if comm.rank == bad:
        x[d // 2] = value
    text = _raises_everywhere(
        comm,
        lambda: allreduce(x, spec, comm=comm, collective=collective, segment=4),
        match=f"allreduce \\({collective}\\) failed on rank {bad}: rank {bad} could not encode",
    )
    if collective != "ring":  # the ring adds its input to a received partial sum first
        assert "could not encode its input" in text
    _still_works(comm, collective)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("collective", NAMES)
def test_bad_values_on_several_ranks_are_all_named(comm, collective):
    x = np.ones(50)
    x[comm.rank] = np.nan
    ranks = ", ".join(str(r) for r in range(comm.size))
    who = "rank 0" if comm.size == 1 else f"ranks {ranks}"
    if collective == "ring":  # the first failure stops the encoding around the ring
        who = "ranks? [0-9, ]+"
    _raises_everywhere(
        comm,
        lambda: allreduce(x, "none", comm=comm, collective=collective, segment=4),
        match=f"failed on {who}: ",
    )
    _still_works(comm, collective)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("collective", NAMES)
@pytest.mark.parametrize("spec,value", [("none", 3e38), ("fp16", 4e4)])
def test_sum_that_overflows_raises_on_every_rank(comm, collective, spec, value):
    """Finite inputs whose sum leaves the representable range (float32, or fp16 on re-encoding)."""
    if comm.size == 1:
        pytest.skip("a sum of one vector cannot overflow")
    x = np.full(40, value, dtype=np.float32)
    run = lambda: allreduce(x, spec, comm=comm, collective=collective, segment=8)  # noqa: E731
    if spec == "fp16" and collective == "allgather":
        # decoded and summed in float32, never re-encoded: 8e4 is representable
        assert np.all(run() == np.float32(value) * comm.size)
        return
    _raises_everywhere(comm, run, match="overflow|exceeds|NaN/Inf")
    _still_works(comm, collective)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("collective", NAMES)
def test_averaged_call_after_failure_is_exact(comm, collective):
    """A failure leaves error-feedback-free calls unaffected (nothing stays queued)."""
    x = np.ones(20)
    if comm.rank == 0:
        x[3] = np.inf
    with pytest.raises(ValueError):
        allreduce(x, "qsgd:levels=4,bucket=8", comm=comm, collective=collective, segment=4)
    y = allreduce(np.ones(20), "none", comm=comm, collective=collective, average=True)
    assert np.all(y == 1.0)


@pytest.mark.timeout(60)
def test_ps_helpers_carry_one_ranks_encode_error(comm):
    import ecmpi
    from ecmpi.comm import ps_exchange
    from ecmpi.comm.failures import Failures

    c = ecmpi.compressor("qsgd:levels=4")
    bad = comm.size - 1
    x = np.ones(40)
    if comm.rank == bad:
        x[3] = np.nan

    def exchange():
        fail = Failures(comm, x, "ps", kind="parameter-server exchange")
        p = fail.run("encode its input", c.encode, x, seed=(1,), rank=comm.rank)
        return ps_exchange(p, lambda got: got[0], comm=comm, failures=fail)

    _raises_everywhere(
        comm,
        exchange,
        match=f"parameter-server exchange \\(ps\\) failed on rank {bad}: "
        f"rank {bad} could not encode its input",
    )
    _still_works(comm, "ps")


@pytest.mark.timeout(60)
def test_qesgd_step_with_one_ranks_encode_error_raises_on_every_rank(comm):
    import ecmpi
    from ecmpi.algorithms import RunContext, get
    from ecmpi.problems import make

    prob = make("logreg", "synthetic:n=60,d=10,seed=2", comm=comm)
    ctx = RunContext(
        problem=prob,
        comm=comm,
        compressor=ecmpi.compressor("qsgd:levels=4"),
        collective="ps",
        seed=5,
        lr=0.5,
        batch_size=4,
        params={"stage_length": 3},
    )
    alg = get("qesgd")(ctx)
    alg.step(0)
    bad = comm.size - 1
    if comm.rank == bad:
        alg._w[2] = np.nan  # its update cannot be encoded
    _raises_everywhere(
        comm,
        lambda: alg.step(1),
        match=f"parameter-server exchange \\(qesgd\\) failed on rank {bad}: "
        f"rank {bad} could not encode its update",
    )
    _still_works(comm, "ps")
