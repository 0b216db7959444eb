"""The ``ecmpi`` command: option validation, config files, overwrite refusal, MPI jobs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from _launch import _mpiexec

import ecmpi
from ecmpi import cli, options
from ecmpi.log import open_log

DATA = ["--problem", "lsq", "--dataset", "synthetic:n=200,d=8"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "gd", *DATA, "--stepz", "3"], "unrecognized arguments: --stepz"),
        (["run", "gd", *DATA, "--steps", "-1"], "--steps: must be a non-negative integer"),
        (["run", "nope", *DATA], "unknown algorithm 'nope'"),
        (["run", "qsgd", *DATA, "--compressor", "qsgd:levelz=2"], "--compressor: unknown param"),
        (["run", "gd", *DATA, "--l2", "1", "--l2-rel", "1"], "either --l2 or --l2-rel"),
        (["run", "gd", "--problem", "lsq"], "needs --dataset"),
        (["run", "sgd", *DATA, "--schedule", "bogus"], "--schedule: must be one of"),
        (["run", "gd", *DATA, "--schedule", "1/t"], "unrecognized arguments: --schedule"),
        (["run", "gd", *DATA, "--on-nonfinite", "ignore"], "--on-nonfinite: must be one of"),
        (["run"], "give an ALGORITHM"),
        (["frobnicate"], "unknown command"),
    ],
)
def test_invalid_options(args, needle, capsys, tmp_path):
    out = tmp_path / "never.h5"
    assert cli.main([*args, "--out", str(out)] if args[0] == "run" else args) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert err.count("ecmpi: error:") == 1 and "Traceback" not in err
    assert not out.exists()


def test_bad_config_files(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = [1,\n")
    assert cli.main(["run", "gd", *DATA, "--config", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    unk = tmp_path / "unk.toml"
    unk.write_text("stepz = 3\n")
    assert cli.main(["run", "gd", *DATA, "--config", str(unk)]) == 2
    assert "unknown key(s) stepz" in capsys.readouterr().err
    assert cli.main(["run", "gd", *DATA, "--config", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_config_file_cli_precedence_and_echo(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        textwrap.dedent(
            """
            algorithm = "sgd"
            problem = "lsq"
            dataset = "synthetic:n=200,d=8"
            steps = 50
            batch-size = 4
            seed = 9
            [hyperparameters]
            schedule = "1/t"
            t0 = 5
            """
        )
    )
    out = tmp_path / "run.h5"
    assert cli.main(["run", "--config", str(cfg), "--steps", "6", "--out", str(out)]) == 0
    assert "| status" in capsys.readouterr().out
    log = open_log(out)
    c = log.config
    for key in options.RUN_OPTIONS:
        assert key in c, key
    assert c["steps"] == 6 and c["batch_size"] == 4 and c["seed"] == 9  # CLI beats TOML
    assert c["hyperparameters"] == {
        "schedule": "1/t",
        "t0": 5.0,
        "stage_steps": 100,
        "stage_growth": 2.0,
        "decay": 0.5,
    }
    from mpi4py import MPI

    from ecmpi.algorithms.sgd import batch_smoothness
    from ecmpi.problems import make

    prob = make("lsq", "synthetic:n=200,d=8", comm=MPI.COMM_SELF)
    assert prob.L == pytest.approx(log.attrs["L"])
    # stochastic drivers: 1/L_b, the expected smoothness of a 4-row minibatch
    assert c["resolved"]["lr"] == pytest.approx(1.0 / batch_smoothness(prob, 4))
    assert log.attrs["algorithm"] == "sgd" and log.attrs["seed"] == 9
    assert log.attrs["n_ranks"] == 1 and log.status == "completed"
    assert list(log.trajectory["step"]) == list(range(7))


def test_python_run_writes_the_log_of_the_same_command(tmp_path, capsys):
    """``ecmpi.run(...)`` from Python is ``ecmpi run`` on the command line: equal rows."""
    via_cli, via_py = tmp_path / "cli.h5", tmp_path / "py.h5"
    args = ["run", "gd", *DATA, "--l2-rel", "1e-2", "--steps", "8", "--seed", "3", "--quiet"]
    assert cli.main([*args, "--out", str(via_cli)]) == 0
    res = ecmpi.run(
        "gd",
        problem="lsq",
        dataset="synthetic:n=200,d=8",
        l2_rel=1e-2,
        steps=8,
        seed=3,
        quiet=True,
        out=via_py,
    )
    assert isinstance(res, ecmpi.RunResult)
    assert res.status == "completed" and res.steps == 8
    assert capsys.readouterr().out == ""
    a, b = open_log(via_cli), open_log(via_py)
    assert len(a) == len(b) == 9 and b.status == "completed"
    for k in a.trajectory:
        if not k.endswith("_time"):
            np.testing.assert_array_equal(a.trajectory[k], b.trajectory[k], err_msg=k)
    np.testing.assert_array_equal(a.x_final, b.x_final)
    assert a.config["hyperparameters"] == b.config["hyperparameters"]
    assert {k: v for k, v in a.config.items() if k != "out"} == {
        k: v for k, v in b.config.items() if k != "out"
    }


def test_python_run_refuses_unknown_and_invalid_options(tmp_path):
    out = tmp_path / "never.h5"
    with pytest.raises(
        cli.UsageError, match=r"unknown option\(s\) stepz for gd.*did you mean steps"
    ):
        ecmpi.run("gd", dataset="synthetic:n=200,d=8", stepz=3, out=out)
    with pytest.raises(cli.UsageError, match="schedule"):  # sgd's, not gd's
        ecmpi.run("gd", dataset="synthetic:n=200,d=8", schedule="1/t", out=out)
    with pytest.raises(cli.UsageError, match="steps: must be a non-negative integer"):
        ecmpi.run("gd", dataset="synthetic:n=200,d=8", steps=-1, out=out)
    with pytest.raises(cli.UsageError, match="unknown algorithm 'nope'"):
        ecmpi.run("nope", dataset="synthetic:n=200,d=8", out=out)
    assert not out.exists()


def test_python_run_resumes_a_checkpointed_log(tmp_path):
    path = tmp_path / "r.h5"
    kw = {"dataset": "synthetic:n=200,d=8", "quiet": True}
    assert ecmpi.run("gd", steps=4, checkpoint_every=2, out=path, **kw).steps == 4
    with pytest.raises(cli.UsageError, match="cannot resume with different settings: lr"):
        ecmpi.run("gd", resume=path, steps=6, lr=0.1, **kw)
    res = ecmpi.run("gd", resume=str(path), steps=6, **kw)
    assert res.status == "completed" and res.steps == 6
    log = open_log(path)
    assert log.status == "completed" and list(log.trajectory["step"]) == list(range(7))


def test_docs_option_table_is_generated_from_the_definitions():
    """docs/cli.md holds ``python -m ecmpi.options --markdown`` between its markers;
    regenerate it with ``python -m ecmpi.options --write-docs docs/cli.md``."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
    assert options.write_docs(doc, check=True), "docs/cli.md: stale option table"
    table = options.markdown_table()
    for name in [*options.RUN_OPTIONS, *options.CONTROL_OPTIONS]:
        assert f"`--{name.replace('_', '-')}" in table, name


def test_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run.h5"
    out.write_bytes(b"keep me")
    assert cli.main(["run", "gd", *DATA, "--steps", "2", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert cli.main(["run", "gd", *DATA, "--steps", "2", "--out", str(out), "--overwrite"]) == 0
    assert open_log(out).status == "completed"


def test_info_and_unavailable_subcommand(capsys, monkeypatch):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("ecmpi", "numpy", "mpi4py", "mpi_library", "gpu", "gpu_aware_mpi"):
        assert key in out
    monkeypatch.setitem(cli._LAZY_COMMANDS, "bench", ("ecmpi._no_such_module", "x"))
    assert cli.main(["bench"]) == 2
    assert "not available" in capsys.readouterr().err


def _job(n, args, timeout=120, extra_env=None, **kw):
    env = dict(os.environ, MPIEXEC_TIMEOUT=str(timeout), OMP_NUM_THREADS="1", **(extra_env or {}))
    return subprocess.run(
        [_mpiexec(), "-n", str(n), sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout + 30,
        env=env,
        **kw,
    )


@pytest.mark.mpi
def test_mpi_rerun_is_bitwise_identical(tmp_path):
    logs = []
    for i in range(2):
        out = tmp_path / f"r{i}.h5"
        args = [
            "-m",
            "ecmpi",
            "run",
            "ef-sgd",
            "--problem",
            "logreg",
            "--dataset",
            "synthetic:n=300,d=10",
            "--l2-rel",
            "1e-2",
            "--compressor",
            "qsgd:levels=2",
            "--collective",
            "sra",
            "--batch-size",
            "8",
            "--steps",
            "20",
            "--seed",
            "4",
            "--quiet",
            "--out",
            str(out),
        ]
        proc = _job(2, args)
        assert proc.returncode == 0, proc.stderr
        logs.append(open_log(out))
    a, b = logs
    assert a.attrs["n_ranks"] == 2 and len(a) == 21
    for k in a.trajectory:
        if not k.endswith("_time"):
            np.testing.assert_array_equal(a.trajectory[k], b.trajectory[k], err_msg=k)
    np.testing.assert_array_equal(a.x_final, b.x_final)


@pytest.mark.mpi
def test_mpi_invalid_option_reported_once(tmp_path):
    proc = _job(2, ["-m", "ecmpi", "run", "gd", *DATA, "--steps", "x"])
    assert proc.returncode != 0
    assert proc.stderr.count("ecmpi: error:") == 1, proc.stderr


PER_RANK_STEPS = textwrap.dedent(
    """
    import sys
    from mpi4py import MPI
    from ecmpi import cli

    steps = sys.argv[1].split(",")[MPI.COMM_WORLD.rank]
    sys.exit(cli.main(["run", "gd", *sys.argv[2:], "--steps", steps, "--quiet"]))
    """
)


@pytest.mark.parametrize(
    ("steps", "needle"),
    [
        ("5,5,7", "ranks were given different settings: steps (rank 0: 5, rank 2: 7)"),
        ("5,x,5", "--steps: "),  # invalid on one rank only
    ],
)
@pytest.mark.mpi
def test_mpi_ranks_disagreeing_on_options_all_stop_with_one_error(steps, needle, tmp_path):
    """Different or invalid settings on some ranks: every rank exits 2, one message, no hang."""
    proc = _job(3, ["-c", PER_RANK_STEPS, steps, *DATA], timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("ecmpi: error:") == 1, proc.stderr
    assert needle in proc.stderr


FAIL_ON_RANK = textwrap.dedent(
    """
    import os, sys, time
    from mpi4py import MPI
    from ecmpi import cli
    from ecmpi.algorithms import sgd

    rank = int(os.environ["FAIL_RANK"])
    orig = sgd.GD.step
    def step(self, t):
        if t == 3 and MPI.COMM_WORLD.rank == rank:
            print(f"raised at {time.time()!r}", file=sys.stderr, flush=True)
            raise RuntimeError(f"boom on rank {rank}")
        return orig(self, t)
    sgd.GD.step = step
    sys.exit(cli.main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize(("n", "rank"), [(2, 1), (3, 2), (2, 0)])
@pytest.mark.mpi
def test_mpi_exception_on_one_rank_ends_the_job_and_marks_the_log_failed(tmp_path, n, rank):
    """Step 3 raises on one rank: the cause is printed once, the job ends within seconds
    and rank 0's log says ``failed`` with the message, whichever rank failed."""
    out = tmp_path / "f.h5"
    args = ["-c", FAIL_ON_RANK, "run", "gd", *DATA, "--steps", "100000", "--quiet"]
    proc = _job(n, [*args, "--out", str(out)], timeout=90, extra_env={"FAIL_RANK": str(rank)})
    ended = time.time()
    assert proc.returncode == 1, proc.stderr
    cause = f"RuntimeError: boom on rank {rank}"
    assert proc.stderr.count(cause) == 1, proc.stderr
    assert proc.stderr.count("ecmpi: error") == 1, proc.stderr
    assert f"ecmpi: error on rank {rank}:" in proc.stderr
    raised = float(proc.stderr.split("raised at ", 1)[1].split()[0])
    assert ended - raised < 10, f"the job took {ended - raised:.1f} s to end after the error"
    log = open_log(out)
    assert log.status == "failed", log.attrs
    assert log.attrs["stop_reason"] == "exception"
    expected = cause if rank == 0 else f"on rank {rank}: {cause}"
    assert log.attrs["message"] == expected
    # rows 0..2 precede the collectives of the failing step; row 3 may race the error
    assert len(log) in (3, 4)
    np.testing.assert_array_equal(log.trajectory["step"], np.arange(len(log)))
    assert log.x_final is None


@pytest.mark.mpi
def test_mpi_normal_run_ends_promptly_with_the_error_channel(tmp_path):
    """The channel's shutdown (stop the thread, cancel its receive) adds < 0.2 s at exit."""
    out = tmp_path / "ok.h5"
    script = textwrap.dedent(
        """
        import sys, time
        from ecmpi import cli, error_channel
        close = error_channel.close_channel
        spent = []
        def timed():
            t0 = time.perf_counter()
            close()
            spent.append(time.perf_counter() - t0)
        error_channel.close_channel = timed
        rc = cli.main(sys.argv[1:])
        print(f"close took {max(spent)!r} s", flush=True)
        assert error_channel.active_channel() is None
        sys.exit(rc)
        """
    )
    t0 = time.monotonic()
    args = ["run", "gd", *DATA, "--steps", "30", "--quiet", "--out", str(out)]
    proc = _job(3, ["-c", script, *args])
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 60
    spent = [float(v) for v in re.findall(r"close took ([-+.e0-9]+) s", proc.stdout)]
    assert len(spent) == 3 and max(spent) < 0.2, proc.stdout
    log = open_log(out)
    assert log.status == "completed" and len(log) == 31


@pytest.mark.parametrize("command", ["analyze", "bench", "reproduce"])
def test_subcommand_help_exits_cleanly(command, capsys):
    """`ecmpi COMMAND --help` prints the usage and returns 0, never an error report."""
    assert cli.main([command, "--help"]) == 0
    out, err = capsys.readouterr()
    assert f"usage: ecmpi {command}" in out
    assert "error" not in err and "Traceback" not in err
