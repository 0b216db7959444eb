"""Serial tests of the collectives' building blocks (no mpiexec needed)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecmpi import _backend
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
        assert np.array_equal(allreduce(x, "none", comm=MPI.COMM_SELF, algorithm=alg), x)
    with pytest.raises(TypeError, match="mpi4py communicator"):
        allreduce(x, "none", comm=object())
    with pytest.raises(TypeError, match="NumPy or CuPy array"):
        allreduce([1.0, 2.0], "none", comm=MPI.COMM_SELF)
    with pytest.raises(ValueError, match="unknown compressor"):
        allreduce(x, "zip", comm=MPI.COMM_SELF)
    with pytest.raises(ValueError, match="downlink applies"):
        allreduce(x, "none", comm=MPI.COMM_SELF, downlink="none")
    with pytest.raises(ValueError, match="segment"):
        allreduce(x, "none", comm=MPI.COMM_SELF, algorithm="ring", segment=0)
    with pytest.raises(ValueError, match="root 3 is not a rank"):
        allreduce(x, "none", comm=MPI.COMM_SELF, algorithm="ps", root=3)
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
            "--algorithms",
            "sra,ps",
            "--iters",
            "1",
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
