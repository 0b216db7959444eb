"""Serial tests of the collectives' building blocks (no mpiexec needed)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecmpi import _backend, compressor
from ecmpi.comm import CollectiveFeedback, CommStats
from ecmpi.comm.common import check_root, chunk_bounds, seed_parts
from ecmpi.comm.ring import segments


@given(st.integers(0, 10_000), st.integers(1, 64))
def test_chunk_bounds_cover_in_order_and_balance(n, parts):
    b = chunk_bounds(n, parts)
    assert len(b) == parts and b[0][0] == 0 and b[-1][1] == n
    assert all(b[i][1] == b[i + 1][0] for i in range(parts - 1))
    lengths = [hi - lo for lo, hi in b]
    assert max(lengths) - min(lengths) <= 1 and sum(lengths) == n


def test_chunk_bounds_rejects_no_parts():
    with pytest.raises(ValueError, match="positive"):
        chunk_bounds(5, 0)


@given(st.integers(0, 1000), st.integers(0, 1000), st.integers(1, 300))
def test_segments_tile_the_range(a, length, seg):
    s = segments(a, a + length, seg)
    assert sum(hi - lo for lo, hi in s) == length
    assert all(0 < hi - lo <= seg for lo, hi in s)
    assert all(s[i][1] == s[i + 1][0] for i in range(len(s) - 1))


def test_seed_parts():
    assert seed_parts(7) == (7,)
    assert seed_parts((1, 2, 3)) == (1, 2, 3)
    with pytest.raises(TypeError, match="bool"):
        seed_parts(True)
    with pytest.raises(ValueError, match="non-negative"):
        seed_parts((1, -2))
    with pytest.raises(ValueError, match="non-negative"):
        seed_parts(())


def test_commstats_arithmetic_and_reset():
    a = CommStats(bytes_sent=10, bytes_received=4, messages=2, encode_seconds=0.5)
    b = CommStats(bytes_sent=1, bytes_up=3, calls=1)
    c = a + b
    assert (c.bytes_sent, c.bytes_received, c.messages, c.bytes_up, c.calls) == (11, 4, 2, 3, 1)
    assert c.encode_seconds == 0.5
    total = CommStats()
    total.merge_call(a)
    total.merge_call(b)
    assert total.calls == 2 and total.bytes_sent == 11 and total.last is b
    d = total.as_dict()
    assert "last" not in d and d["bytes_sent"] == 11
    json.dumps(d)
    total.reset()
    assert total.as_dict() == CommStats().as_dict() and total.last is None


def test_commstats_timer():
    s = CommStats()
    with s.timer("decode"):
        sum(range(10_000))
    assert s.decode_seconds > 0 and s.encode_seconds == 0
    assert s.seconds == s.decode_seconds
    with pytest.raises(ValueError, match="unknown phase"), s.timer("compute"):
        pass


def test_collective_feedback_lazy_and_strict():
    fb = CollectiveFeedback()
    assert fb.worker is None
    x = np.ones(5, np.float32)
    h = fb.residual("worker", 5, x)
    assert h.dtype == np.float32 and not h.any()
    h += 1
    assert fb.residual("worker", 5, x) is h
    with pytest.raises(ValueError, match="length 5"):
        fb.residual("worker", 6, x)
    with pytest.raises(ValueError, match="dtype float32"):
        fb.residual("worker", 5, x.astype(np.float64))
    saved = fb.state_dict()
    fb2 = CollectiveFeedback()
    fb2.load_state_dict(saved)
    assert np.array_equal(fb2.worker, h)
    fb.reset()
    assert fb.worker is None


def test_gpu_aware_override(monkeypatch):
    monkeypatch.setenv(_backend.GPU_AWARE_ENV, "1")
    assert _backend.gpu_aware_mpi() and _backend.gpu_mpi_status()["path"] == "device buffers"
    monkeypatch.setenv(_backend.GPU_AWARE_ENV, "0")
    assert not _backend.gpu_aware_mpi()
    monkeypatch.setenv(_backend.GPU_AWARE_ENV, "yes")
    with pytest.raises(ValueError, match="must be 0 or 1"):
        _backend.gpu_aware_mpi()


def test_gpu_aware_detection_names_its_source(monkeypatch):
    monkeypatch.delenv(_backend.GPU_AWARE_ENV, raising=False)
    status = _backend.gpu_mpi_status()
    assert isinstance(status["gpu_aware"], bool) and status["source"]
    # the MPICH and Open MPI wheels are not CUDA-aware
    assert status["path"] == ("device buffers" if status["gpu_aware"] else "host staging")


def test_host_buffers_pass_through():
    a = np.arange(4, dtype=np.uint8)
    assert _backend.mpi_buffer(a) is a
    assert _backend.mpi_empty(3).shape == (3,)
    assert _backend.from_mpi_buffer(a) is a
    _backend.synchronize(a)  # no-op for host arrays


def test_single_process_allreduce_and_errors():
    from mpi4py import MPI

    import ecmpi
    from ecmpi.comm import allreduce, library_comm

    x = np.arange(10, dtype=np.float32)
    for alg in ("allgather", "sra", "ring", "ps"):
        assert np.array_equal(allreduce(x, "none", comm=MPI.COMM_SELF, collective=alg), x)
    with pytest.raises(TypeError, match="mpi4py communicator"):
        allreduce(x, "none", comm=object())
    with pytest.raises(TypeError, match="NumPy or CuPy array"):
        allreduce([1.0, 2.0], "none", comm=MPI.COMM_SELF)
    with pytest.raises(ValueError, match="unknown compressor"):
        allreduce(x, "zip", comm=MPI.COMM_SELF)
    with pytest.raises(ValueError, match="downlink applies"):
        allreduce(x, "none", comm=MPI.COMM_SELF, downlink="none")
    with pytest.raises(ValueError, match="segment"):
        allreduce(x, "none", comm=MPI.COMM_SELF, collective="ring", segment=0)
    with pytest.raises(ValueError, match="root 3 is not a rank"):
        allreduce(x, "none", comm=MPI.COMM_SELF, collective="ps", root=3)
    with pytest.raises(TypeError, match="CommStats"):
        allreduce(x, "none", comm=MPI.COMM_SELF, stats={})
    with pytest.raises(ValueError, match="1-D"):
        allreduce(x.reshape(2, 5), "none", comm=MPI.COMM_SELF, check=False)
    with pytest.raises(TypeError, match="root"):
        check_root(MPI.COMM_SELF, 0.5)
    assert library_comm(MPI.COMM_SELF) is library_comm(MPI.COMM_SELF)
    assert ecmpi.allreduce is allreduce


def test_bench_allreduce_single_rank(tmp_path):
    from ecmpi.bench import add_arguments, main
    from ecmpi.bench import allreduce as bench_mod

    assert bench_mod.parse_size("4K") == 4096 and bench_mod.parse_size("256M") == 256 << 20
    with pytest.raises(ValueError, match="bad size"):
        bench_mod.parse_size("lots")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "b.json"
    args = parser.parse_args(
        [
            "allreduce",
            "--sizes",
            "4K",
            "--compressor",
            "none",
            "--compressor",
            "bf16",
            "--collectives",
            "sra,ps",
            "--iters",
            "1",
            "--pairs",
            "3",
            "--out",
            str(out),
        ]
    )
    assert main(args) == 0
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    assert [r["algorithm"] for r in rows] == ["MPI_Allreduce", "sra", "ps", "sra", "ps"]
    for r in rows:
        assert r["algbw_GBps"] == pytest.approx(4096 / r["seconds"] / 1e9)
        assert r["busbw_GBps"] == 0  # nccl-tests: busbw = algbw * 2(P-1)/P
    assert rows[1]["bytes_sent"] == 0  # one rank sends nothing
    for r in rows[1:]:  # alternating calls: a median ratio within its range
        assert r["pairs"] == 3
        assert 0 < r["speedup_paired_min"] <= r["speedup_paired"] <= r["speedup_paired_max"]
    assert "speedup_paired" not in rows[0]


# -- the registry of collectives ---------------------------------------------------------
def test_registry_lists_the_collectives_with_stable_ids():
    from ecmpi.comm import (
        COLLECTIVES,
        Collective,
        allgather,
        hier,
        ps,
        ring,
        ring_int,
        sra,
        sra_int,
    )

    assert list(COLLECTIVES) == ["allgather", "sra", "ring", "ps", "sra-int", "hier", "ring-int"]
    assert [e.id for e in COLLECTIVES.values()] == [1, 2, 3, 4, 5, 6, 7]  # never reused
    assert all(isinstance(e, Collective) and e.name == k for k, e in COLLECTIVES.items())
    assert COLLECTIVES["allgather"].run is allgather.allgather_allreduce
    assert COLLECTIVES["sra"].run is sra.sra_allreduce
    assert COLLECTIVES["ring"].run is ring.ring_allreduce
    assert COLLECTIVES["ps"].run is ps.ps_allreduce
    assert COLLECTIVES["sra-int"].run is sra_int.sra_int_allreduce
    assert COLLECTIVES["hier"].run is hier.hier_allreduce
    assert COLLECTIVES["ring-int"].run is ring_int.ring_int_allreduce
    assert {k: e.options for k, e in COLLECTIVES.items()} == {
        "allgather": (),
        "sra": (),
        "ring": ("segment",),
        "ps": ("root", "downlink"),
        "sra-int": ("requantize",),
        "hier": ("node_size", "requantize"),
        "ring-int": ("segment", "requantize"),
    }
    assert all(e.counts is not None for e in COLLECTIVES.values())


def test_registry_rejects_taken_names_and_ids():
    from ecmpi.comm.registry import register

    with pytest.raises(ValueError, match="already registered"):
        register("sra", id=99)(lambda *a, **k: None)
    with pytest.raises(ValueError, match="id 2 is taken"):
        register("tree", id=2)(lambda *a, **k: None)
    with pytest.raises(ValueError, match="unknown collective option"):
        register("tree", id=99, options=("fanout",))
    with pytest.raises(ValueError, match="positive int"):
        register("tree", id=0)


def test_registry_is_the_one_source_of_choices_and_defaults():
    from ecmpi.bench import allreduce as bench_allreduce
    from ecmpi.bench import emulate, model
    from ecmpi.comm import COLLECTIVES
    from ecmpi.options import RUN_OPTIONS

    names = tuple(COLLECTIVES)
    assert RUN_OPTIONS["collective"].convert.choices == names
    assert RUN_OPTIONS["collective"].convert("ring") == "ring"
    with pytest.raises(ValueError, match="must be one of allgather, sra, ring, ps"):
        RUN_OPTIONS["collective"].convert("tree")
    assert bench_allreduce.DEFAULT_COLLECTIVES == names
    assert model.MODEL_COLLECTIVES == ("MPI_Allreduce", *names)
    assert emulate.EMULATED_COLLECTIVES == tuple(n for n in names if n != "ps")
    parser = argparse.ArgumentParser()
    bench_allreduce.add_arguments(parser)
    args = parser.parse_args([])
    assert bench_allreduce.parse_collectives(args, bench_allreduce.DEFAULT_COLLECTIVES) == list(
        names
    )


def test_a_registered_collective_is_dispatched_and_benchmarkable():
    """Adding a collective is its module plus the registry entry: nothing else to edit."""
    from mpi4py import MPI

    from ecmpi.bench import allreduce as bench_allreduce
    from ecmpi.comm import COLLECTIVES, allreduce
    from ecmpi.comm.registry import register

    saved = dict(COLLECTIVES)
    seen = {}

    def echo(x, c, comm, *, average, seed, feedback, stats, segment):
        seen.update(segment=segment, seed=seed)
        return x * 2

    try:
        register("echo", id=99, options=("segment",))(echo)
        assert list(COLLECTIVES)[-1] == "echo"
        x = np.arange(4, dtype=np.float32)
        assert np.array_equal(allreduce(x, "bf16", comm=MPI.COMM_SELF, collective="echo"), 2 * x)
        assert seen["segment"] == 1 << 18 and seen["seed"] == (0,)
        args = argparse.Namespace(collectives="echo,sra", algorithms=None)
        assert bench_allreduce.parse_collectives(args, ()) == ["echo", "sra"]
    finally:
        COLLECTIVES.clear()
        COLLECTIVES.update(saved)
    assert "echo" not in COLLECTIVES


def test_unknown_collective_lists_the_registry():
    from mpi4py import MPI

    from ecmpi.bench import allreduce as bench_allreduce
    from ecmpi.comm import allreduce

    x = np.ones(3, dtype=np.float32)
    msg = "unknown collective 'tree'; choose one of allgather, sra, ring, ps"
    for check in (True, False):
        with pytest.raises(ValueError, match=msg):
            allreduce(x, "none", comm=MPI.COMM_SELF, collective="tree", check=check)
    args = argparse.Namespace(collectives="sra,tree", algorithms=None)
    with pytest.raises(
        ValueError,
        match=r"unknown collective\(s\) \['tree'\]; choose from "
        "allgather, sra, ring, ps",
    ):
        bench_allreduce.parse_collectives(args, ())


def test_deprecated_algorithm_keyword_warns_and_matches():
    from mpi4py import MPI

    from ecmpi.comm import COLLECTIVES, CollectiveFeedback, allreduce

    x = np.linspace(-1, 1, 50, dtype=np.float32)
    for name in COLLECTIVES:
        if not COLLECTIVES[name].supports(compressor("sign")):
            continue
        fa, fb = CollectiveFeedback(), CollectiveFeedback()
        want = allreduce(x, "sign", comm=MPI.COMM_SELF, collective=name, seed=3, feedback=fa)
        with pytest.warns(DeprecationWarning, match="use the keyword 'collective'") as rec:
            got = allreduce(x, "sign", comm=MPI.COMM_SELF, algorithm=name, seed=3, feedback=fb)
        assert rec[0].filename == __file__  # points at the caller
        assert np.array_equal(got, want)
        assert np.array_equal(fa.worker, fb.worker)
    for check in (True, False):
        with pytest.raises(TypeError, match="both 'collective' and its deprecated alias"):
            allreduce(x, "none", comm=MPI.COMM_SELF, collective="sra", algorithm="sra", check=check)


def test_bench_algorithms_option_is_a_deprecated_alias():
    from ecmpi.bench import allreduce as bench_allreduce

    parser = argparse.ArgumentParser()
    bench_allreduce.add_arguments(parser)
    args = parser.parse_args(["--algorithms", "ring,ps"])
    with pytest.warns(FutureWarning, match="use --collectives"):
        assert bench_allreduce.parse_collectives(args, ()) == ["ring", "ps"]
    args = parser.parse_args(["--algorithms", "ring", "--collectives", "ps"])
    with pytest.raises(ValueError, match="--collectives only"):
        bench_allreduce.parse_collectives(args, ())
    with pytest.warns(DeprecationWarning, match="DEFAULT_COLLECTIVES"):
        assert bench_allreduce.ALGORITHMS == bench_allreduce.DEFAULT_COLLECTIVES
    # run_emulated's keyword: checked before any namespace is created
    from ecmpi.bench.emulate import run_emulated

    with pytest.raises(TypeError, match="both 'collectives'"):
        run_emulated(2, "1gbit", [4096], collectives=("sra",), algorithms=("sra",))
    with (
        pytest.warns(DeprecationWarning, match="'collectives'"),
        pytest.raises(ValueError, match=r"unknown collective\(s\) \['tree'\]"),
    ):
        run_emulated(2, "1gbit", [4096], algorithms=("tree",))


def test_failure_marker_replaces_a_payload_of_the_same_size():
    from mpi4py import MPI

    import ecmpi
    from ecmpi.comm.failures import Failures

    c = ecmpi.compressor("qsgd:levels=4,bucket=8")
    fail = Failures(MPI.COMM_SELF, np.zeros(1), "sra")
    good, buf = fail.encode("encode its input", c.wire_nbytes(20), c.encode, np.ones(20))
    assert good is not None and buf is good.buf and not fail.seen(buf) and not fail.any
    fail.check()  # nothing known: no error
    bad = np.ones(20)
    bad[3] = np.inf
    p, marker = fail.encode("encode its input", c.wire_nbytes(20), c.encode, bad)
    assert p is None and marker.shape[0] == c.wire_nbytes(20) and marker.dtype == np.uint8
    assert fail.any and Failures(MPI.COMM_SELF, bad, "sra").seen(marker)
    with pytest.raises(ValueError, match="payload"):
        ecmpi.Payload.from_bytes(marker)  # never taken for a payload
    # once a failure is known nothing more is encoded, and the raise names the rank
    assert fail.encode("encode", None, c.encode, np.ones(20))[0] is None
    with pytest.raises(
        ValueError,
        match=r"allreduce \(sra\) failed on rank 0: rank 0 could not "
        r"encode its input: qsgd: input holds 1 NaN/Inf",
    ):
        fail.check()
