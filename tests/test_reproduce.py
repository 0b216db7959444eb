"""ecmpi reproduce: experiment definitions are valid runs; end to end at small size; errors."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from ecmpi.algorithms import ALGORITHMS, get
from ecmpi.cli import UsageError, resolve_run_options
from ecmpi.cli import main as cli_main
from ecmpi.experiments import EXPERIMENTS, Experiment, FigureSpec, Run, Setting, get_experiment
from ecmpi.experiments.base import flags
from ecmpi.options import resolve_options
from ecmpi.reproduce import ReproduceError, add_arguments, find_mpiexec, main, reproduce


def _available(name: str) -> bool:
    try:
        get(name)
    except (ValueError, ImportError, AttributeError):
        return False
    return True


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
@pytest.mark.parametrize("quick", [True, False])
def test_every_run_is_a_valid_ecmpi_run(name, quick):
    exp = get_experiment(name)
    setting = exp.setting(quick)
    assert exp.name == name and setting.runs and setting.figures
    for run in setting.runs:
        assert run.algorithm in ALGORITHMS, run
        if not _available(run.algorithm):
            continue  # not built yet; reproduce refuses it with a clear message (tested below)
        try:
            alg_cls, opts, hp = resolve_run_options(list(run.argv))
        except UsageError as exc:  # a typo in an experiment must fail here, not in a long run
            pytest.fail(f"{name} run {run.name}: {exc}")
        assert alg_cls.name == run.algorithm and opts["out"] is None
        # the keywords of ecmpi.run (what the examples pass) resolve to the same run
        assert resolve_options(run.algorithm, run.options) == (alg_cls, opts, hp), run.name


def test_flags_and_run_validation():
    assert flags(lr=0.5, batch_size=16, bias=True, l2=None, quiet=False) == (
        "--lr",
        "0.5",
        "--batch-size",
        "16",
        "--bias",
    )
    r = Run("a", ("sgd", "--steps", "300"))
    assert r.with_max_steps(20).argv == ("sgd", "--steps", "20")
    assert r.with_max_steps(1000).argv == r.argv
    assert Run("b", ("gd",)).with_max_steps(5).argv == ("gd", "--steps", "5")
    opts = Run("o", ("ec-lkatyusha", "--lr", "0.5", "--batch-size", "8", "--bias", "--p", "0.2"))
    assert opts.options == {"lr": 0.5, "batch_size": 8, "bias": True, "p": "0.2"}  # p is text
    assert flags(**opts.options) == opts.argv[1:]
    with pytest.raises(ValueError, match="start with the algorithm"):
        Run("c", ("--lr", "1"))
    with pytest.raises(ValueError, match="chooses --out"):
        Run("c", ("gd", "--out", "x.h5"))
    with pytest.raises(ValueError, match="unique"):
        Setting(runs=(r, r), figures=())
    with pytest.raises(ValueError, match="unknown runs"):
        Setting(runs=(r,), figures=(FigureSpec("f", runs=("zzz",)),))
    with pytest.raises(ValueError, match="unknown experiment"):
        get_experiment("nope")


def test_ecq_sgd_quick_is_the_flagship():
    s = get_experiment("ecq-sgd").quick
    assert [r.algorithm for r in s.runs] == ["sgd", "qsgd", "ecq-sgd"]
    comps = [r.argv[r.argv.index("--compressor") + 1] for r in s.runs]
    assert comps[0] == "none" and comps[1] == comps[2] != "none"
    assert all(r.argv[r.argv.index("--dtype") + 1] == "float32" for r in s.runs)  # 32-bit SGD
    # ECQ-SGD runs its defaults (alpha = auto, beta = 1), QSGD and ECQ-SGD one coarse quantizer
    assert "--alpha" not in s.runs[2].argv and "--beta" not in s.runs[2].argv
    assert "levels=1" in comps[1] and "coding=elias" in comps[1]


def test_ecq_sgd_target_is_fixed_in_the_definition():
    from ecmpi.experiments import ecqsgd

    exp = get_experiment("ecq-sgd")
    for s in (exp.quick, exp.full):
        assert s.eps == ecqsgd.EPS_REL and s.eps_relative
    full = exp.full
    seeds = {r.argv[r.argv.index("--seed") + 1] for r in full.runs}
    assert len(seeds) >= 3
    datasets = {r.argv[r.argv.index("--dataset") + 1] for r in full.runs}
    assert datasets == set(ecqsgd.PROBLEMS) and any("cond=" in d for d in datasets)
    comps = {r.argv[r.argv.index("--compressor") + 1].split(":")[0] for r in full.runs}
    assert comps == {"none", "qsgd", "terngrad", "sign", "topk"}
    # the sweep covers stable and unstable (alpha, beta) pairs, plain error feedback included
    sweep = get_experiment("ecq-sgd-sweep").full.runs
    pairs = {(r.options["alpha"], r.options["beta"]) for r in sweep}
    assert (1.0, 1.0) in pairs and len(pairs) == len(sweep)
    assert {r.options["dataset"] for r in get_experiment("ecq-sgd-time").full.runs} == {
        f"syn:d={ecqsgd.TIME_DIM},n={ecqsgd.TIME_ROWS}"
    }


def test_find_mpiexec_prefers_the_one_beside_python(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    exe = fake / "mpiexec"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake / "python"))
    assert find_mpiexec() == [str(exe)]
    exe.unlink()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ReproduceError, match="mpiexec not found"):
        find_mpiexec()


def _tiny(runs, **kw):
    return Experiment(
        name="tiny",
        paper="test",
        description="test",
        quick=Setting(runs=tuple(runs), figures=(FigureSpec("tiny", x=("rounds", "bits")),), **kw),
        full=Setting(runs=tuple(runs), figures=()),
    )


def test_unavailable_algorithm_is_refused_before_running(tmp_path, monkeypatch):
    monkeypatch.setitem(ALGORITHMS, "ghost", "ecmpi.algorithms.no_such_module:Ghost")
    exp = _tiny([Run("g", ("ghost", "--steps", "2"))])
    with pytest.raises(ReproduceError, match=r"ghost \(ModuleNotFoundError") as info:
        reproduce(exp, tmp_path / "out", quick=True, launcher=["false"])
    assert info.value.code == 2 and not (tmp_path / "out").exists()
    exp = _tiny([Run("g", ("unregistered-alg",))])
    with pytest.raises(ReproduceError, match="unregistered-alg \\(not registered\\)"):
        reproduce(exp, tmp_path / "out", quick=True, launcher=["false"])


COMMON = ("--problem", "lsq", "--dataset", "synthetic:n=64,d=4", "--steps", "3")


@pytest.mark.mpi
def test_a_failing_run_reports_its_stderr(tmp_path):
    exp = _tiny([Run("bad", ("gd", *COMMON, "--lr", "-1"))])
    with pytest.raises(ReproduceError, match="run bad failed") as info:
        reproduce(exp, tmp_path, ranks=1, quick=True)
    assert "--lr" in str(info.value) and "positive" in str(info.value)
    assert info.value.code == 1 and not (tmp_path / "table.md").exists()


def test_run_all_runs_each_run_in_this_job(tmp_path):
    """Setting.run_all: one ecmpi.run per run on this process's ranks, logs named by run."""
    from ecmpi import analyze

    runs = (Run("a", ("gd", *COMMON)), Run("b", ("sgd", *COMMON, "--batch-size", "4")))
    paths = Setting(runs=runs, figures=()).run_all(tmp_path / "logs", max_steps=2)
    assert paths == [tmp_path / "logs" / "a.h5", tmp_path / "logs" / "b.h5"]
    df = analyze.load(paths)
    assert list(df["algorithm"]) == ["gd", "sgd"] and list(df["steps"]) == [2, 2]
    assert list(df["batch_size"]) == [1, 4] and set(df["status"]) == {"completed"}


def _args(**kw):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(kw.pop("argv"))


def test_main_exit_status_and_messages(tmp_path, capsys):
    assert main(_args(argv=["dqgd", "--out", str(tmp_path), "-n", "0"])) == 2
    assert "positive rank count" in capsys.readouterr().err
    rc = main(_args(argv=["dqgd", "--out", str(tmp_path), "--launcher", "/nonexistent/mpiexec"]))
    assert rc == 2 and "cannot start" in capsys.readouterr().err
    assert cli_main(["reproduce", "nope", "--out", str(tmp_path)]) == 2


@pytest.mark.slow
@pytest.mark.mpi
def test_ecq_sgd_quick_end_to_end_small(tmp_path, capsys):
    """The README's command at a few steps: logs, figure and table with one row per method."""
    out = tmp_path / "demo"
    rc = cli_main(
        ["reproduce", "ecq-sgd", "--quick", "-n", "2", "--out", str(out), "--max-steps", "12"]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    logs = sorted(p.name for p in (out / "logs").glob("*.h5"))
    assert logs == ["ecq-sgd_iso_s0.h5", "qsgd_iso_s0.h5", "sgd_iso_s0.h5"]
    assert (out / "ecq-sgd.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "table.md").read_text()
    assert md in captured.out
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")][1:]
    assert sorted(r.split("|")[1].strip() for r in rows) == ["ecq-sgd", "qsgd", "sgd"]
    from ecmpi import analyze

    s = analyze.summary(out / "logs", group_by="algorithm").set_index("algorithm")
    assert (s["steps"] == 12).all() and (s["n_runs"] == 1).all()
    assert s.loc["sgd", "compression_ratio"] == 1.0
    assert s.loc["ecq-sgd", "compression_ratio"] > 10.0  # Elias-coded 1-level codes vs floats
    df = analyze.load(out / "logs")
    assert set(df["n_ranks"]) == {2} and set(df["dtype"]) == {"float32"}
    assert isinstance(df, pd.DataFrame) and os.path.commonpath(list(df["file"])) == str(
        Path(out / "logs")
    )
