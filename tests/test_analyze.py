"""ecmpi analyze: tables with exactly known values, plots, formats, bad files, live logs."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest

from ecmpi import analyze
from ecmpi.analyze import format_table, load, plot, summary
from ecmpi.cli import main as cli_main
from ecmpi.log import BASE_COLUMNS, SCHEMA, SchemaError, TrajectoryWriter

HALVING = [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625]


def write_log(
    path,
    sub=HALVING,
    *,
    steps=None,
    algorithm="sgd",
    compressor="none",
    seed=0,
    n_ranks=2,
    collective="allgather",
    problem="lsq",
    dataset="synthetic:n=100,d=5",
    status="completed",
    bits_per_step=64.0,
    down_factor=1.0,
    dt=0.5,
    f_star=2.0,
    schema=SCHEMA,
    config=None,
    lengths=None,
    L=1.0,
    mu=0.1,
    extra_attrs=None,
):
    """A log written with plain h5py, following the ecmpi.trajectory/1 schema exactly.

    ``bits_up = bits_per_step * step``, ``bits_down = down_factor * bits_up``,
    ``wall_time = dt * step``, ``loss = sub + f_star``. ``lengths`` cuts
    individual datasets (a partially written row). ``extra_attrs``: optional
    root attributes (e.g. ``self_quantizing``).
    """
    sub = np.asarray(sub, dtype=float)
    step = np.arange(len(sub)) if steps is None else np.asarray(steps)
    cols = {
        "step": step.astype(np.int64),
        "loss": sub + f_star,
        "suboptimality": sub,
        "dist_to_opt": np.sqrt(sub),
        "grad_norm": np.sqrt(sub),
        "bits_up": bits_per_step * step,
        "bits_down": down_factor * bits_per_step * step,
        "wall_time": dt * step,
        "comm_time": 0.1 * dt * step,
        "compress_time": 0.01 * dt * step,
    }
    cfg = {"lr": 0.5, "steps": int(step[-1]), "hyperparameters": {"levels": 4}}
    cfg.update(config or {})
    with h5py.File(path, "w", libver="latest") as f:
        attrs = {
            "schema": schema,
            "algorithm": algorithm,
            "problem": problem,
            "dataset": dataset,
            "compressor": compressor,
            "collective": collective,
            "n_ranks": n_ranks,
            "seed": seed,
            "config": json.dumps(cfg),
            "f_star": f_star,
            "L": L,
            "mu": mu,
            "ecmpi_version": "0.1.0",
            "mpi_library": "test",
            "status": status,
            "started_at": "2024-01-01T00:00:00+00:00",
            **(extra_attrs or {}),
        }
        for k, v in attrs.items():
            f.attrs[k] = v
        g = f.create_group("trajectory")
        for name in BASE_COLUMNS:
            data = cols[name]
            if lengths and name in lengths:
                data = data[: lengths[name]]
            g.create_dataset(name, data=data, maxshape=(None,), chunks=True)
        f.create_dataset("x_final", data=np.zeros(5))
        f.create_group("checkpoint")
    return path


@pytest.fixture
def pair(tmp_path):
    """A full-precision run and a 8x cheaper compressed run that needs one more step."""
    base = write_log(tmp_path / "base.h5", bits_per_step=64.0)
    comp_sub = [1.0, 0.6, 0.3, 0.15, 0.075, 0.0375, 0.01875]
    comp = write_log(
        tmp_path / "comp.h5",
        comp_sub,
        algorithm="qsgd",
        compressor="qsgd:levels=4",
        bits_per_step=8.0,
    )
    return base, comp


# ---------------------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------------------
def test_load_columns_and_config(pair, tmp_path):
    df = load(tmp_path)
    assert list(df.columns[:9]) == list(analyze.ID_COLUMNS)
    assert sorted(df["file"].map(lambda p: p.rsplit("/", 1)[-1])) == ["base.h5", "comp.h5"]
    row = df.set_index("algorithm").loc["qsgd"]
    assert row["compressor"] == "qsgd:levels=4" and row["n_ranks"] == 2 and row["seed"] == 0
    assert row["hyperparameters.levels"] == 4 and row["lr"] == 0.5
    assert row["f_star"] == 2.0 and row["rows"] == 7
    np.testing.assert_array_equal(row["trajectory"]["bits_up"], 8.0 * np.arange(7))


def test_find_logs_globs_and_dirs(pair, tmp_path):
    base, comp = pair
    assert analyze.find_logs(str(tmp_path / "*.h5")) == [base, comp]
    assert analyze.find_logs([base, base, tmp_path]) == [base, comp]
    with pytest.raises(FileNotFoundError, match="no log file matches"):
        analyze.find_logs(str(tmp_path / "nothing*.h5"))
    with pytest.raises(FileNotFoundError, match="no such log file"):
        analyze.find_logs(tmp_path / "missing.h5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no"):
        analyze.find_logs(tmp_path / "empty")


# ---------------------------------------------------------------------------------------
# summary: exact values
# ---------------------------------------------------------------------------------------
def test_rounds_bits_time_to_eps_exact(pair):
    base, comp = pair
    s = summary([base, comp], eps=0.2).set_index("algorithm")
    # base: 0.125 <= 0.2 first at step 3; comp: 0.15 <= 0.2 first at step 3
    assert s.loc["sgd", "rounds_to_eps"] == 3 and s.loc["qsgd", "rounds_to_eps"] == 3
    assert s.loc["sgd", "bits_up_to_eps"] == 3 * 64 and s.loc["qsgd", "bits_up_to_eps"] == 3 * 8
    assert s.loc["sgd", "bits_to_eps"] == 2 * 3 * 64
    assert s.loc["sgd", "time_to_eps"] == 1.5
    assert s.loc["qsgd", "compression_ratio"] == 8.0
    # the boundary is inclusive: f - f* <= eps
    s = summary([base, comp], eps=0.125).set_index("algorithm")
    assert s.loc["sgd", "rounds_to_eps"] == 3 and s.loc["qsgd", "rounds_to_eps"] == 4
    assert s.loc["qsgd", "compression_ratio"] == pytest.approx((3 * 64) / (4 * 8))
    assert s.loc["sgd", "compression_ratio"] == 1.0
    assert s.loc["qsgd", "baseline"] == str(base)


def test_rounds_to_eps_counts_from_the_last_crossing(tmp_path):
    # dips below 0.2 at step 2, rises above at step 3, stays below from step 4 on
    bouncy = write_log(tmp_path / "b.h5", [1.0, 0.5, 0.1, 0.3, 0.15, 0.1, 0.05], seed=1)
    risen = write_log(tmp_path / "r.h5", [1.0, 0.1, 0.05, 0.1, 0.3, 0.4, 0.5], seed=2)
    s = summary([bouncy, risen], eps=0.2).set_index("seed")
    assert s.loc[1, "reached"] and s.loc[1, "rounds_to_eps"] == 4
    assert s.loc[1, "bits_up_to_eps"] == 4 * 64 and s.loc[1, "time_to_eps"] == 2.0
    # below eps at steps 1-3 but above it at the end: not reached
    assert not s.loc[2, "reached"] and np.isnan(s.loc[2, "rounds_to_eps"])


def test_relative_eps_is_a_fraction_of_each_runs_start(tmp_path):
    a = write_log(tmp_path / "a.h5", HALVING, dataset="syn:d=4")  # f(x0) - f* = 1
    b = write_log(tmp_path / "b.h5", [4 * v for v in HALVING], dataset="syn:d=8")  # 4
    s = summary([a, b], eps=0.1, eps_relative=True).set_index("dataset")
    # each stays <= 0.1 of its start from step 4 on (0.0625 and 0.25 <= 0.4)
    assert list(s["rounds_to_eps"]) == [4, 4] and list(s["eps_abs"]) == [0.1, 0.4]
    assert summary([a, b], eps=0.1).set_index("dataset").loc["syn:d=8", "rounds_to_eps"] == 6
    assert "(f(x0)-f*)" in format_table(summary([a], eps=0.1, eps_relative=True), "md")
    late = write_log(tmp_path / "c.h5", HALVING, steps=range(1, 8))
    with pytest.raises(ValueError, match="step-0 row"):
        summary([late], eps=0.1, eps_relative=True)


def test_final_values_and_ratio_at_equal_steps(tmp_path):
    # the baseline logs every 2nd step up to 6, the compressed run every step up to 5:
    # the largest common step > 0 is 4
    base = write_log(tmp_path / "b.h5", [1, 0.5, 0.25, 0.1], steps=[0, 2, 4, 6], bits_per_step=64)
    comp = write_log(
        tmp_path / "c.h5",
        [1, 0.9, 0.8, 0.7, 0.6, 0.55],
        algorithm="ef-sgd",
        compressor="sign",
        bits_per_step=2.0,
    )
    s = summary([base, comp]).set_index("algorithm")
    assert "rounds_to_eps" not in s.columns
    assert s.loc["ef-sgd", "compression_ratio"] == 64 * 4 / (2.0 * 4)
    assert s.loc["ef-sgd", "steps"] == 5 and s.loc["sgd", "steps"] == 6
    assert s.loc["ef-sgd", "final_suboptimality"] == 0.55
    assert s.loc["ef-sgd", "final_loss"] == 2.55
    assert s.loc["ef-sgd", "bits_up"] == 10.0 and s.loc["ef-sgd", "bits_total"] == 20.0
    assert s.loc["sgd", "time"] == 3.0


def test_not_reached_is_reported_not_raised(pair):
    s = summary(list(pair), eps=1e-9)
    assert not s["reached"].any()
    assert s["rounds_to_eps"].isna().all() and s["compression_ratio"].isna().all()
    for fmt in ("text", "md"):
        out = format_table(s, fmt)
        assert out.count("not reached") >= 2 * 4, out


def test_baseline_is_the_same_problem_not_another_regularization(tmp_path):
    # one dataset, three lambdas (mu = lambda for l2-logistic regression): each compressed
    # run is compared with the full-precision run of its own lambda, even when another
    # lambda's reference sorts first or shares the rank count and seed
    for lam, base_bits in ((1e-2, 64), (1e-3, 32), (1e-4, 16)):
        tag = f"{lam:.0e}"
        write_log(tmp_path / f"a_base_{tag}.h5", bits_per_step=base_bits, mu=lam, L=1 + lam)
        write_log(
            tmp_path / f"b_topk_{tag}.h5",
            algorithm="ec-gd",
            compressor="topk:k=3",
            bits_per_step=4,
            mu=lam,
            L=1 + lam,
        )
    # the same problem logged with constants that differ by rounding only still matches
    write_log(
        tmp_path / "c_topk_rounded.h5",
        compressor="topk:k=3",
        bits_per_step=8,
        mu=1e-3 * (1 + 1e-12),
        L=1 + 1e-3,
    )
    s = summary(tmp_path).set_index("file")
    for lam, base_bits in ((1e-2, 64), (1e-3, 32), (1e-4, 16)):
        run = s.loc[str(tmp_path / f"b_topk_{lam:.0e}.h5")]
        assert run["baseline"] == str(tmp_path / f"a_base_{lam:.0e}.h5")
        assert run["compression_ratio"] == base_bits / 4
    assert s.loc[str(tmp_path / "c_topk_rounded.h5"), "compression_ratio"] == 32 / 8


def test_baseline_prefers_same_ranks_then_seed(tmp_path):
    write_log(tmp_path / "a_base_p4.h5", bits_per_step=64, n_ranks=4)
    write_log(tmp_path / "b_base_p2_s1.h5", bits_per_step=32, seed=1)
    write_log(tmp_path / "c_base_p2_s0.h5", bits_per_step=16)
    write_log(tmp_path / "d_other_dataset.h5", bits_per_step=128, dataset="other")
    write_log(tmp_path / "e_run.h5", algorithm="qsgd", compressor="qsgd", bits_per_step=4)
    write_log(tmp_path / "f_lonely.h5", algorithm="qsgd", compressor="qsgd", problem="logreg")
    s = summary(tmp_path).set_index("file")
    run = s.loc[str(tmp_path / "e_run.h5")]
    assert run["baseline"] == str(tmp_path / "c_base_p2_s0.h5")
    assert run["compression_ratio"] == 16 / 4
    lonely = s.loc[str(tmp_path / "f_lonely.h5")]
    assert pd.isna(lonely["baseline"]) and math.isnan(lonely["compression_ratio"])
    assert "n/a" in format_table(summary(tmp_path), "text")


def test_grouping_mean_and_spread_over_seeds(tmp_path):
    # seeds reach eps=0.1 at steps 3, 4, 6 and one seed never does
    curves = {
        0: [1, 0.5, 0.3, 0.1, 0.05],
        1: [1, 0.5, 0.3, 0.2, 0.1],
        2: [1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.05],
        3: [1, 0.9, 0.8],
    }
    for seed, c in curves.items():
        write_log(
            tmp_path / f"q{seed}.h5",
            c,
            algorithm="qsgd",
            compressor="qsgd",
            seed=seed,
            bits_per_step=8,
            status="failed" if seed == 3 else "completed",
        )
    for seed in range(2):
        write_log(tmp_path / f"s{seed}.h5", [1, 0.5, 0.1], seed=seed)
    g = summary(tmp_path, eps=0.1, group_by="algorithm,compressor").set_index("algorithm")
    q = g.loc["qsgd"]
    assert q["n_runs"] == 4 and q["n_reached"] == 3
    assert q["statuses"] == "completed x3, failed x1"
    assert q["rounds_to_eps"] == pytest.approx(13 / 3)
    assert q["rounds_to_eps_std"] == pytest.approx(np.std([3, 4, 6], ddof=1))
    assert q["rounds_to_eps_min"] == 3 and q["rounds_to_eps_max"] == 6
    assert q["bits_up_to_eps"] == pytest.approx(8 * 13 / 3)
    # per seed the baseline (same seed where there is one) reaches eps at step 2
    ratios = [64 * 2 / (8 * 3), 64 * 2 / (8 * 4), 64 * 2 / (8 * 6)]  # seed 2 uses seed 0's
    assert q["compression_ratio"] == pytest.approx(np.mean(ratios))
    assert q["final_suboptimality"] == pytest.approx(np.mean([0.05, 0.1, 0.05, 0.8]))
    s = g.loc["sgd"]
    assert s["n_runs"] == 2 and math.isnan(s["rounds_to_eps_std"]) is False
    assert s["rounds_to_eps_std"] == 0.0 and s["statuses"] == "completed"
    text = format_table(summary(tmp_path, eps=0.1, group_by=["algorithm"]), "text")
    assert "3/4" in text and "±" in text


def test_summary_argument_errors(pair):
    with pytest.raises(ValueError, match="cannot group by 'nope'"):
        summary(list(pair), group_by=["nope"])
    with pytest.raises(ValueError, match="eps must be a positive"):
        summary(list(pair), eps=-1.0)
    with pytest.raises(TypeError, match="eps must be a number"):
        summary(list(pair), eps="abc")
    with pytest.raises(ValueError, match="format must be one of"):
        format_table(summary(list(pair)), "xml")
    with pytest.raises(ValueError, match=r"from ecmpi\.analyze\.load"):
        summary(pd.DataFrame({"a": [1]}))


# ---------------------------------------------------------------------------------------
# formats parse back
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("group_by", [None, ["algorithm"]])
def test_formats_parse_back(pair, group_by):
    s = summary(list(pair), eps=0.2, group_by=group_by)
    csv = pd.read_csv(io.StringIO(format_table(s, "csv")))
    assert list(csv.columns) == list(s.columns) and len(csv) == len(s)
    np.testing.assert_allclose(csv["compression_ratio"], s["compression_ratio"])
    np.testing.assert_allclose(csv["rounds_to_eps"], s["rounds_to_eps"])
    records = json.loads(format_table(s, "json"))
    assert len(records) == len(s) and set(records[0]) == set(s.columns)
    assert [r["rounds_to_eps"] for r in records] == list(s["rounds_to_eps"])
    md = format_table(s, "md").splitlines()
    table = [ln for ln in md if ln.startswith("|")]
    assert len(table) == 2 + len(s)
    assert len({ln.count("|") for ln in table}) == 1  # every row has the same columns
    text = format_table(s, "text").splitlines()
    assert text[0].split()[0] == ("algorithm" if group_by else "file")
    assert set(text[1]) <= {"-", " "} and len(text) == 2 + len(s) + 2  # + blank + note


def test_json_uses_null_for_not_reached(pair):
    records = json.loads(format_table(summary(list(pair), eps=1e-9), "json"))
    assert all(r["rounds_to_eps"] is None and r["reached"] is False for r in records)


# ---------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------
def _data_lines(ax):
    return [ln for ln in ax.get_lines() if not ln.get_label().startswith("eps")]


def test_plot_one_line_per_run_and_panels(pair, tmp_path):
    out = tmp_path / "fig.svg"
    fig = plot(list(pair), x="rounds,bits", eps=0.2, path=out)
    axes = fig.get_axes()
    assert len(axes) == 2
    for ax in axes:
        assert ax.get_yscale() == "log"
        assert len(_data_lines(ax)) == 2
        assert len(ax.get_lines()) == 3  # plus the eps line
    assert axes[0].get_xlabel().startswith("rounds") and "bits" in axes[1].get_xlabel()
    by_label = {ln.get_label(): ln for ln in _data_lines(axes[1])}
    np.testing.assert_array_equal(by_label["qsgd · qsgd:levels=4"].get_xdata(), 8.0 * np.arange(7))
    np.testing.assert_array_equal(by_label["sgd · none"].get_xdata(), 64.0 * np.arange(7))
    colours = {ln.get_color() for ln in _data_lines(axes[0])}
    assert colours <= set(analyze.OKABE_ITO) and len(colours) == 2
    assert out.stat().st_size > 1000 and out.read_text().lstrip().startswith("<?xml")


def test_plot_groups_mean_and_band(tmp_path):
    for seed in range(3):
        c = np.array(HALVING) * (1 + seed)
        write_log(tmp_path / f"q{seed}.h5", c, algorithm="qsgd", compressor="qsgd", seed=seed)
    write_log(tmp_path / "s.h5", HALVING)
    write_log(tmp_path / "f.h5", HALVING[:3], algorithm="ec-gd", status="failed")
    fig = plot(tmp_path, x="time", group_by="algorithm", spread="minmax")
    (ax,) = fig.get_axes()
    lines = {ln.get_label(): ln for ln in _data_lines(ax)}
    assert len(lines) == 3
    q = lines["qsgd (n=3)"]
    np.testing.assert_allclose(q.get_ydata(), np.array(HALVING) * 2.0)  # mean of 1x, 2x, 3x
    np.testing.assert_allclose(q.get_xdata(), 0.5 * np.arange(7))
    assert any("failed" in lab for lab in lines)
    bands = [
        c
        for c in ax.collections
        if c.__class__.__name__ == "FillBetweenPolyCollection"
        or c.__class__.__name__ == "PolyCollection"
    ]
    assert len(bands) == 1  # only the group with several runs gets a band
    verts = bands[0].get_paths()[0].vertices
    assert verts[:, 1].max() == pytest.approx(3.0) and verts[:, 1].min() == pytest.approx(
        HALVING[-1]
    )
    fig = plot(tmp_path, group_by="algorithm", spread="none")
    assert len(fig.get_axes()[0].collections) == 0


@pytest.mark.parametrize("ext", ["png", "pdf"])
def test_plot_files(pair, tmp_path, ext):
    out = tmp_path / f"fig.{ext}"
    plot(list(pair), path=out)
    head = out.read_bytes()[:8]
    assert head.startswith(b"\x89PNG" if ext == "png" else b"%PDF")


def test_plot_errors(pair, tmp_path):
    with pytest.raises(ValueError, match="x must be one or more of"):
        plot(list(pair), x="epochs")
    with pytest.raises(ValueError, match="must end in"):
        plot(list(pair), path=tmp_path / "fig.jpg")
    with pytest.raises(ValueError, match="spread must be"):
        plot(list(pair), spread="iqr")


# ---------------------------------------------------------------------------------------
# bad, partial and live files
# ---------------------------------------------------------------------------------------
def test_bad_files_give_clear_errors(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with pytest.raises(SchemaError, match="not an ecmpi trajectory log"):
        load(foreign)
    other = write_log(tmp_path / "v2.h5", schema="ecmpi.trajectory/2")
    with pytest.raises(SchemaError, match=r"has schema 'ecmpi\.trajectory/2'"):
        load(other)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not HDF5")
    with pytest.raises(SchemaError, match="not a readable HDF5 file"):
        load(garbage)
    good = write_log(tmp_path / "good.h5")
    with pytest.warns(RuntimeWarning, match="skipping"):
        df = load(tmp_path, on_error="warn")
    assert list(df["file"]) == [str(good)]


def test_partially_written_file_reads_consistent_length(tmp_path):
    p = write_log(tmp_path / "partial.h5", status="running", lengths={"loss": 5, "bits_up": 6})
    df = load(p)
    traj = df.loc[0, "trajectory"]
    assert {len(v) for v in traj.values()} == {5}
    s = summary(p, eps=0.1)
    assert s.loc[0, "steps"] == 4 and s.loc[0, "status"] == "running"
    assert s.loc[0, "rounds_to_eps"] == 4  # 0.0625 at step 4; step 5 was cut off
    assert "running" in format_table(s, "text")
    fig = plot(p)
    assert len(fig.get_axes()[0].get_lines()[0].get_xdata()) == 5
    assert "running" in fig.get_axes()[0].get_lines()[0].get_label()


def test_reads_a_log_while_it_is_written(tmp_path):
    p = tmp_path / "live.h5"
    w = TrajectoryWriter(p, {"algorithm": "gd", "problem": "lsq", "f_star": 0.0}, {"lr": 1.0})
    w.start()
    for t in range(4):
        w.append({"step": t, "loss": 0.5**t, "suboptimality": 0.5**t, "bits_up": 10.0 * t})
    try:
        s = summary(p, eps=0.3)
        assert s.loc[0, "status"] == "running" and s.loc[0, "rounds_to_eps"] == 2
        w.append({"step": 4, "loss": 0.0625, "suboptimality": 0.0625, "bits_up": 40.0})
        assert summary(p).loc[0, "steps"] == 4
    finally:
        w.close("failed")
    assert summary(p).loc[0, "status"] == "failed"


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------
def test_cli_table_plot_and_formats(pair, tmp_path, capsys):
    base, comp = pair
    fig = tmp_path / "cli.png"
    rc = cli_main(
        [
            "analyze",
            str(base),
            str(comp),
            "--eps",
            "0.2",
            "--plot",
            str(fig),
            "--x",
            "rounds,bits",
            "--format",
            "json",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert len(json.loads(out.out)) == 2 and fig.stat().st_size > 1000
    table = tmp_path / "t.csv"
    rc = cli_main(
        [
            "analyze",
            str(tmp_path / "*.h5"),
            "--group-by",
            "algorithm",
            "--format",
            "csv",
            "--out",
            str(table),
        ]
    )
    assert rc == 0 and capsys.readouterr().out == ""
    assert sorted(pd.read_csv(table)["algorithm"]) == ["qsgd", "sgd"]


def test_cli_errors(pair, tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"nope")
    assert cli_main(["analyze", str(bad)]) == 1
    assert "not a readable HDF5 file" in capsys.readouterr().err
    assert cli_main(["analyze", str(tmp_path / "missing.h5")]) == 1
    assert "no such log file" in capsys.readouterr().err
    assert cli_main(["analyze", str(pair[0]), "--x", "epochs"]) == 2
    assert "x must be one or more of" in capsys.readouterr().err
    assert cli_main(["analyze", str(pair[0]), "--plot", "fig.gif"]) == 2
    assert cli_main(["analyze", str(pair[0]), "--group-by", "nope"]) == 1
    assert "cannot group by" in capsys.readouterr().err
    assert cli_main(["analyze", str(tmp_path), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "skipping" in captured.err and "comp.h5" in captured.out


def test_import_ecmpi_stays_light():
    code = "import sys, ecmpi; print('pandas' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    code = "import sys, ecmpi.analyze; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


def test_group_labels_use_short_names_and_skip_unset(tmp_path):
    write_log(tmp_path / "gd.h5", algorithm="gd", config={"hyperparameters": {}})
    for r in (4, 6):
        write_log(
            tmp_path / f"dqgd{r}.h5",
            algorithm="dqgd",
            compressor="none",
            config={"hyperparameters": {"bits_per_dim": float(r)}},
        )
    keys = ["algorithm", "hyperparameters.bits_per_dim"]
    fig = plot(tmp_path, group_by=keys)
    labels = sorted(ln.get_label() for ln in fig.get_axes()[0].get_lines())
    assert labels == ["dqgd · bits_per_dim=4", "dqgd · bits_per_dim=6", "gd"]
    s = summary(tmp_path, group_by=keys)
    assert len(s) == 3 and s["n_runs"].tolist() == [1, 1, 1]


def test_self_quantizing_runs_are_not_references_and_baseline_selects(tmp_path):
    write_log(tmp_path / "gd.h5", algorithm="gd", bits_per_step=3200)
    write_log(tmp_path / "dq.h5", algorithm="dqgd", bits_per_step=200)  # logs compressor none
    s = summary(tmp_path).set_index("algorithm")
    assert s.loc["dqgd", "baseline"] == str(tmp_path / "gd.h5")
    assert s.loc["dqgd", "compression_ratio"] == 16.0
    write_log(tmp_path / "sgd.h5", algorithm="sgd", bits_per_step=6400, n_ranks=4)
    s = summary(tmp_path, baseline="algorithm=sgd").set_index("algorithm")
    assert s.loc["dqgd", "compression_ratio"] == 32.0 and s.loc["gd", "compression_ratio"] == 2.0
    assert s.loc["sgd", "compression_ratio"] == 1.0
    s = summary(tmp_path, baseline={"n_ranks": 4}).set_index("algorithm")
    assert s.loc["gd", "baseline"] == str(tmp_path / "sgd.h5")
    with pytest.raises(ValueError, match="unknown baseline key"):
        summary(tmp_path, baseline="nope=1")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        summary(tmp_path, baseline="algorithm")
    assert (
        cli_main(
            [
                "analyze",
                str(tmp_path),
                "--baseline",
                "algorithm=sgd",
                "--format",
                "csv",
                "--out",
                str(tmp_path / "t.csv"),
            ]
        )
        == 0
    )
    t = pd.read_csv(tmp_path / "t.csv").set_index("algorithm")
    assert t.loc["dqgd", "compression_ratio"] == 32.0


def test_self_quantizing_attribute_decides_and_old_logs_fall_back(tmp_path):
    # the root attribute wins over the name rule; logs without it (above) use the name rule
    write_log(tmp_path / "gd.h5", algorithm="gd", bits_per_step=3200)
    write_log(
        tmp_path / "mine.h5",
        algorithm="mine",
        bits_per_step=200,
        extra_attrs={"self_quantizing": 1},
    )
    write_log(
        tmp_path / "dq.h5", algorithm="dqgd", bits_per_step=400, extra_attrs={"self_quantizing": 0}
    )
    df = load(tmp_path).set_index("algorithm")
    assert df["self_quantizing"].to_dict() == {"dqgd": False, "gd": False, "mine": True}
    s = summary(tmp_path).set_index("algorithm")
    assert s.loc["mine", "baseline"] == str(tmp_path / "dq.h5")  # same ranks, seed: first name
    assert s.loc["dqgd", "baseline"] == str(tmp_path / "dq.h5")
    # a frame without the column (made by hand) gets it from the algorithm name: only gd is
    # a reference then
    frame = load(tmp_path).drop(columns=["self_quantizing"]).replace({"algorithm": {"mine": "qgd"}})
    s = summary(frame).set_index("algorithm")
    assert s.loc["qgd", "baseline"] == s.loc["dqgd", "baseline"] == str(tmp_path / "gd.h5")
    assert s.loc["qgd", "compression_ratio"] == 16.0


def test_algorithm_flag_agrees_with_the_rule_for_old_logs():
    from ecmpi.algorithms import ALGORITHMS, get

    assert {n for n in ALGORITHMS if get(n).self_quantizing} == set(analyze.SELF_QUANTIZING)


def test_new_logs_carry_self_quantizing(tmp_path):
    import ecmpi
    from ecmpi.log import open_log

    for alg in ("dqgd", "gd"):
        data = {"problem": "lsq", "dataset": "synthetic:n=200,d=8", "steps": 3, "seed": 0}
        ecmpi.run(alg, quiet=True, out=tmp_path / f"{alg}.h5", **data)
    assert open_log(tmp_path / "dqgd.h5").attrs["self_quantizing"] == 1
    assert open_log(tmp_path / "gd.h5").attrs["self_quantizing"] == 0
    s = summary(tmp_path).set_index("algorithm")
    assert s.loc["dqgd", "baseline"] == s.loc["gd", "baseline"] == str(tmp_path / "gd.h5")
