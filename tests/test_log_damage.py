"""Logs that a full disk, a cut copy or an early kill could damage stay readable or are
reported as damaged at once.

- A full disk (a real tiny tmpfs, root only; skipped where mount is refused): the rows
  and the last complete checkpoint stay readable, the status is recorded, and a run
  under ``mpiexec`` ends with one clear error.
- A log cut to 2/3, with a zeroed tail, or missing its last 200 bytes: ``open_log``,
  ``ecmpi analyze`` and ``ecmpi run --resume`` report it as damaged within seconds
  (HDF5's SWMR reader otherwise retries for minutes), also for a killed run's log.
- A writer killed before its first row: the log opens everywhere, ``--resume`` says
  that there is no checkpoint, and the watcher's failures reach stderr.

Every process has a hard timeout.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from _launch import _mpiexec, mpi_env
from _tmpfs import tmpfs
from _waiting import wait_for_status

from ecmpi.log import BASE_COLUMNS, TrajectoryWriter, open_log, pack_state, read_checkpoint
from ecmpi.log.space import reserve_path

TIMEOUT = 120


def _row(t: int) -> dict:
    return {**{name: float(t) + 0.5 for name in BASE_COLUMNS}, "step": t}


def _attrs() -> dict:
    return {"algorithm": "gd", "problem": "lsq", "n_ranks": 2, "seed": 3}


def _blob(step: int, d: int = 1000) -> bytes:
    return pack_state({"step": step}, [{"x": np.arange(float(d)) + step}])


def _logging(path: Path, rows: int, every: int, d: int = 1000) -> TrajectoryWriter:
    """A started writer that logged ``rows`` rows and checkpointed every ``every`` steps."""
    w = TrajectoryWriter(path, _attrs(), {"steps": rows})
    w.start()
    for t in range(rows):
        w.append(_row(t))
        if t % every == 0:
            w.write_checkpoint(t, _blob(t, d))
    return w


def _env() -> dict[str, str]:
    return mpi_env(TIMEOUT)


# ---------------------------------------------------------------------------------------
# 1. a full disk
# ---------------------------------------------------------------------------------------
@pytest.fixture
def tiny_fs(tmp_path):
    """A 2 MiB tmpfs (root only), unmounted afterwards."""
    with tmpfs(tmp_path / "tiny", "2m") as mnt:
        yield mnt


def _fill(directory: Path, leave: int = 0) -> None:
    """Write a filler file until at most ``leave`` bytes are free on ``directory``'s disk."""
    with open(directory / "filler", "wb") as fh:
        for size in (1 << 16, 1 << 12):
            while True:
                st = os.statvfs(directory)
                if st.f_bavail * st.f_frsize - size < leave:
                    break
                try:
                    fh.write(bytes(size))
                    fh.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break


def test_full_disk_at_the_final_write_keeps_the_whole_log(tiny_fs):
    p = tiny_fs / "run.h5"
    w = _logging(p, 301, every=50)
    _fill(tiny_fs)  # the disk is full when the run ends
    w.close("completed", x_final=np.arange(1000.0), extra_attrs={"stop_reason": "steps"})
    log = open_log(p)
    assert log.status == "completed" and len(log) == 301
    np.testing.assert_array_equal(log.trajectory["step"], np.arange(301))
    np.testing.assert_array_equal(log.x_final, np.arange(1000.0))
    assert log.checkpoint_step == 300 and read_checkpoint(p).blob == _blob(300)
    with h5py.File(p, "r") as f:  # an ordinary HDF5 file again
        assert f.attrs["status"] == "completed"
    assert not reserve_path(p).exists()


def test_full_disk_mid_run_keeps_rows_and_the_last_checkpoint(tiny_fs):
    p = tiny_fs / "run.h5"
    w = _logging(p, 101, every=100)  # checkpoints at 0 and 100
    _fill(tiny_fs)
    with pytest.raises(OSError) as first:
        w.write_checkpoint(101, _blob(101, d=40_000))  # 320 KB: refused before writing
    assert first.value.errno == errno.ENOSPC
    assert "No space left on device" in str(first.value) and "--resume" in str(first.value)
    failed = None
    for t in range(101, 5000):  # rows until a new chunk finds no space
        try:
            w.append(_row(t))
        except OSError as exc:
            failed = exc
            break
    assert failed is not None and failed.errno == errno.ENOSPC, failed
    w.close("failed", extra_attrs={"stop_reason": "exception", "message": str(failed)})
    log = open_log(p)
    assert log.status == "failed" and "No space left on device" in log.attrs["message"]
    assert len(log) >= 101
    np.testing.assert_array_equal(log.trajectory["step"], np.arange(len(log)))
    assert log.checkpoint_step == 100 and read_checkpoint(p).blob == _blob(100)
    assert not reserve_path(p).exists()


@pytest.mark.mpi
def test_full_disk_ends_a_run_with_one_error_and_a_readable_log(tiny_fs):
    out = tiny_fs / "run.h5"
    _fill(tiny_fs, leave=280 << 10)
    args = ["ef-sgd", "--problem", "logreg", "--dataset", "synthetic:n=400,d=1000"]
    args += ["--l2-rel", "1e-3", "--compressor", "qsgd:levels=16", "--collective", "sra"]
    args += ["--batch-size", "32", "--steps", "300", "--checkpoint-every", "10", "--quiet"]
    proc = subprocess.run(
        [_mpiexec(), "-n", "2", sys.executable, "-m", "ecmpi", "run", *args, "--out", str(out)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT + 30,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    assert text.count("No space left on device") == 1, text
    assert "Traceback" not in text and "__dealloc__" not in text, text
    log = open_log(out)
    assert log.status == "failed" and "No space left on device" in log.attrs["message"]
    assert len(log) >= 10 and log.checkpoint_step is not None and log.checkpoint_step >= 10
    assert read_checkpoint(out).step == log.checkpoint_step


# ---------------------------------------------------------------------------------------
# 2. a truncated log
# ---------------------------------------------------------------------------------------
# a writer that logs rows and checkpoints, then waits to be killed (SWMR flags stay set)
HANG = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from ecmpi.log import BASE_COLUMNS, TrajectoryWriter, pack_state
    w = TrajectoryWriter(sys.argv[1], {"algorithm": "gd", "n_ranks": 2}, {"steps": 400})
    w.start()
    for t in range(300):
        w.append({**{k: float(t) for k in BASE_COLUMNS}, "step": t})
        if t % 100 == 0:
            w.write_checkpoint(t, pack_state({"step": t}, [{"x": np.arange(3000.0)}]))
    print("ready", flush=True)
    time.sleep(600)
    """
)

DAMAGE = {
    "cut": lambda b: b[: 2 * len(b) // 3],
    "zeroed": lambda b: b[: 2 * len(b) // 3] + bytes(len(b) - 2 * len(b) // 3),
    "short200": lambda b: b[:-200],
}


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """``{(kind, damage): path}`` for a completed and a killed log, each damaged 3 ways."""
    d = tmp_path_factory.mktemp("damaged")
    done = d / "completed.h5"
    _logging(done, 300, every=100, d=3000).close("completed", x_final=np.zeros(3000))
    killed = d / "killed.h5"
    proc = subprocess.Popen(
        [sys.executable, "-c", HANG, str(killed)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, ECMPI_LOG_WATCHER="0"),
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    out = {}
    for kind, src in (("completed", done), ("killed", killed)):
        data = src.read_bytes()
        for name, cut in DAMAGE.items():
            out[kind, name] = d / f"{kind}-{name}.h5"
            out[kind, name].write_bytes(cut(data))
    out["good"] = done
    return out


READ_ALL = textwrap.dedent(
    """
    import json, sys
    from ecmpi.log import SchemaError, open_log, read_checkpoint
    res = {}
    for p in sys.argv[1:]:
        for fn in (open_log, read_checkpoint):
            try:
                fn(p)
                res[p + " " + fn.__name__] = "read"
            except SchemaError as exc:
                res[p + " " + fn.__name__] = "SchemaError: " + str(exc)
            except Exception as exc:
                res[p + " " + fn.__name__] = type(exc).__name__ + ": " + str(exc)
    print(json.dumps(res))
    """
)


def test_damaged_logs_are_reported_at_once(damaged):
    paths = [str(p) for k, p in damaged.items() if k != "good"]
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", READ_ALL, *paths], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 30
    res = json.loads(proc.stdout)
    assert len(res) == 2 * len(paths)
    for key, what in res.items():
        if key.endswith("read_checkpoint") and what == "read":
            continue  # a checkpoint whose CRC matches, read before the damaged part
        assert what.startswith("SchemaError: ") and "is damaged" in what, (key, what)
    for p in paths:
        if "short200" in p:
            assert "cut short" in res[p + " open_log"]


def test_analyze_and_resume_report_a_damaged_log(damaged, tmp_path):
    good, cut = damaged["good"], damaged["killed", "cut"]
    proc = subprocess.run(
        [sys.executable, "-m", "ecmpi", "analyze", "--skip-bad", str(cut), str(good)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"skipping {cut}" in proc.stderr and "is damaged" in proc.stderr
    assert "completed" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "ecmpi", "analyze", str(damaged["completed", "short200"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "is damaged" in proc.stderr and "cut short" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.mpi
@pytest.mark.parametrize("damage", ["cut", "zeroed"])
def test_resume_of_a_damaged_log_ends_with_an_error_and_obeys_sigterm(damaged, damage):
    path = damaged["killed", damage]
    proc = subprocess.Popen(
        [_mpiexec(), "-n", "2", sys.executable, "-m", "ecmpi", "run", "--resume", str(path)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        time.sleep(3.0)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    assert "is damaged" in err and "Traceback" not in err, err


# ---------------------------------------------------------------------------------------
# 3. a writer killed before its first step
# ---------------------------------------------------------------------------------------
# creates a log as a run does before its first step (row 0 held until start), optionally
# watched, optionally overwrites the file's first bytes, then waits to be killed
EARLY = textwrap.dedent(
    """
    import os, sys, time
    from ecmpi.log import BASE_COLUMNS, TrajectoryWriter
    from ecmpi.watcher import watch
    path, use_watcher, spoil = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
    attrs = {"algorithm": "gd", "problem": "lsq", "n_ranks": 2}
    w = TrajectoryWriter(path, attrs, {"steps": 10})
    w.append({**{k: 0.5 for k in BASE_COLUMNS}, "step": 0})
    watcher = watch(path) if use_watcher else None
    if spoil:
        with open(path, "r+b") as fh:
            fh.write(bytes(64))
    print("ready", flush=True)
    time.sleep(600)
    """
)


def _killed_early(path: Path, watcher: bool, spoil: bool = False) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", EARLY, str(path), "1" if watcher else "0", "1" if spoil else "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, ECMPI_LOG_WATCHER="1"),
    )
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    finally:
        proc.kill()
    return proc


@pytest.mark.mpi
def test_a_log_killed_before_its_first_step_opens_and_resume_says_why_not(tmp_path):
    p = tmp_path / "early.h5"
    _killed_early(p, watcher=False).communicate(timeout=60)
    with h5py.File(p, "r") as f:  # an ordinary HDF5 file: no flags to clear
        assert f.attrs["status"] == "running" and f["trajectory/step"].shape == (0,)
    log = open_log(p)
    assert log.status == "running" and len(log) == 0 and log.checkpoint_step is None
    proc = subprocess.run(
        [_mpiexec(), "-n", "2", sys.executable, "-m", "ecmpi", "run", "--resume", str(p)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode != 0
    assert "holds no checkpoint" in proc.stderr, proc.stderr
    assert "start the run again without --resume" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_watcher_marks_a_log_killed_before_its_first_step(tmp_path):
    p = tmp_path / "early.h5"
    proc = _killed_early(p, watcher=True)
    log = wait_for_status(p, "failed", timeout=60)
    proc.communicate(timeout=60)
    assert log.attrs["stop_reason"] == "killed" and len(log) == 0
    assert not reserve_path(p).exists()


def test_a_watcher_that_cannot_mark_the_log_says_so_on_stderr(tmp_path):
    p = tmp_path / "early.h5"
    proc = _killed_early(p, watcher=True, spoil=True)
    _, err = proc.communicate(timeout=60)  # the watcher holds stderr until it is done
    assert "ecmpi log watcher" in err and str(p) in err and "could not be marked" in err, err
