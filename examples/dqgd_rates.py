"""The DQ-GD rate function: measured linear rate against bits per dimension R, beside theory.

    mpiexec -n 1 python examples/dqgd_rates.py --out results/dqgd-rates [--quick]

Runs the ``dqgd-rates`` experiment (:mod:`ecmpi.experiments.dqgd`: one worker, the
quadratic with kappa = 3.5 and n = d rows for d = 10, 50, 200, 1000, R = 2..8, T = 40
steps, three data seeds), one :func:`ecmpi.run` per run
(:meth:`ecmpi.experiments.Setting.run_all`), then measures each run's rate
``(||x_T - x*|| / ||x_0 - x*||)^(1/T)`` from its log and writes

- ``--out/dqgd_rates.md``: mean +- std over the seeds per d, variant and R, beside
  ``max(sigma, rho 2^-R)`` (DQ-GD), ``sigma + rho 2^-R`` (naive) and the rate
  function ``max(sigma, 2^-R)``, rho = sqrt(d);
- ``--out/dqgd_rates.png``: the same against R, one panel per d.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from mpi4py import MPI

from ecmpi import analyze
from ecmpi.algorithms.dqgd import gd_contraction
from ecmpi.experiments import get_experiment

STYLE = {
    "dqgd": "C1o-",
    "dqgd-linf": "C3^-",
    "qgd": "C2x--",
    "qgd-fixed": "C4s--",
    "qgd-scale": "C5d--",
}
_NAME = re.compile(r"d(\d+)_s(\d+)_(.+?)(?:_R(\d+))?$")


def rates(out: Path):
    """One row per run: d, seed, variant, R, measured rate, sigma."""
    df = analyze.load(out)
    parts = df["file"].map(lambda f: _NAME.match(Path(f).stem).groups())
    df["d"] = [int(p[0]) for p in parts]
    df["seed"] = [int(p[1]) for p in parts]
    df["variant"] = [p[2] for p in parts]
    df["R"] = [int(p[3]) if p[3] else 0 for p in parts]
    dist = df["trajectory"].map(lambda tr: np.asarray(tr["dist_to_opt"]))
    df["rate"] = [(d[-1] / d[0]) ** (1 / (len(d) - 1)) for d in dist]
    df["sigma"] = [gd_contraction(L, mu) for L, mu in zip(df["L"], df["mu"], strict=True)]
    return df[["d", "seed", "variant", "R", "rate", "sigma"]]


def table(df) -> str:
    """Markdown: per d and R, mean +- std of each variant's rate, and the three theory curves."""
    variants = [v for v in STYLE if v in set(df["variant"])]
    head = ["d", "R", "GD", *variants, "max(s, rho 2^-R)", "s + rho 2^-R", "max(s, 2^-R)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for d, sel in df.groupby("d"):
        sigma = float(sel["sigma"].iloc[0])
        gd = sel.loc[sel["variant"] == "gd", "rate"]
        for r in sorted(set(sel["R"]) - {0}):
            eps = np.sqrt(d) * 2.0**-r
            row = [str(d), str(r), f"{gd.mean():.3f}"]
            for v in variants:
                x = sel.loc[(sel["variant"] == v) & (sel["R"] == r), "rate"]
                row.append(
                    f"{x.mean():.3f} ± {x.std(ddof=1):.3f}" if len(x) > 1 else f"{x.mean():.3f}"
                )
            row += [f"{max(sigma, eps):.3f}", f"{sigma + eps:.3f}", f"{max(sigma, 2.0**-r):.3f}"]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def figure(df, path: Path) -> None:
    dims = sorted(set(df["d"]))
    fig = Figure(figsize=(4.2 * len(dims), 3.8))
    for ax, d in zip(fig.subplots(1, len(dims), squeeze=False)[0], dims, strict=True):
        sel = df[df["d"] == d]
        sigma = float(sel["sigma"].iloc[0])
        R = np.linspace(2, 8, 200)
        eps = np.sqrt(d) * 2.0**-R
        ax.plot(R, np.maximum(sigma, eps), "C1-", lw=0.8, label="max(sigma, rho 2^-R)")
        ax.plot(R, sigma + eps, "C2-", lw=0.8, label="sigma + rho 2^-R")
        ax.plot(R, np.maximum(sigma, 2.0**-R), "k:", lw=1, label="max(sigma, 2^-R)")
        ax.axhline(sel.loc[sel["variant"] == "gd", "rate"].mean(), color="C0", lw=0.8, label="GD")
        for v, style in STYLE.items():
            g = sel[sel["variant"] == v].groupby("R")["rate"]
            if len(g):
                ax.errorbar(
                    g.mean().index,
                    g.mean(),
                    g.std(ddof=1).fillna(0),
                    fmt=style,
                    ms=4,
                    lw=0.8,
                    label=v,
                )
        ax.set(
            title=f"d = {d}", xlabel="bits per dimension R", ylabel="measured rate", ylim=(0.3, 1.5)
        )
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/dqgd-rates"))
    ap.add_argument("--quick", action="store_true", help="d = 10 and 200, R = 2, 4, 6, 8, 1 seed")
    ap.add_argument("--no-run", action="store_true", help="tabulate the logs already in --out")
    a = ap.parse_args(argv)
    if not a.no_run:
        get_experiment("dqgd-rates").setting(a.quick).run_all(a.out)  # one ecmpi.run per run
    if MPI.COMM_WORLD.rank != 0:
        return
    df = rates(a.out)
    md = table(df)
    (a.out / "dqgd_rates.md").write_text(md)
    print(md)
    figure(df, a.out / "dqgd_rates.png")


if __name__ == "__main__":
    main()
