"""The DQ-GD rate function: measured linear rate against bits per dimension R, beside theory.

    mpiexec -n 1 python examples/dqgd_rates.py --out results/dqgd-rates [--quick]

Runs ``dqgd-rates`` (:mod:`ecmpi.experiments.dqgd`: one worker, d = 10..1000,
R = 2..8, T = 40, three data seeds) in this job (``Setting.run_all``), then writes
``--out/dqgd_rates.md`` (:func:`~ecmpi.experiments.dqgd.rate_table`: measured rates
beside ``max(sigma, rho 2^-R)``, ``sigma + rho 2^-R``, ``max(sigma, 2^-R)``) and
``--out/dqgd_rates.png`` (the same against R, one panel per d).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from mpi4py import MPI

from ecmpi.experiments import get_experiment
from ecmpi.experiments.dqgd import RATE_STYLE, measured_rates, rate_table


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
        for v, style in RATE_STYLE.items():
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
    df = measured_rates(a.out)
    md = rate_table(df)
    (a.out / "dqgd_rates.md").write_text(md)
    print(md)
    figure(df, a.out / "dqgd_rates.png")


if __name__ == "__main__":
    main()
