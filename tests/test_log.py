"""The HDF5 trajectory log: schema, crash safety, checkpoints, refusal to overwrite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from _waiting import hold_shared_lock

from ecmpi.log import (
    BASE_COLUMNS,
    ROOT_ATTRS,
    SCHEMA,
    SchemaError,
    TrajectoryWriter,
    open_log,
    pack_state,
    read_checkpoint,
    unpack_state,
)


def _row(t: int, **extra: float) -> dict:
    r = {name: float(t) + 0.5 for name in BASE_COLUMNS}
    r["step"] = t
    r.update(extra)
    return r


def _writer(path, **kw):
    attrs = {"algorithm": "gd", "problem": "lsq", "n_ranks": 2, "seed": 3, "f_star": 1.25}
    return TrajectoryWriter(path, attrs, {"lr": 0.5, "steps": 10}, **kw)


def test_schema_fields_and_roundtrip(tmp_path):
    p = tmp_path / "run.h5"
    w = _writer(p)
    w.append(_row(0))
    w.start(extras=["entropy_bits_up"])
    for t in (1, 2, 3):
        w.append(_row(t, entropy_bits_up=10.0 * t))
    w.close("completed", x_final=np.arange(4.0), extra_attrs={"stop_reason": "steps"})
    with h5py.File(p, "r") as f:  # plain h5py, no SWMR flag needed after a clean close
        for k in ROOT_ATTRS:
            assert k in f.attrs, k
        assert f.attrs["schema"] == SCHEMA
        assert f.attrs["status"] == "completed"
        g = f["trajectory"]
        for name in BASE_COLUMNS:
            assert g[name].maxshape == (None,) and g[name].chunks is not None
            assert g[name].shape == (4,)
        assert f["x_final"].shape == (4,)
        assert "checkpoint" in f
    log = open_log(p)
    assert log.status == "completed"
    assert log.config == {"lr": 0.5, "steps": 10}
    assert log.attrs["f_star"] == 1.25 and np.isnan(log.attrs["L"])
    assert log.attrs["algorithm"] == "gd" and log.attrs["n_ranks"] == 2
    np.testing.assert_array_equal(log.trajectory["step"], [0, 1, 2, 3])
    np.testing.assert_array_equal(log.trajectory["loss"], [0.5, 1.5, 2.5, 3.5])
    assert np.isnan(log.trajectory["entropy_bits_up"][0])
    np.testing.assert_array_equal(log.trajectory["entropy_bits_up"][1:], [10.0, 20.0, 30.0])
    np.testing.assert_array_equal(log.x_final, np.arange(4.0))
    assert log.attrs["stop_reason"] == "steps"


def test_refuses_to_overwrite(tmp_path):
    p = tmp_path / "run.h5"
    p.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="--overwrite"):
        _writer(p)
    assert p.read_bytes() == b"precious"
    w = _writer(p, overwrite=True)
    w.close("completed")
    assert open_log(p).status == "completed"


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="directory"):
        _writer(tmp_path / "nope" / "run.h5")


def test_schema_error(tmp_path):
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f.attrs["schema"] = "ecmpi.trajectory/2"
        f.create_group("trajectory").create_dataset("step", data=[0])
    with pytest.raises(SchemaError, match="trajectory/2"):
        open_log(p)
    with h5py.File(p, "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(SchemaError, match="not an ecmpi"):
        open_log(p)
    p.write_bytes(b"not hdf5 at all")
    with pytest.raises(SchemaError):
        open_log(p)
    assert issubclass(SchemaError, ValueError)


def test_state_roundtrip():
    loop = {"step": 7, "bits_up": 2**70, "wall": 1.5, "name": "x", "none": None, "ok": True}
    states = [
        {"x": np.arange(3.0), "nested": {"e": np.ones(2, np.float32)}, "k": 3},
        {"x": np.zeros(3), "nested": {"e": np.zeros(2, np.float32)}, "k": 4},
    ]
    loop2, states2 = unpack_state(pack_state(loop, states))
    assert loop2 == loop and type(loop2["step"]) is int and type(loop2["ok"]) is bool
    assert len(states2) == 2
    for a, b in zip(states, states2):
        np.testing.assert_array_equal(a["x"], b["x"])
        assert b["nested"]["e"].dtype == np.float32
        assert a["k"] == b["k"]
    with pytest.raises(TypeError, match="unsupported"):
        pack_state({"f": object()}, [])


def test_checkpoint_slots_alternate_and_survive_torn_write(tmp_path):
    p = tmp_path / "run.h5"
    w = _writer(p)
    w.start()
    for step in (10, 20, 30):
        w.write_checkpoint(step, pack_state({"step": step}, [{"x": np.full(5, step)}]))
    ck = read_checkpoint(p)
    assert ck.step == 30 and ck.loop["step"] == 30
    np.testing.assert_array_equal(ck.states[0]["x"], np.full(5, 30))
    # simulate a crash in the middle of writing the next checkpoint: slot marked
    # empty, bytes half written, index never updated
    idx = w._index[()]
    older = int(np.argmin(idx[:, 0]))
    w._index[older] = (-1, 0, 0)
    w._slots[older][:10] = 0
    w._f.flush()
    assert read_checkpoint(p).step == 30
    # corrupt bytes under a valid index row: the CRC rejects it, the other slot is used
    newest = 1 - older
    w._index[older] = (20, *w._index[newest][1:])
    w._slots[newest][:4] = 255
    w._f.flush()
    ck = read_checkpoint(p)
    assert ck is None or ck.step != 30
    w.close("interrupted")
    assert open_log(p).status == "interrupted"


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from ecmpi.log import TrajectoryWriter, BASE_COLUMNS
    w = TrajectoryWriter(sys.argv[1], {"algorithm": "gd"}, {})
    w.start()
    t = 0
    while True:
        w.append({**{k: float(t) for k in BASE_COLUMNS}, "step": t})
        if t == 200:
            print("ready", flush=True)
        t += 1
    """
)


def test_kill_minus_9_leaves_readable_rows(tmp_path):
    p = tmp_path / "run.h5"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(p)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        live = open_log(p)  # read while the writer is writing
        assert live.status == "running" and len(live) >= 200
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    log = open_log(p)
    n = len(log)
    assert n >= len(live)
    np.testing.assert_array_equal(log.trajectory["step"], np.arange(n))
    for name in BASE_COLUMNS:
        assert len(log.trajectory[name]) == n
        np.testing.assert_array_equal(log.trajectory[name], np.arange(n, dtype=float))
    assert log.status == "running" and log.x_final is None
    cfg = json.loads(h5py.File(p, "r", swmr=True).attrs["config"])
    assert cfg == {}


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time, h5py
    with h5py.File(sys.argv[1], "r+") as f:  # an exclusive HDF5 file lock, as a writer's
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


@pytest.mark.parametrize("wait_s", [30.0, 0.0])
def test_reopen_for_update_waits_out_a_readers_lock(tmp_path, monkeypatch, wait_s):
    # the writer's final reopen (status) and mark_killed open the log r+ through
    # open_for_update; a reader polling the log may hold its shared lock at that moment.
    # (A live writer holds the lock itself, so the reader's lock is taken on a closed log.)
    from ecmpi.log import _files

    monkeypatch.setattr(_files, "UPDATE_LOCK_WAIT_S", wait_s)
    p = tmp_path / "run.h5"
    w = _writer(p)
    w.append(_row(0))
    w.close("completed")
    reader = hold_shared_lock(p, 1.0)
    try:
        if wait_s > 0:
            with _files.open_for_update(p) as f:
                f.attrs["note"] = "after the reader"
            log = open_log(p)
            assert log.attrs["note"] == "after the reader" and log.status == "completed"
        else:
            with pytest.raises(OSError, match="unable to lock file"):
                _files.open_for_update(p)
    finally:
        reader.kill()
        reader.wait()


@pytest.mark.parametrize("hold", [0.5, 6.0])
def test_reader_waits_out_a_brief_writer_lock(tmp_path, hold):
    p = tmp_path / "run.h5"
    w = _writer(p)
    w.append(_row(0))
    w.close("completed")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(p), str(hold)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        if hold < 2.0:  # shorter than the reader's wait: it opens once the lock is gone
            assert open_log(p).status == "completed"
        else:
            with pytest.raises(SchemaError, match="unable to lock file"):
                open_log(p)
    finally:
        proc.kill()
        proc.wait()


def test_start_waits_out_a_readers_lock(tmp_path):
    # between creation and the first row the log is a closed, ordinary HDF5 file that a
    # reader may be polling; start() reopens it for writing once the reader lets go
    p = tmp_path / "run.h5"
    w = _writer(p)
    w.append(_row(0))
    with h5py.File(p, "r") as f:  # no writer flags: readable by any HDF5 tool
        assert f.attrs["status"] == "running"
    reader = hold_shared_lock(p, 1.0)
    try:
        w.start()
    finally:
        reader.kill()
        reader.wait()
    w.append(_row(1))
    w.close("completed")
    log = open_log(p)
    assert log.status == "completed" and list(log.trajectory["step"]) == [0, 1]
