"""Faults of whole ``mpiexec`` jobs: signals, kill -9, a crash inside a checkpoint, a full
disk, read-only output and malformed dataset files.

Each job is a real ``mpiexec -n 2 python -m ecmpi run ...`` with a hard timeout.
Rows of interrupted, killed and resumed runs are compared bit for bit (timings
aside) with one uninterrupted run of the same settings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from _launch import _mpiexec, mpi_env
from _tmpfs import tmpfs
from _waiting import wait_for_status

from ecmpi import cli
from ecmpi.log import open_log, read_checkpoint

pytestmark = pytest.mark.slow

RUN = ["-m", "ecmpi", "run"]
ARGS = [
    "ef-sgd",
    "--problem",
    "logreg",
    "--dataset",
    "synthetic:n=200,d=8",
    "--l2-rel",
    "1e-2",
    "--compressor",
    "qsgd:levels=2",
    "--collective",
    "sra",
    "--batch-size",
    "4",
    "--steps",
    "60",
    "--seed",
    "7",
    "--quiet",
]
TIMEOUT = 180


def _env() -> dict[str, str]:
    return mpi_env(TIMEOUT)


def _job(args, n=2):
    return subprocess.run(
        [_mpiexec(), "-n", str(n), sys.executable, *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT + 30,
    )


def _start(args, n=2, env=None):
    return subprocess.Popen(
        [_mpiexec(), "-n", str(n), sys.executable, *args],
        env=_env() if env is None else env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _rows(path):
    try:
        return len(open_log(path))
    except (OSError, ValueError):
        return 0


def _wait_rows(path, n, proc, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if _rows(path) >= n:
            return
        time.sleep(0.02)  # the job logs 60 rows in about 0.2 s
    pytest.fail(f"{path} did not reach {n} rows (exit {proc.poll()})")


def _same_rows(a, b, n=None):
    for k in a.trajectory:
        if not k.endswith("_time"):
            m = len(b.trajectory[k]) if n is None else n
            np.testing.assert_array_equal(a.trajectory[k][:m], b.trajectory[k][:m], err_msg=k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    proc = _job([*RUN, *ARGS, "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    log = open_log(out)
    assert log.status == "completed" and len(log) == 61
    return log


@pytest.mark.mpi
def test_sigterm_to_mpiexec_checkpoints_exits_75_and_resumes(reference, tmp_path):
    out = tmp_path / "cut.h5"
    proc = _start([*RUN, *ARGS, "--out", str(out), "--checkpoint-every", "25"])
    _wait_rows(out, 4, proc)
    proc.send_signal(signal.SIGTERM)  # to mpiexec, which forwards it to the ranks
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    log = open_log(out)
    assert log.status == "interrupted" and "SIGTERM" in log.attrs["message"]
    assert log.checkpoint_step == log.attrs["steps_done"] < 60
    proc = _job([*RUN, "--resume", str(out)])
    assert proc.returncode == 0, proc.stderr
    done = open_log(out)
    assert done.status == "completed" and done.attrs["resumed"] == 1
    _same_rows(reference, done)
    np.testing.assert_array_equal(reference.x_final, done.x_final)


def _env_no_watcher():
    return dict(_env(), ECMPI_LOG_WATCHER="0")


@pytest.mark.mpi
def test_kill_9_of_the_whole_job_keeps_every_flushed_row(reference, tmp_path):
    out = tmp_path / "killed.h5"
    proc = _start(
        [*RUN, *ARGS, "--out", str(out), "--checkpoint-every", "3"], env=_env_no_watcher()
    )
    _wait_rows(out, 5, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    log = open_log(out)
    assert log.status == "running" and 5 <= len(log) <= 61
    np.testing.assert_array_equal(log.trajectory["step"], np.arange(len(log)))
    _same_rows(reference, log, n=len(log))  # every flushed row is intact and exact


def _rank_pids(out):
    """pid of each rank of the job writing ``out`` (from /proc: command line and PMI_RANK)."""
    pids = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--out" in cmd and str(out).encode() in cmd:  # a rank, not the log's watcher
            for kv in env:
                if kv.startswith(b"PMI_RANK="):
                    pids[int(kv.split(b"=", 1)[1])] = int(d.name)
    return pids


@pytest.mark.parametrize("victim", [0, 1])
@pytest.mark.mpi
def test_kill_9_of_one_rank_ends_the_job_and_the_log_says_failed(reference, tmp_path, victim):
    out = tmp_path / f"victim{victim}.h5"
    proc = _start([*RUN, *ARGS, "--out", str(out), "--checkpoint-every", "3"])
    _wait_rows(out, 5, proc)
    pids = _rank_pids(out)
    assert sorted(pids) == [0, 1], pids
    t0 = time.monotonic()
    os.kill(pids[victim], signal.SIGKILL)
    text = "".join(proc.communicate(timeout=60))
    assert time.monotonic() - t0 < 30 and proc.returncode != 0
    assert "signal 9" in text or "Killed" in text, text  # the launcher names the cause
    log = wait_for_status(out, "failed")
    assert log.attrs["stop_reason"] == "killed" and "was killed" in log.attrs["message"]
    _same_rows(reference, log, n=len(log))
    assert log.checkpoint_step is not None and log.checkpoint_step <= len(log)
    # the newest checkpoint carries the run to the same end as the uninterrupted one
    proc = _job([*RUN, "--resume", str(out)])
    assert proc.returncode == 0, proc.stderr
    done = open_log(out)
    assert done.status == "completed" and done.attrs["resumed"] == 1
    _same_rows(reference, done)


CRASH_IN_SECOND_CHECKPOINT = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from ecmpi import cli, log
    calls = []
    orig = log.TrajectoryWriter._write_slot
    def write_slot(self, slot, step, blob):
        calls.append(step)
        if len(calls) < 2:
            return orig(self, slot, step, blob)
        # the slot is marked empty, then half of the new checkpoint lands on disk: kill -9
        self._index[slot] = (-1, 0, 0)
        self._f.flush()
        ds = self._slots[slot]
        ds.resize((max(ds.shape[0], len(blob)),))
        ds[: len(blob) // 2] = np.frombuffer(blob, dtype=np.uint8)[: len(blob) // 2]
        self._f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    log.TrajectoryWriter._write_slot = write_slot
    sys.exit(cli.main(sys.argv[1:]))
    """
)


@pytest.mark.mpi
def test_crash_while_writing_a_checkpoint_leaves_the_previous_one(reference, tmp_path, capsys):
    out = tmp_path / "torn.h5"
    proc = _job(
        [
            "-c",
            CRASH_IN_SECOND_CHECKPOINT,
            "run",
            *ARGS,
            "--out",
            str(out),
            "--checkpoint-every",
            "10",
        ]
    )
    assert proc.returncode != 0
    ck = read_checkpoint(out)
    assert ck is not None and ck.step == 10 and len(ck.states) == 2
    log = open_log(out)
    assert log.checkpoint_step == 10 and len(log) >= 20
    # another rank count is refused with the command to use
    assert cli.main(["run", "--resume", str(out)]) == 2
    assert "was run on 2 ranks; resume it with mpiexec -n 2" in capsys.readouterr().err
    proc = _job([*RUN, "--resume", str(out)])
    assert proc.returncode == 0, proc.stderr
    done = open_log(out)
    assert done.status == "completed"
    _same_rows(reference, done)


@pytest.fixture
def tiny_fs(tmp_path):
    """A 160 KiB tmpfs (root only), unmounted afterwards."""
    with tmpfs(tmp_path / "tiny", "160k") as mnt:
        yield mnt


@pytest.mark.mpi
def test_full_disk_is_one_clear_error(tiny_fs):
    out = tiny_fs / "full.h5"
    args = [a if a != "synthetic:n=200,d=8" else "synthetic:n=64,d=2000" for a in ARGS]
    proc = _job([*RUN, *args, "--out", str(out), "--checkpoint-every", "1"])
    assert proc.returncode == 1
    assert proc.stderr.count("ecmpi: error") == 1, proc.stderr
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
    log = open_log(out)  # what was flushed before the disk filled is readable
    assert len(log) >= 1 and log.status in ("running", "failed")


def test_read_only_output_directory(tmp_path, capsys):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs (needs root): {proc.stderr.strip()}")
    try:
        assert cli.main(["run", *ARGS, "--out", str(mnt / "x.h5")]) == 2
        err = capsys.readouterr().err
        assert f"output directory {mnt} is not writable" in err and err.count("error") == 1
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    assert cli.main(["run", *ARGS, "--out", str(tmp_path / "no" / "x.h5")]) == 2
    assert f"output directory {tmp_path / 'no'} does not exist" in capsys.readouterr().err


@pytest.mark.mpi
def test_malformed_dataset_files_give_one_error(tmp_path):
    bad_svm = tmp_path / "bad.svm"
    bad_svm.write_text("1 1:0.5 2:0.25\n" * 40 + "-1 1:0.5 2:abc\n")  # last rank's shard
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"this is not HDF5")
    cases = [
        (f"libsvm:{bad_svm}", "malformed LibSVM line"),
        (f"hdf5:{junk}", "not a readable HDF5 file"),
    ]
    for spec, needle in cases:
        proc = _job(
            [
                *RUN,
                "gd",
                "--problem",
                "logreg",
                "--dataset",
                spec,
                "--steps",
                "3",
                "--quiet",
                "--out",
                str(tmp_path / "x.h5"),
            ]
        )
        assert proc.returncode != 0
        assert proc.stderr.count("ecmpi: error") == 1, proc.stderr
        assert needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not (tmp_path / "x.h5").exists()


# ---------------------------------------------------------------------------------------
# the error channel: another rank's exception marks rank 0's log failed
# ---------------------------------------------------------------------------------------
def _row(t):
    return {"step": t, "loss": float(t)}


def test_mark_failed_from_another_thread_keeps_complete_rows(tmp_path):
    """Rows written by one thread while another marks the log: every row is whole, the log
    says ``failed`` with the message, and later rows and a later close are ignored."""
    import threading

    from ecmpi.log import TrajectoryWriter

    w = TrajectoryWriter(tmp_path / "m.h5", {"algorithm": "gd"}, {})
    w.start()
    written = threading.Event()
    stop = threading.Event()

    def rows():
        t = 0
        while not stop.is_set():
            w.append(_row(t))
            t += 1
            if t == 20:
                written.set()

    th = threading.Thread(target=rows)
    th.start()
    assert written.wait(30)
    w.mark_failed("on rank 1: RuntimeError: boom")
    stop.set()
    th.join()
    w.append(_row(10**6))
    w.write_checkpoint(10**6, b"late")
    w.close("completed", extra_attrs={"message": "late"})
    log = open_log(tmp_path / "m.h5")
    assert log.status == "failed" and log.attrs["stop_reason"] == "exception"
    assert log.attrs["message"] == "on rank 1: RuntimeError: boom"
    assert len(log) >= 20 and log.checkpoint_step is None
    np.testing.assert_array_equal(log.trajectory["step"], np.arange(len(log)))
    np.testing.assert_array_equal(log.trajectory["loss"], np.arange(len(log), dtype=float))


def test_mark_failed_leaves_a_finished_log_alone(tmp_path):
    from ecmpi.log import TrajectoryWriter

    w = TrajectoryWriter(tmp_path / "c.h5", {"algorithm": "gd"}, {})
    w.append(_row(0))  # before start: held in memory
    w.close("completed")
    w.mark_failed("too late")
    log = open_log(tmp_path / "c.h5")
    assert log.status == "completed" and "message" not in log.attrs and len(log) == 1
    w2 = TrajectoryWriter(tmp_path / "p.h5", {"algorithm": "gd"}, {})
    w2.append(_row(0))
    w2.mark_failed("early")  # not started yet: the held row is written first
    log = open_log(tmp_path / "p.h5")
    assert log.status == "failed" and log.attrs["message"] == "early" and len(log) == 1


CHANNEL_PROTOCOL = textwrap.dedent(
    """
    import sys, time
    from mpi4py import MPI
    from ecmpi import error_channel
    from ecmpi.log import TrajectoryWriter, open_log

    world = MPI.COMM_WORLD
    aborted = []
    ch = error_channel.open_channel(world, abort=aborted.append)
    assert ch.enabled == (world.size > 1)
    writer = None
    if world.rank == 0:
        writer = TrajectoryWriter(sys.argv[1], {"algorithm": "gd"}, {})
        writer.start()
        ch.attach(writer)
        writer.append({"step": 0, "loss": 1.0})
    world.Barrier()
    acked = error_channel.report_failure("ValueError: bad shard") if world.rank == 1 else None
    if world.rank == 1:
        assert acked is True
    if world.rank == 0:
        assert error_channel.report_failure("rank 0 never reports") is False
        deadline = time.monotonic() + 30
        while not aborted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert aborted == [1] and ch.received == [(1, "ValueError: bad shard")]
        log = open_log(sys.argv[1])
        assert log.status == "failed" and log.attrs["message"] == "on rank 1: ValueError: bad shard"
        assert len(log) == 1
    world.Barrier()
    t0 = time.perf_counter()
    error_channel.close_channel()
    print(f"rank {world.rank} ok, close {time.perf_counter() - t0:.4f} s", flush=True)
    """
)


@pytest.mark.mpi
def test_error_channel_protocol_marks_acknowledges_and_closes(tmp_path):
    """Rank 1 reports; rank 0's thread marks the log, acknowledges and calls the abort hook
    (a recorder here); the channel then closes on every rank without a hang."""
    out = tmp_path / "p.h5"
    proc = _job(["-c", CHANNEL_PROTOCOL, str(out)], n=3)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(" ok, close ") == 3, proc.stdout


@pytest.mark.mpi
def test_without_thread_multiple_the_log_stays_running(tmp_path):
    """The documented limitation: below MPI_THREAD_MULTIPLE no watcher thread runs, the job
    still ends with the cause printed once, and the log keeps status ``running``."""
    out = tmp_path / "s.h5"
    script = textwrap.dedent(
        """
        import sys
        import mpi4py
        mpi4py.rc.thread_level = "serialized"
        from mpi4py import MPI
        from ecmpi import cli
        from ecmpi.algorithms import sgd
        orig = sgd.GD.step
        def step(self, t):
            if t == 3 and MPI.COMM_WORLD.rank == 1:
                raise ValueError("bad step on rank 1")
            return orig(self, t)
        sgd.GD.step = step
        sys.exit(cli.main(sys.argv[1:]))
        """
    )
    args = ["run", "gd", "--problem", "lsq", "--dataset", "synthetic:n=200,d=8"]
    proc = _job(["-c", script, *args, "--steps", "100000", "--quiet", "--out", str(out)])
    assert proc.returncode == 1
    assert proc.stderr.count("ecmpi: error on rank 1: ValueError: bad step on rank 1") == 1
    log = open_log(out)
    assert log.status == "running" and len(log) >= 3
