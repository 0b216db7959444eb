"""Checkpoint/restart and non-finite faults through ``ecmpi run`` itself, under any rank count.

Every rank calls :func:`ecmpi.cli.main` in-process, as ``mpiexec -n P ecmpi run``
would. An interruption is a real signal (SIGTERM or SIGUSR1 sent to rank 0
during a chosen step): the run must checkpoint and return 75, and
``--resume`` must give a log whose rows equal an uninterrupted run's bit for
bit (timings aside) for stateful algorithms: error feedback with two-level
(worker and server) residuals on ``sra``, DIANA shifts, L-Katyusha snapshots,
QESGD stages, DQ-GD ranges, ECQ-SGD accumulated errors.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from ecmpi import cli
from ecmpi.algorithms import get
from ecmpi.log import open_log, read_checkpoint
from ecmpi.problems import linear

sys.path.insert(0, str(Path(__file__).parent))
from _helpers import log_path

DATA = [
    "--problem",
    "logreg",
    "--dataset",
    "synthetic:n=96,d=6",
    "--l2-rel",
    "1e-2",
    "--seed",
    "5",
    "--quiet",
]
STEPS = 12
CUT = 5  # the signal arrives during step CUT - 1; the checkpoint holds step CUT

STATEFUL = [
    ("ef-sgd", ["--compressor", "qsgd:levels=2", "--collective", "sra", "--batch-size", "4"]),
    ("ec-sgd-diana", ["--compressor", "qsgd:levels=1", "--batch-size", "4"]),
    ("ec-lkatyusha", ["--compressor", "topk:k=2", "--batch-size", "4"]),
    ("qesgd", ["--compressor", "qsgd:levels=2", "--batch-size", "4", "--stage-length", "3"]),
    ("dqgd", ["--bits-per-dim", "3"]),
    ("ecq-sgd", ["--compressor", "qsgd:levels=2", "--batch-size", "4"]),
]


def _assert_same_rows(a, b):
    ka = sorted(k for k in a.trajectory if not k.endswith("_time"))
    assert ka == sorted(k for k in b.trajectory if not k.endswith("_time"))
    for k in ka:
        np.testing.assert_array_equal(a.trajectory[k], b.trajectory[k], err_msg=k)
    np.testing.assert_array_equal(a.x_final, b.x_final)


def _signal_during(monkeypatch, comm, name, step, signum):
    """Rank 0 receives ``signum`` during ``step`` (a real signal, delivered by the OS)."""
    cls = get(name)
    orig = cls.step

    def step_and_signal(self, t):
        if t == step and comm.rank == 0:
            os.kill(os.getpid(), signum)
        return orig(self, t)

    monkeypatch.setattr(cls, "step", step_and_signal)


@pytest.mark.parametrize(("name", "opts"), STATEFUL, ids=[n for n, _ in STATEFUL])
def test_signal_checkpoint_and_resume_equal_uninterrupted(comm, monkeypatch, capsys, name, opts):
    full, cut = log_path(comm, f"{name}-full"), log_path(comm, f"{name}-cut")
    args = ["run", name, *DATA, *opts, "--steps", str(STEPS)]
    try:
        cli.resolve_run_options(args[1:])
    except Exception as exc:  # the same on every rank
        pytest.skip(f"{name} cannot be run from the command line here: {exc}")
    assert cli.main([*args, "--out", full, "--overwrite"]) == 0
    signum = signal.SIGUSR1 if len(name) % 2 else signal.SIGTERM
    with monkeypatch.context() as m:
        _signal_during(m, comm, name, CUT - 1, signum)
        rc = cli.main([*args, "--out", cut, "--overwrite", "--checkpoint-every", "100"])
    assert rc == cli.EXIT_INTERRUPTED
    if comm.rank == 0:
        log = open_log(cut)
        assert log.status == "interrupted" and log.checkpoint_step == CUT
        assert log.attrs["stop_reason"] == "signal"
        assert signal.Signals(signum).name in log.attrs["message"]
        ck = read_checkpoint(cut)
        assert len(ck.states) == comm.size and ck.loop["step"] == CUT
    assert cli.main(["run", "--resume", cut]) == 0
    comm.Barrier()
    if comm.rank == 0:
        done = open_log(cut)
        assert done.status == "completed" and done.attrs["resumed"] == 1
        _assert_same_rows(open_log(full), done)


def test_resume_refuses_other_settings_and_rank_counts(comm, capsys):
    path = log_path(comm, "refuse")
    base = ["run", "ef-sgd", *DATA, "--compressor", "qsgd:levels=2", "--steps", "4"]
    assert cli.main([*base, "--out", path, "--overwrite", "--checkpoint-every", "2"]) == 0
    capsys.readouterr()
    cases = [
        (["--lr", "0.125"], "cannot resume with different settings: --lr"),
        (
            ["--compressor", "qsgd:levels=3", "--seed", "6"],
            "cannot resume with different settings: --compressor, --seed",
        ),
        (["--collective", "ring"], "cannot resume with different settings: --collective"),
    ]
    for extra, needle in cases:
        assert cli.main(["run", "--resume", path, *extra]) == 2
        err = capsys.readouterr().err
        if comm.rank == 0:
            assert needle in err and err.count("ecmpi: error:") == 1, err
        else:
            assert err == ""
    assert cli.main(["run", "sgd", "--resume", path]) == 2
    err = capsys.readouterr().err
    assert comm.rank != 0 or "written by 'ef-sgd', not 'sgd'" in err
    # a longer step budget is allowed
    assert cli.main(["run", "--resume", path, "--steps", "6"]) == 0
    if comm.rank == 0:
        log = open_log(path)
        assert list(log.trajectory["step"]) == list(range(7)) and log.status == "completed"
        with h5py.File(path, "r+") as f:  # as if written by one more rank
            f.attrs["n_ranks"] = comm.size + 1
    comm.Barrier()
    capsys.readouterr()
    assert cli.main(["run", "--resume", path]) == 2
    err = capsys.readouterr().err
    if comm.rank == 0:
        assert f"was run on {comm.size + 1} ranks; resume it with mpiexec -n {comm.size + 1}" in err
    nock = log_path(comm, "nock")
    assert cli.main([*base, "--out", nock, "--overwrite"]) == 0
    capsys.readouterr()
    assert cli.main(["run", "--resume", nock]) == 2
    err = capsys.readouterr().err
    assert comm.rank != 0 or "holds no checkpoint (run with --checkpoint-every N)" in err


def _inf_gradient_on_last_rank(monkeypatch, comm, call):
    """The last rank's ``call``-th minibatch gradient gets an Inf entry."""
    orig = linear.LinearModel.batch_grad
    count = {"n": 0}

    def grad(self, *a, **k):
        g = orig(self, *a, **k)
        count["n"] += 1
        if comm.rank == comm.size - 1 and count["n"] == call:
            g = np.array(g, copy=True)
            g[0] = np.inf
        return g

    monkeypatch.setattr(linear.LinearModel, "batch_grad", grad)


@pytest.mark.parametrize("compressor", ["qsgd:levels=2", "topk:k=6"])
def test_nonfinite_gradient_stops_naming_the_step_or_is_skipped(
    comm, monkeypatch, capsys, compressor
):
    path = log_path(comm, "nonfinite")
    args = [
        "run",
        "ef-sgd",
        *DATA,
        "--compressor",
        compressor,
        "--batch-size",
        "4",
        "--steps",
        "8",
        "--out",
        path,
        "--overwrite",
    ]
    with monkeypatch.context() as m:
        _inf_gradient_on_last_rank(m, comm, call=3)  # one call per step: step 2
        assert cli.main(args) == 1
    err = capsys.readouterr().err
    if comm.rank == 0:
        assert err.count("ecmpi: error:") == 1 and "Traceback" not in err, err
        assert "the iterate became NaN/Inf in step 2" in err
        log = open_log(path)
        assert log.status == "failed" and log.attrs["stop_reason"] == "nonfinite"
        assert list(log.trajectory["step"]) == [0, 1, 2]
    else:
        assert "ecmpi: error" not in err
    with monkeypatch.context() as m:
        _inf_gradient_on_last_rank(m, comm, call=3)
        assert cli.main([*args, "--on-nonfinite", "skip"]) == 0
    if comm.rank == 0:
        log = open_log(path)
        assert log.status == "completed" and log.attrs["skipped_steps"] == 1
        assert list(log.trajectory["step"]) == list(range(9))
        assert np.all(np.isfinite(log.trajectory["loss"])) and np.all(np.isfinite(log.x_final))


def test_divergence_is_reported_with_status_diverged(comm, capsys):
    path = log_path(comm, "diverge")
    rc = cli.main(
        [
            "run",
            "gd",
            "--problem",
            "lsq",
            "--dataset",
            "synthetic:n=64,d=5",
            "--lr",
            "1e3",
            "--steps",
            "200",
            "--out",
            path,
            "--overwrite",
        ]
    )
    assert rc == 0  # a diverged run is a result, not an error
    out = capsys.readouterr().out
    if comm.rank == 0:
        log = open_log(path)
        assert log.status == "diverged" and log.attrs["stop_reason"] == "diverged"
        assert len(log) < 201 and "exceeds the divergence threshold" in log.attrs["message"]
        assert "diverged" in out
