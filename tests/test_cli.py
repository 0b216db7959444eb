"""The ``ecmpi`` command: option validation, config files, overwrite refusal, MPI jobs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ecmpi import cli
from ecmpi.log import open_log

DATA = ["--problem", "lsq", "--dataset", "synthetic:n=200,d=8"]


def _mpiexec() -> str:
    exe = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if exe is None:
        pytest.fail("mpiexec not found")
    return exe


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
    for key in cli.RUN_OPTIONS:
        assert key in c, key
    assert c["steps"] == 6 and c["batch_size"] == 4 and c["seed"] == 9  # CLI beats TOML
    assert c["hyperparameters"] == {
        "schedule": "1/t",
        "t0": 5.0,
        "stage_steps": 100,
        "stage_growth": 2.0,
        "decay": 0.5,
    }
    assert c["resolved"]["lr"] == pytest.approx(1.0 / log.attrs["L"])
    assert log.attrs["algorithm"] == "sgd" and log.attrs["seed"] == 9
    assert log.attrs["n_ranks"] == 1 and log.status == "completed"
    assert list(log.trajectory["step"]) == list(range(7))


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


def _job(n, args, timeout=120, **kw):
    env = dict(os.environ, MPIEXEC_TIMEOUT=str(timeout), OMP_NUM_THREADS="1")
    return subprocess.run(
        [_mpiexec(), "-n", str(n), sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout + 30,
        env=env,
        **kw,
    )


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


def test_mpi_invalid_option_reported_once(tmp_path):
    proc = _job(2, ["-m", "ecmpi", "run", "gd", *DATA, "--steps", "x"])
    assert proc.returncode != 0
    assert proc.stderr.count("ecmpi: error:") == 1, proc.stderr


FAIL_ON_RANK_1 = textwrap.dedent(
    """
    import sys
    from mpi4py import MPI
    from ecmpi import cli
    from ecmpi.algorithms import sgd

    orig = sgd.GD.step
    def step(self, t):
        if t == 3 and MPI.COMM_WORLD.rank == 1:
            raise RuntimeError("boom on rank 1")
        return orig(self, t)
    sgd.GD.step = step
    sys.exit(cli.main(sys.argv[1:]))
    """
)


def test_mpi_exception_on_one_rank_ends_the_job(tmp_path):
    t0 = time.monotonic()
    out = tmp_path / "f.h5"
    proc = _job(
        2,
        ["-c", FAIL_ON_RANK_1, "run", "gd", *DATA, "--steps", "1000", "--quiet", "--out", str(out)],
        timeout=60,
    )
    assert proc.returncode != 0
    assert "boom on rank 1" in proc.stderr
    assert time.monotonic() - t0 < 50
    log = open_log(out)  # killed writer: still readable, rows up to the abort
    assert log.status == "running" and len(log) >= 1


@pytest.mark.parametrize("command", ["analyze", "bench", "reproduce"])
def test_subcommand_help_exits_cleanly(command, capsys):
    """`ecmpi COMMAND --help` prints the usage and returns 0, never an error report."""
    assert cli.main([command, "--help"]) == 0
    out, err = capsys.readouterr()
    assert f"usage: ecmpi {command}" in out
    assert "error" not in err and "Traceback" not in err
