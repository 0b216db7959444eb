"""Careless or hostile input: outputs that would replace inputs, resume edge cases, sizes
beyond memory, ambiguous options and malformed data files. Each gets one clear error."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from _launch import _mpiexec, mpi_env
from mpi4py import MPI

from ecmpi import cli, options
from ecmpi.algorithms.loop import SignalLatch
from ecmpi.log import open_log
from ecmpi.problems.data import SCALES, load

SELF = MPI.COMM_SELF
DATA = ["--problem", "lsq", "--dataset", "synthetic:n=200,d=8"]
TIMEOUT = 120


def _usage_error(args, capsys, needle):
    """``ecmpi ARGS`` exits 2 with one error line holding ``needle``; returns stderr."""
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert err.count("ecmpi: error:") == 1 and "Traceback" not in err, err
    return err


def _one_line_error(args, capsys, needle):
    """``ecmpi ARGS`` fails with one line (no traceback) holding ``needle``."""
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code in (1, 2) and needle in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def _env() -> dict[str, str]:
    return mpi_env(TIMEOUT)


def _libsvm(tmp_path, text, name="d.svm"):
    path = tmp_path / name
    path.write_text(text)
    return path


# -- 6. no input overwritten ------------------------------------------------------------
def test_run_refuses_an_out_that_is_its_dataset_or_config(tmp_path, capsys):
    data = _libsvm(tmp_path, "".join(f"{i % 2} 1:{i} 2:{i * i % 7}\n" for i in range(20)))
    before = data.read_bytes()
    args = ["run", "gd", "--problem", "lsq", "--dataset", f"libsvm:{data}", "--steps", "2"]
    _usage_error([*args, "--out", str(data), "--overwrite"], capsys, "is an input")
    link = tmp_path / "link.svm"
    os.link(data, link)  # the same file under another name
    _usage_error([*args, "--out", str(link), "--overwrite"], capsys, "is an input")
    assert data.read_bytes() == before
    cfg = tmp_path / "run.toml"
    cfg.write_text('algorithm = "gd"\nsteps = 2\n')
    text = cfg.read_text()
    _usage_error(
        ["run", *DATA, "--config", str(cfg), "--out", str(cfg), "--overwrite"], capsys, "input"
    )
    assert cfg.read_text() == text


def _fifo(tmp_path):
    """A non-regular file (standing in for a device such as /dev/null)."""
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def test_run_refuses_an_out_that_is_not_a_regular_file(tmp_path, capsys):
    fifo = _fifo(tmp_path)
    _usage_error(["run", "gd", *DATA, "--out", str(fifo), "--overwrite"], capsys, "regular")
    assert fifo.is_fifo()
    _usage_error(["run", "gd", *DATA, "--out", str(tmp_path), "--overwrite"], capsys, "directory")


def test_analyze_never_replaces_a_log(tmp_path, capsys):
    log = tmp_path / "run.h5"
    assert cli.main(["run", "gd", *DATA, "--steps", "2", "--quiet", "--out", str(log)]) == 0
    before = log.read_bytes()
    _usage_error(["analyze", str(log), "--out", str(log)], capsys, "is an input")
    other = tmp_path / "other.h5"
    shutil.copy(log, other)
    _usage_error(["analyze", str(log), "--out", str(other)], capsys, "HDF5 file")
    fifo = _fifo(tmp_path)
    _usage_error(["analyze", str(log), "--out", str(fifo)], capsys, "regular")
    _usage_error(["analyze", str(log), "--plot", str(tmp_path)], capsys, "must end in")
    assert log.read_bytes() == before and other.read_bytes() == before
    table = tmp_path / "table.md"
    assert cli.main(["analyze", str(log), "--out", str(table), "--format", "md"]) == 0
    assert "gd" in table.read_text()


@pytest.mark.mpi
def test_mpi_out_equal_to_dataset_is_refused_on_every_rank(tmp_path):
    data = _libsvm(tmp_path, "".join(f"{i % 2} 1:{i} 2:{i * i % 7}\n" for i in range(20)))
    before = data.read_bytes()
    proc = subprocess.run(
        [_mpiexec(), "-n", "2", sys.executable, "-m", "ecmpi", "run", "gd", "--problem", "lsq",
         "--dataset", f"libsvm:{data}", "--out", str(data), "--overwrite"],
        env=_env(), capture_output=True, text=True, timeout=TIMEOUT + 30,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("ecmpi: error:") == 1 and "is an input" in proc.stderr
    assert data.read_bytes() == before


# -- 7. resume edge cases ---------------------------------------------------------------
def _checkpointed(tmp_path, steps=6, every=3):
    path = tmp_path / "r.h5"
    args = ["run", "gd", *DATA, "--steps", str(steps), "--checkpoint-every", str(every)]
    assert cli.main([*args, "--quiet", "--out", str(path)]) == 0
    return path


def test_resume_refuses_trajectory_columns_of_unequal_length(tmp_path, capsys):
    path = _checkpointed(tmp_path)
    with h5py.File(path, "r+") as f:
        f["trajectory/loss"].resize((3,))
    before = path.read_bytes()
    _usage_error(["run", "--resume", str(path), "--steps", "9"], capsys, "unequal lengths")
    assert path.read_bytes() == before


def test_resume_with_a_budget_already_reached_says_so(tmp_path, capsys):
    path = _checkpointed(tmp_path)
    before = open_log(path)
    err = _usage_error(["run", "--resume", str(path), "--steps", "4"], capsys, "already reached")
    assert "checkpointed at step 6" in err
    after = open_log(path)
    assert after.status == before.status and len(after) == len(before) == 7
    assert cli.main(["run", "--resume", str(path), "--steps", "8", "--quiet"]) == 0
    assert list(open_log(path).trajectory["step"]) == list(range(9))


def test_signal_latch_treats_sigint_as_sigterm_and_a_second_one_interrupts():
    before = signal.getsignal(signal.SIGINT)
    latch = SignalLatch()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert latch.received == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
    finally:
        latch.restore()
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.mpi
def test_mpi_sigint_checkpoints_and_marks_the_log_interrupted(tmp_path):
    out = tmp_path / "int.h5"
    proc = subprocess.Popen(
        [_mpiexec(), "-n", "2", sys.executable, "-m", "ecmpi", "run", "gd", *DATA,
         "--steps", "1000000", "--quiet", "--out", str(out)],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if len(open_log(out)) >= 3:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # as Ctrl-C does; mpiexec forwards it to the ranks
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    log = open_log(out)
    assert log.status == "interrupted" and "SIGINT" in log.attrs["message"], log.attrs
    assert log.checkpoint_step == log.attrs["steps_done"] > 0


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _catches_sigterm(pid: int) -> bool:
    """Whether ``pid`` is a rank with a SIGTERM handler (its signal latch is installed)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if fh.read().split(b"\0")[1:3] != [b"-m", b"ecmpi"]:
                return False
        with open(f"/proc/{pid}/status") as fh:
            mask = next(line for line in fh if line.startswith("SigCgt:")).split()[1]
    except (OSError, StopIteration):
        return False
    return bool(int(mask, 16) >> (signal.SIGTERM - 1) & 1)


@pytest.mark.mpi
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
@pytest.mark.parametrize("ranks", [1, 2])
def test_mpi_sigterm_during_setup_ends_it_at_once(tmp_path, ranks):
    # building this dataset takes tens of seconds; the signal must not wait for it
    out = tmp_path / "setup.h5"
    proc = subprocess.Popen(
        [_mpiexec(), "-n", str(ranks), sys.executable, "-m", "ecmpi", "run", "gd",
         "--problem", "logreg", "--dataset", "synthetic:n=300000,d=100", "--steps", "5",
         "--quiet", "--out", str(out)],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            ready = [p for p in _descendants(proc.pid) if _catches_sigterm(p)]
            if len(ready) >= ranks:  # every rank is past its imports, in setup
                break
            time.sleep(0.05)
        time.sleep(0.1)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=25)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert time.monotonic() - sent < 15, err
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    msg = "interrupted during setup (SIGTERM); nothing to resume, start the run again"
    assert err.count(msg) == 1 and "Traceback" not in err, err
    assert not out.exists()  # no log is created before every rank has left its setup


# -- 9. options --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--step", "3"], "unrecognized arguments: --step"),
        (["--steps", "1e30"], "--steps: must be at most"),
        (["--steps", "2.5"], "--steps: must be an integer"),
        (["--seed", "abc"], "--seed: must be an integer"),
        (["--scale", "minmax"], "--scale: must be one of none, standard, maxabs, rownorm"),
        (["--batch-size", "1000000000"], "--batch-size 1000000000 exceeds the 200 rows"),
    ],
)
def test_ambiguous_or_huge_options_are_refused(extra, needle, capsys, tmp_path):
    _usage_error(["run", "sgd", *DATA, *extra, "--out", str(tmp_path / "x.h5")], capsys, needle)
    assert not (tmp_path / "x.h5").exists()


def test_scale_choices_are_the_loaders():
    assert options.RUN_OPTIONS["scale"].convert.choices == SCALES
    assert cli.main(["run", "gd", *DATA, "--scale", "maxabs", "--steps", "1", "--quiet"]) == 0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("steps = 2\n[run]\nbatch-size = 4\n", "unknown table [run]"),
        ("batch-size = 4\nbatch_size = 8\n", "batch_size is given twice (batch-size and"),
        ("steps = 2\n[hyperparameters]\nsteps = 3\n", "steps is given twice"),
    ],
)  # fmt: skip
def test_config_tables_and_repeated_options_are_refused(text, needle, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    _usage_error(["run", "sgd", *DATA, "--config", str(cfg)], capsys, needle)


def test_huge_sizes_are_one_line_errors(tmp_path, capsys):
    args = ["run", "gd", "--problem", "quadratic", "--kappa", "10", "--steps", "1"]
    _one_line_error([*args, "--dim", "100000000"], capsys, "beyond the budget")
    _one_line_error(
        ["run", "gd", "--problem", "lsq", "--dataset", "synthetic:n=1000000000,d=10000"],
        capsys,
        "beyond the budget",
    )


# -- 9. data files ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("index", "needle"),
    [
        (4_000_000_000, "beyond the budget"),
        (10**20, "line 3: malformed LibSVM line: feature index 100000000000000000000 is beyond"),
        (20_000_000, "beyond the budget"),
    ],
)
def test_libsvm_stray_huge_index_is_refused_quickly(tmp_path, index, needle):
    rows = [f"{i % 2} 1:{i} 2:1\n" for i in range(400)]
    rows[2] = f"1 1:2 {index}:1\n"
    path = _libsvm(tmp_path, "".join(rows))
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        load(f"libsvm:{path}", comm=SELF)
    assert time.monotonic() - t0 < 5


def test_libsvm_duplicate_index_names_its_line(tmp_path):
    path = _libsvm(tmp_path, "1 1:2 2:3\n0 1:1 2:5 1:4\n")
    with pytest.raises(ValueError, match="line 2: malformed LibSVM line: feature index 1 given"):
        load(f"libsvm:{path}", comm=SELF)


def test_hdf5_complex_or_huge_declared_data_is_refused(tmp_path):
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f["X"] = np.ones((5, 2)) * (1 + 1j)
        f["y"] = np.ones(5)
    with pytest.raises(ValueError, match="'X' holds complex128 data"):
        load(f"hdf5:{path}", comm=SELF)
    big = tmp_path / "big.h5"
    with h5py.File(big, "w") as f:  # declared, never written: the file stays small
        f.create_dataset("X", shape=(10**9, 10**4), dtype="f8", chunks=(1024, 16))
        f.create_dataset("y", shape=(10**9,), dtype="f8", chunks=(4096,))
    assert big.stat().st_size < 10**6
    with pytest.raises(ValueError, match="beyond the budget"):
        load(f"hdf5:{big}", comm=SELF)


def test_bench_outputs_never_replace_a_log_or_a_device(tmp_path, capsys):
    log = tmp_path / "run.h5"
    assert cli.main(["run", "gd", *DATA, "--steps", "1", "--quiet", "--out", str(log)]) == 0
    before = log.read_bytes()
    _usage_error(["bench", "allreduce", "--sizes", "1K", "--out", str(log)], capsys, "HDF5 file")
    fifo = _fifo(tmp_path)
    _usage_error(["bench", "compress", "--sizes", "1K", "--json", str(fifo)], capsys, "regular")
    assert log.read_bytes() == before and fifo.is_fifo()


MISMATCH = """
import sys
import numpy as np
from mpi4py import MPI
import ecmpi
rank = MPI.COMM_WORLD.rank
try:
    ecmpi.allreduce(np.ones(64), "qsgd:levels=4" if rank == 0 else "qsgd:levels=2", seed=rank)
except ValueError as exc:
    with open(f"{sys.argv[1]}.{rank}", "w") as fh:
        fh.write(str(exc))
"""


@pytest.mark.mpi
def test_mpi_mismatch_message_names_the_values_that_differ(tmp_path):
    script = tmp_path / "mismatch.py"
    script.write_text(MISMATCH)
    proc = subprocess.run(
        [_mpiexec(), "-n", "2", sys.executable, str(script), str(tmp_path / "err")],
        env=_env(), capture_output=True, text=True, timeout=TIMEOUT + 30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    msgs = [(tmp_path / f"err.{r}").read_text() for r in (0, 1)]
    assert msgs[0] == msgs[1], msgs  # the same error on every rank
    assert re.search(
        r"compressor \(qsgd:levels=4,[^;]* on rank 0; qsgd:levels=2,[^;]* on rank 1\)", msgs[0]
    ), msgs
    assert "seed (0 on rank 0; 1 on rank 1)" in msgs[0], msgs
