"""The DQ-GD rate function: measured linear rate against bits per dimension R, beside theory.

    mpiexec -n 1 python examples/dqgd_rates.py --out results/dqgd-rates --quick

Runs the ``dqgd-rates`` experiment (:mod:`ecmpi.experiments.dqgd`: GD, DQ-GD with
l2 and linf ranges and naive QGD at R = 2..10, T steps with sigma^T = 1e-10), one
:func:`ecmpi.run` per run (:meth:`ecmpi.experiments.Setting.run_all`), then measures
each run's rate ``(||x_T - x*|| / ||x_0 - x*||)^(1/T)`` from its log and draws it
against R with the theory curves ``max(sigma, rho 2^-R)`` (DQ-GD), ``sigma + rho 2^-R``
(QGD) and the rate function ``max(sigma, 2^-R)``, rho = sqrt(d):
``--out/dqgd_rates.png``, one panel per problem.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from mpi4py import MPI

from ecmpi import analyze
from ecmpi.algorithms.dqgd import gd_contraction
from ecmpi.experiments import get_experiment

STYLE = {"dqgd": "C1o", "dqgd (linf range)": "C3^", "qgd": "C2x"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/dqgd-rates"))
    ap.add_argument("--quick", action="store_true", help="the quadratic in d = 50 only")
    a = ap.parse_args(argv)
    get_experiment("dqgd-rates").setting(a.quick).run_all(a.out)  # one ecmpi.run per run
    if MPI.COMM_WORLD.rank != 0:
        return
    df = analyze.load(a.out)
    dist = df["trajectory"].map(lambda tr: tr["dist_to_opt"])
    df["rate"] = [(d[-1] / d[0]) ** (1 / (len(d) - 1)) for d in dist]
    df["R"] = df["hyperparameters.bits_per_dim"]
    linf = df["hyperparameters.range_norm"] == "linf"
    df["variant"] = df["algorithm"] + linf.map({True: " (linf range)", False: ""})
    problems = list(df.groupby("dataset"))
    fig = Figure(figsize=(5 * len(problems), 4))
    for ax, (dataset, runs) in zip(fig.subplots(1, len(problems), squeeze=False)[0], problems):
        sigma = gd_contraction(runs["L"].iloc[0], runs["mu"].iloc[0])
        R = np.linspace(2, 10, 200)
        eps = np.sqrt(runs["problem_info.d"].iloc[0]) * 2.0**-R  # rho 2^-R
        ax.plot(R, np.maximum(sigma, eps), "C1-", lw=1, label="max(sigma, rho 2^-R)")
        ax.plot(R, sigma + eps, "C2-", lw=1, label="sigma + rho 2^-R")
        ax.plot(R, np.maximum(sigma, 2.0**-R), "k:", lw=1, label="max(sigma, 2^-R)")
        ax.axhline(runs.loc[runs["algorithm"] == "gd", "rate"].iloc[0], color="C0", label="GD")
        for variant, sel in runs[runs["algorithm"] != "gd"].groupby("variant"):
            ax.plot(sel["R"], sel["rate"], STYLE[variant], label=variant)
            print(dataset, variant, dict(zip(sel["R"], sel["rate"].round(4), strict=True)))
        ax.set(
            title=dataset, xlabel="bits per dimension R", ylabel="measured rate", ylim=(0.2, 1.3)
        )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.out / "dqgd_rates.png", dpi=120)


if __name__ == "__main__":
    main()
