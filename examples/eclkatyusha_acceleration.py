"""Acceleration: rounds to reach f - f* <= 1e-6 as the condition number grows.

    mpiexec -n 4 python examples/eclkatyusha_acceleration.py --out results/ec-lkatyusha-kappa

Runs the ``ec-lkatyusha-kappa`` experiment (:mod:`ecmpi.experiments.eclkatyusha`:
ec-lkatyusha and ec-lsvrg under TopK on logistic regression with lambda = R L for
several R, and with ``--full`` ec-gd too on the quadratic at kappa = 10..1000), one
:func:`ecmpi.run` per run (:meth:`ecmpi.experiments.Setting.run_all`), then takes the
rounds to eps from :func:`ecmpi.analyze.summary` and fits
``log(rounds) = a + slope log(kappa)`` per method and problem. Loopless Katyusha's
theory gives slope 1/2 for ec-lkatyusha, gradient-type methods slope 1. Writes
``--out/acceleration.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from mpi4py import MPI

from ecmpi import analyze
from ecmpi.experiments import get_experiment


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/ec-lkatyusha-kappa"))
    ap.add_argument("--full", action="store_true", help="five values of R and the quadratic")
    ap.add_argument("--max-steps", type=int, default=None, help="cap every run's steps")
    a = ap.parse_args(argv)
    setting = get_experiment("ec-lkatyusha-kappa").setting(quick=not a.full)
    setting.run_all(a.out, max_steps=a.max_steps)  # one ecmpi.run per run, on every rank
    if MPI.COMM_WORLD.rank != 0:
        return
    df = analyze.load(a.out)
    df["rounds"] = analyze.summary(df, eps=setting.eps)["rounds_to_eps"].to_numpy(float)
    df["kappa"] = df["problem_info.kappa"]  # NaN rounds: not reached
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for (problem, alg), runs in df.sort_values("kappa").groupby(["problem", "algorithm"]):
        k, r = np.log(runs["kappa"]), np.log(runs["rounds"])
        ok = np.isfinite(r)
        slope = np.polyfit(k[ok], r[ok], 1)[0] if ok.sum() > 1 else np.nan
        ax.loglog(runs["kappa"], runs["rounds"], "o-", label=f"{problem} {alg} (slope {slope:.2f})")
        cells = ", ".join(
            f"{k:.3g}: {r:g}" for k, r in zip(runs["kappa"], runs["rounds"], strict=True)
        )
        print(f"{problem} {alg}: slope {slope:.2f}; rounds at kappa {cells}")
    ax.set(xlabel="condition number kappa = L/mu", ylabel=f"rounds to f - f* <= {setting.eps:g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out / "acceleration.png", dpi=110)


if __name__ == "__main__":
    main()
