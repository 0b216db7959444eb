"""qsgd coding=elias through the collectives: same bits as fixed width, real bytes counted."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _helpers import shared_tmpdir

import ecmpi
from ecmpi.comm import CommStats, allreduce
from ecmpi.log.reader import open_log

ELIAS = "qsgd:levels=1,bucket=64,coding=elias"
FIXED = "qsgd:levels=1,bucket=64"
D = 1001


def vector(rank: int, d: int = D) -> np.ndarray:
    return np.random.default_rng([7, rank, d]).standard_normal(d).astype(np.float32)


def same_on_all_ranks(comm, y: np.ndarray) -> bool:
    digest = hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest()
    return len(set(comm.allgather(digest))) == 1


@pytest.mark.parametrize("collective", ["allgather", "ps", "sra", "ring"])
def test_same_bits_as_fixed_width_on_every_rank(comm, collective):
    x = vector(comm.rank)
    kw = {"comm": comm, "collective": collective, "seed": 5, "average": True}
    if collective == "ring":
        kw["segment"] = 300
    y = allreduce(x, ELIAS, **kw)
    assert same_on_all_ranks(comm, y)
    assert np.array_equal(y, allreduce(x, FIXED, **kw))


def test_allgather_counts_the_real_payload_sizes(comm):
    P, r = comm.size, comm.rank
    c = ecmpi.compressor(ELIAS)
    st = CommStats()
    y = allreduce(vector(r), c, comm=comm, collective="allgather", seed=5, stats=st)
    # the collective's payload of rank i: seed (5, phase 0, chunk 0), worker i
    payloads = [c.encode(vector(i), seed=(5, 0, 0), rank=i) for i in range(P)]
    sizes = [p.nbytes for p in payloads]
    assert comm.allgather(sizes[r]) == sizes
    assert st.bytes_sent == (P - 1) * sizes[r]
    assert st.bytes_received == sum(sizes) - sizes[r]
    # b = 64, s = 1: about 10% nonzero levels at ~8.6 bits each, against 2 bits per entry
    assert sizes[r] < 0.75 * ecmpi.compressor(FIXED).wire_nbytes(D)
    acc = np.zeros(D, np.float32)
    for p in payloads:
        c.decode_add(p, acc)
    assert np.array_equal(y, acc)


def test_ps_counts_uplink_and_downlink_sizes(comm):
    P, r, root = comm.size, comm.rank, comm.size - 1
    c = ecmpi.compressor(ELIAS)
    st = CommStats()
    y = allreduce(
        vector(r), c, comm=comm, collective="ps", seed=5, average=True, root=root, stats=st
    )
    up = [c.encode(vector(i), seed=(5, 3, 0), rank=i) for i in range(P)]
    acc = np.zeros(D, np.float32)
    for p in up:
        c.decode_add(p, acc)
    acc /= P
    down = c.encode(acc, seed=(5, 3, 0), rank=P + root)
    assert np.array_equal(y, c.decode(down))
    if r == root:
        assert st.bytes_up == st.bytes_received == sum(p.nbytes for p in up) - up[r].nbytes
        assert st.bytes_down == st.bytes_sent == (P - 1) * down.nbytes
    else:
        assert st.bytes_up == st.bytes_sent == up[r].nbytes
        assert st.bytes_down == st.bytes_received == down.nbytes


def test_run_logs_the_elias_bits(comm):
    """``ecmpi run qsgd --compressor qsgd:levels=1,bucket=512,coding=elias``: the same
    iterates as fixed width, and bits_up from the real (smaller) payloads."""
    where = Path(shared_tmpdir(comm)) / f"elias_np{comm.size}"
    if comm.rank == 0:
        where.mkdir(parents=True, exist_ok=True)
    comm.Barrier()
    logs = {}
    for coding in ("fixed", "elias"):
        out = where / f"{coding}.h5"
        ecmpi.run(
            "qsgd",
            comm=comm,
            problem="lsq",
            dataset="synthetic:n=100,d=1024",
            steps=4,
            seed=1,
            quiet=True,
            overwrite=True,
            compressor=f"qsgd:levels=1,bucket=512,coding={coding}",
            out=out,
        )
        logs[coding] = out
    if comm.rank == 0:
        a, b = open_log(logs["fixed"]), open_log(logs["elias"])
        assert a.status == b.status == "completed"
        np.testing.assert_array_equal(a.x_final, b.x_final)
        np.testing.assert_array_equal(a.trajectory["loss"], b.trajectory["loss"])
        up_fixed, up_elias = a.trajectory["bits_up"][-1], b.trajectory["bits_up"][-1]
        if comm.size == 1:  # nothing crosses a wire
            assert up_fixed == up_elias == 0
        else:
            # fixed: 48 + 4*2 + 1024/4 bytes per payload; elias: ~0.35 bits per entry
            assert up_fixed == 4 * 8 * (48 + 8 + 256) * (comm.size - 1)
            assert up_elias < 0.4 * up_fixed


def test_sra_int_refuses_elias_and_hier_runs_it_through_sra(comm):
    x = vector(comm.rank)
    with pytest.raises(ValueError, match=r"fixed-width codes.*allgather, sra, ring or ps"):
        allreduce(x, ELIAS, comm=comm, collective="sra-int", seed=5)
    kw = {"comm": comm, "collective": "hier", "seed": 5, "node_size": 1}
    y = allreduce(x, ELIAS, **kw)
    assert same_on_all_ranks(comm, y)
    if comm.size == 1:  # a single node: nothing is compressed
        assert np.array_equal(y, x)
    else:  # one rank per node: the inter-node phase is sra over all ranks, seed (5, 6, 0)
        flat = allreduce(x, ELIAS, comm=comm, collective="sra", seed=(5, 6, 0))
        assert np.array_equal(y, flat)
