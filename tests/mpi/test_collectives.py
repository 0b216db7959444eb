"""Compressed collectives under real MPI; every test passes for any number of ranks."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from mpi4py import MPI

import ecmpi
from ecmpi.comm import CollectiveFeedback, CommStats, allreduce, library_comm
from ecmpi.comm.common import chunk_bounds
from ecmpi.comm.ring import segments
from ecmpi.comm.sra import sra_nbytes

NAMES = ["allgather", "sra", "ring", "ps"]
EPS32 = float(np.finfo(np.float32).eps)
# parameters for compressors whose defaults would make a tiny test vector trivial
SPECS = {
    "qsgd": "qsgd:levels=4,bucket=64",
    "terngrad": "terngrad:bucket=64",
    "sign": "sign:bucket=64",
    "topk": "topk:ratio=0.1",
    "randk": "randk:ratio=0.1",
}
COLLECTIVE_CODECS = ["none", "fp16", "bf16", "qsgd", "sign", "terngrad", "topk", "randk"]


def compressors() -> list[str]:
    have = set(ecmpi.available())
    return [SPECS.get(n, n) for n in COLLECTIVE_CODECS if n in have]


def local_vector(comm, d: int, dtype=np.float32, salt: int = 0) -> np.ndarray:
    rng = np.random.default_rng([salt, comm.rank, d])
    return rng.standard_normal(d).astype(dtype)


def mpi_sum(comm, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    comm.Allreduce(x, out, op=MPI.SUM)
    return out


def same_on_all_ranks(comm, y: np.ndarray) -> bool:
    digest = hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest()
    return len(set(comm.allgather(digest))) == 1


@pytest.mark.parametrize("collective", NAMES)
@pytest.mark.parametrize("d", [1, 3, 4099])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_none_equals_mpi_sum(comm, collective, d, dtype):
    x = local_vector(comm, d, dtype)
    ref = mpi_sum(comm, x)
    y = allreduce(x, "none", comm=comm, collective=collective, segment=64)
    assert y.dtype == x.dtype and y.shape == x.shape
    # two summation orders of P terms differ by at most 2(P-1) eps sum|x_i| per entry
    bound = 2 * max(comm.size - 1, 1) * np.finfo(dtype).eps * mpi_sum(comm, np.abs(x))
    assert np.all(np.abs(y - ref) <= bound)
    assert same_on_all_ranks(comm, y)


@pytest.mark.parametrize("collective", NAMES)
@pytest.mark.parametrize("spec", compressors())
def test_bitwise_identical_on_all_ranks(comm, collective, spec):
    for d in (3, 777):
        x = local_vector(comm, d, salt=1)
        fb = CollectiveFeedback()
        for step in range(2):
            y = allreduce(
                x,
                spec,
                comm=comm,
                collective=collective,
                seed=(5, step),
                feedback=fb,
                average=True,
                segment=100,
            )
            assert np.all(np.isfinite(y))
            assert same_on_all_ranks(comm, y)


@pytest.mark.parametrize("collective", NAMES)
@pytest.mark.parametrize("spec", compressors())
def test_compressed_result_is_close_to_the_sum(comm, collective, spec):
    """Every compressor's reduced vector is within its own error of the exact mean."""
    c = ecmpi.compressor(spec)
    d = 512
    x = local_vector(comm, d, salt=2)
    ref = mpi_sum(comm, x) / comm.size
    y = allreduce(x, c, comm=comm, collective=collective, average=True, seed=3, segment=200)
    err = np.linalg.norm(y - ref)
    # each compression keeps ||C(v) - v|| <= ||v|| (contractions) or, for the unbiased
    # quantizers, far below ||v|| + ||C(v)||; the chain has at most P compressions of
    # partial sums, each bounded by the norm of the sum of all |x_r|
    total = np.linalg.norm(mpi_sum(comm, np.abs(x)))
    assert err <= 3 * comm.size * total
    if c.is_identity or spec in ("fp16", "bf16"):
        assert err <= 2 * comm.size * 2.0**-7 * total


@pytest.mark.parametrize("collective", NAMES)
def test_average_is_sum_over_p(comm, collective):
    x = local_vector(comm, 1001)
    s = allreduce(x, "none", comm=comm, collective=collective)
    m = allreduce(x, "none", comm=comm, collective=collective, average=True)
    assert np.array_equal(m, s / np.float32(comm.size))


def _wire(c, n):
    return c.wire_nbytes(n, np.float32) if n else 0


@pytest.mark.parametrize("spec", ["none", "fp16", "bf16"])
@pytest.mark.parametrize("d", [2, 1001, 5000])
def test_byte_counts_equal_formulas(comm, spec, d):
    c = ecmpi.compressor(spec)
    P, r = comm.size, comm.rank
    x = local_vector(comm, d)
    bounds = chunk_bounds(d, P)
    seg = 300
    for collective in NAMES:
        st = CommStats()
        allreduce(x, c, comm=comm, collective=collective, stats=st, segment=seg)
        last = st.last
        assert last.calls == 1 and st.calls == 1
        if collective == "allgather":
            sent = recv = (P - 1) * _wire(c, d)
            msgs = P - 1
        elif collective == "sra":
            sent = recv = sra_nbytes(c, d, P, r)
            assert sent == sum(_wire(c, b - a) for j, (a, b) in enumerate(bounds) if j != r) + (
                P - 1
            ) * _wire(c, bounds[r][1] - bounds[r][0])
            msgs = None
        elif collective == "ring":

            def chunk_bytes(j):
                return sum(_wire(c, b - a) for a, b in segments(*bounds[j], seg))

            sent = sum(chunk_bytes((r - s - 1) % P) for s in range(P - 1))
            sent += sum(chunk_bytes((r - t) % P) for t in range(P - 1))
            recv = sum(chunk_bytes((r - s - 2) % P) for s in range(P - 1))
            recv += sum(chunk_bytes((r - t - 1) % P) for t in range(P - 1))
            msgs = sum(len(segments(*bounds[(r - s - 1) % P], seg)) for s in range(P - 1))
            msgs += sum(len(segments(*bounds[(r - t) % P], seg)) for t in range(P - 1))
        else:
            w = _wire(c, d)
            if r == 0:
                sent, recv, msgs = (P - 1) * w, (P - 1) * w, P - 1
                assert (last.bytes_up, last.bytes_down) == ((P - 1) * w, (P - 1) * w)
            else:
                sent, recv, msgs = w, w, 1
                assert (last.bytes_up, last.bytes_down) == (w, w)
        assert (last.bytes_sent, last.bytes_received) == (sent, recv), collective
        if msgs is not None:
            assert last.messages == msgs, collective
        # what one rank sends, another receives
        assert (
            mpi_sum(comm, np.array([sent], np.int64))[0]
            == mpi_sum(comm, np.array([recv], np.int64))[0]
        )


@pytest.mark.parametrize("collective", NAMES)
def test_subcommunicator(comm, collective):
    sub = comm.Split(color=comm.rank % 2, key=comm.rank)
    try:
        x = local_vector(sub, 333, salt=comm.rank % 2)
        ref = mpi_sum(sub, x)
        # a pending receive on the user's communicator must not see ecmpi traffic
        probe = np.zeros(1, np.uint8)
        req = sub.Irecv(probe, source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG)
        y = allreduce(x, "none", comm=sub, collective=collective)
        assert not req.Test()
        req.Cancel()
        req.Wait()
        bound = 2 * max(sub.size - 1, 1) * EPS32 * mpi_sum(sub, np.abs(x))
        assert np.all(np.abs(y - ref) <= bound)
        lc = library_comm(sub)
        assert lc is library_comm(sub) and lc != sub and library_comm(lc) is lc
        assert MPI.Comm.Compare(lc, sub) == MPI.CONGRUENT
    finally:
        sub.Free()


def test_default_comm_is_a_duplicate_of_world(comm):
    lc = library_comm()
    assert lc is library_comm(MPI.COMM_WORLD)
    assert MPI.Comm.Compare(lc, MPI.COMM_WORLD) == MPI.CONGRUENT
    x = local_vector(comm, 10)
    assert np.array_equal(allreduce(x, "none"), allreduce(x, "none", comm=MPI.COMM_WORLD))


def _raises_everywhere(comm, match, **kw_by_rank):
    with pytest.raises((ValueError, TypeError), match=match):
        allreduce(**kw_by_rank)


@pytest.mark.parametrize("collective", NAMES)
def test_mismatched_arguments_raise_on_every_rank(comm, collective):
    r, last = comm.rank, comm.size - 1
    base = {"comm": comm, "collective": collective}
    x = local_vector(comm, 100)
    if comm.size > 1:
        cases = [
            ("length", {"x": x if r != last else x[:99]}),
            ("dtype", {"x": x if r != last else x.astype(np.float64)}),
            ("compressor", {"x": x, "compressor": "fp16" if r != last else "bf16"}),
            ("average", {"x": x, "average": r == last}),
            ("seed", {"x": x, "seed": (1, 2) if r != last else (1, 3)}),
        ]
        for what, kw in cases:
            kw.setdefault("compressor", "none")
            with pytest.raises(ValueError, match=rf"disagree.*{what}"):
                allreduce(**base, **kw)
        # an invalid argument on one rank: that rank names it, the others are told
        with pytest.raises(ValueError, match="1-D" if r == last else "valid arguments"):
            allreduce(x if r != last else x.reshape(10, 10), "none", **base)
        other = NAMES[(NAMES.index(collective) + 1) % len(NAMES)]
        with pytest.raises(ValueError, match=r"disagree.*collective \(min"):
            allreduce(x, "none", comm=comm, collective=collective if r != last else other)
    # local errors, the same on every rank
    with pytest.raises(TypeError, match="unsupported dtype int32"):
        allreduce(x.astype(np.int32), "none", **base)
    with pytest.raises(ValueError, match="empty"):
        allreduce(x[:0], "none", **base)
    with pytest.raises(ValueError, match="unknown collective 'tree'; choose one of allgather, sra"):
        allreduce(x, "none", comm=comm, collective="tree")
    with pytest.raises(TypeError, match="CollectiveFeedback"):
        allreduce(x, "none", feedback={}, **base)
    # the communicator still works afterwards
    assert same_on_all_ranks(comm, allreduce(x, "fp16", **base))


def test_deprecated_algorithm_keyword(comm):
    """``algorithm=`` still selects the collective, warns, and gives the same bits."""
    x = local_vector(comm, 300)
    for name in NAMES:
        want = allreduce(x, "bf16", comm=comm, collective=name, seed=5, segment=64)
        with pytest.warns(DeprecationWarning, match="use the keyword 'collective'"):
            got = allreduce(x, "bf16", comm=comm, algorithm=name, seed=5, segment=64)
        assert np.array_equal(got, want) and same_on_all_ranks(comm, got)
    with pytest.raises(TypeError, match="both 'collective' and its deprecated alias"):
        allreduce(x, "none", comm=comm, collective="sra", algorithm="sra")
    if comm.size > 1:  # both keywords on one rank only: it names them, the others are told
        r, last = comm.rank, comm.size - 1
        kw = {"algorithm": "sra"} if r == last else {}
        with pytest.raises((TypeError, ValueError), match="both" if r == last else "valid"):
            allreduce(x, "none", comm=comm, collective="sra", **kw)


def test_feedback_length_change_raises(comm):
    fb = CollectiveFeedback()
    x = local_vector(comm, 50)
    allreduce(x, "bf16", comm=comm, collective="sra", feedback=fb)
    assert fb.worker.shape == (50,)
    with pytest.raises(ValueError, match="residual has length 50"):
        allreduce(x[:40], "bf16", comm=comm, collective="sra", feedback=fb)


@pytest.mark.parametrize("collective", NAMES)
def test_variable_size_path_gives_the_same_bits(comm, collective):
    fixed = ecmpi.compressor("bf16")
    varying = ecmpi.compressor("bf16")
    varying.fixed_size = False  # forces size exchange / Allgatherv / probed receives
    x = local_vector(comm, 517)
    a = allreduce(x, fixed, comm=comm, collective=collective, segment=100, seed=1)
    b = allreduce(x, varying, comm=comm, collective=collective, segment=100, seed=1)
    assert np.array_equal(a, b)


def test_transport_with_rank_dependent_sizes(comm):
    from ecmpi.comm.transport import Messages, allgather_bytes, bcast_bytes, gather_bytes

    st = CommStats()
    P, r = comm.size, comm.rank
    mine = np.full(r + 1, r, dtype=np.uint8)
    got = allgather_bytes(mine, comm, st)
    assert [b.tolist() for b in got] == [[i] * (i + 1) for i in range(P)]
    # point to point: receives posted with their sizes, or probed when waited on
    link = Messages(comm, st)
    posted = [link.post(i, i + r + 1, 7) for i in range(P)]
    probed = [link.post(i, None, 8) for i in range(P)]
    assert posted[r] is None and probed[r] is None
    before = st.bytes_sent
    for j in (j for j in range(P) if j != r):
        for tag in (7, 8):
            link.send(np.full(r + j + 1, 10 * r + j, np.uint8), j, tag)
    assert st.bytes_sent - before == 2 * sum(r + j + 1 for j in range(P) if j != r)
    others = [i for i in range(P) if i != r]
    while others:
        i = link.wait_any(posted, others)
        others.remove(i)
        assert link.wait(posted[i]).tolist() == [10 * i + r] * (i + r + 1)
        assert link.wait(probed[i]).tolist() == [10 * i + r] * (i + r + 1)
    link.finish()
    assert not link.sends
    root = P - 1
    got = gather_bytes(mine, comm, root, st)
    if r == root:
        assert [b.tolist() for b in got] == [[i] * (i + 1) for i in range(P)]
    else:
        assert got is None
    out = bcast_bytes(np.arange(7, dtype=np.uint8) if r == root else None, comm, root, st)
    assert out.tolist() == list(range(7))


def test_ps_helpers(comm):
    from ecmpi.comm import ps_broadcast, ps_exchange, ps_gather

    c = ecmpi.compressor("fp16")
    P, root = comm.size, comm.size // 2
    x = local_vector(comm, 64)
    p = c.encode(x, seed=2, rank=comm.rank)
    st = CommStats()
    got = ps_gather(p, comm, root, stats=st)
    if comm.rank == root:
        assert len(got) == P
        for i, q in enumerate(got):
            xi = np.random.default_rng([0, i, 64]).standard_normal(64).astype(np.float32)
            assert q == c.encode(xi, seed=2, rank=i)
        assert st.bytes_up == (P - 1) * p.nbytes
    else:
        assert got is None and st.bytes_up == p.nbytes
    b = ps_broadcast(p if comm.rank == root else None, comm, root, stats=st)
    assert same_on_all_ranks(comm, np.frombuffer(b.to_bytes(), np.uint8))

    def server(payloads):
        acc = np.zeros(64, np.float32)
        for q in payloads:
            c.decode_add(q, acc)
        return c.encode(acc, seed=3)

    y = c.decode(ps_exchange(p, server, comm=comm, root=root))
    z = allreduce(x, "fp16", comm=comm, collective="ps", root=root, seed=0)
    assert same_on_all_ranks(comm, y)
    assert np.abs(y - z).max() <= 2 * 2.0**-10 * np.abs(mpi_sum(comm, np.abs(x))).max()


def test_ps_full_precision_downlink(comm):
    x = local_vector(comm, 300)
    c = ecmpi.compressor("fp16")
    y = allreduce(x, c, comm=comm, collective="ps", downlink="none", average=True)
    exact = np.zeros(300, np.float32)
    for i in range(comm.size):
        xi = np.random.default_rng([0, i, 300]).standard_normal(300).astype(np.float32)
        exact += c.roundtrip(xi)
    assert np.array_equal(y, exact / np.float32(comm.size))


def test_stats_accumulate_over_calls(comm):
    st = CommStats()
    x = local_vector(comm, 100)
    allreduce(x, "bf16", comm=comm, collective="allgather", stats=st)
    first = st.last
    allreduce(x, "bf16", comm=comm, collective="allgather", stats=st)
    assert st.calls == 2
    assert st.bytes_sent == 2 * first.bytes_sent
    assert st.encode_seconds >= first.encode_seconds > 0
    assert st.communicate_seconds > 0 and st.decode_seconds > 0


def test_check_off_gives_the_same_result(comm):
    x = local_vector(comm, 100)
    for collective in NAMES:
        a = allreduce(x, "bf16", comm=comm, collective=collective, seed=4)
        b = allreduce(x, "bf16", comm=comm, collective=collective, seed=4, check=False)
        assert np.array_equal(a, b)


@pytest.mark.parametrize("collective", NAMES)
@pytest.mark.parametrize("d", [1, 3, 4099])
def test_none_goes_to_mpi_allreduce_and_counts_the_collectives_bytes(comm, collective, d):
    """Without feedback ``none`` runs MPI_Allreduce: MPI's exact sum, bytes as the collective's
    own schedule records them (forced here by error feedback, which keeps the schedule)."""
    x = local_vector(comm, d, salt=7)
    fast, slow = CommStats(), CommStats()
    y = allreduce(x, "none", comm=comm, collective=collective, segment=64, stats=fast)
    z = allreduce(
        x,
        "none",
        comm=comm,
        collective=collective,
        segment=64,
        stats=slow,
        feedback=CollectiveFeedback(),
    )
    assert np.array_equal(y, mpi_sum(comm, x))
    assert same_on_all_ranks(comm, y) and same_on_all_ranks(comm, z)
    for k in ("bytes_sent", "bytes_received", "messages", "bytes_up", "bytes_down"):
        assert getattr(fast.last, k) == getattr(slow.last, k), k
    assert fast.last.encode_seconds == 0 and slow.last.encode_seconds > 0


@pytest.mark.parametrize("spec", ["none", "qsgd:levels=2,bucket=64"])
@pytest.mark.parametrize("collective", ["sra", "ring"])
def test_out_receives_the_same_bits(comm, spec, collective):
    """``out=`` (a reused buffer, or x itself) holds exactly what a fresh result holds."""
    x = local_vector(comm, 1001, salt=3)
    kw = dict(comm=comm, collective=collective, seed=(7, 1), average=True)
    fresh = allreduce(x, spec, **kw)
    buf = np.full_like(x, np.nan)
    assert allreduce(x, spec, out=buf, **kw) is buf and np.array_equal(buf, fresh)
    y = x.copy()
    assert allreduce(y, spec, out=y, **kw) is y and np.array_equal(y, fresh)


def test_out_is_checked_on_every_rank(comm):
    x = local_vector(comm, 64)
    with pytest.raises(ValueError, match="dtype"):
        allreduce(x, "none", comm=comm, out=np.empty(64, np.float64))
    with pytest.raises(ValueError, match="shape"):
        allreduce(x, "none", comm=comm, out=np.empty(63, np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        allreduce(x, "none", comm=comm, out=np.empty(128, np.float32)[::2])
    both = np.concatenate([x, x])
    with pytest.raises(ValueError, match="overlaps x"):
        allreduce(both[:64], "none", comm=comm, out=both[32:96])
    with pytest.raises(TypeError, match="out must be a ndarray"):
        allreduce(x, "none", comm=comm, out=[0.0] * 64)
    bad = x.copy()
    if comm.rank == 0:
        bad[0] = np.inf
    keep = bad.copy()
    with pytest.raises(ValueError, match="could not encode its input"):
        allreduce(bad, "none", comm=comm, collective="sra", out=bad)
    assert np.array_equal(bad, keep, equal_nan=True)  # in place: x untouched on failure
