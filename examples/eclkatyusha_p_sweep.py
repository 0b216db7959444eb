"""The snapshot probability p of EC-LKatyusha: rounds and bits to reach f - f* <= 1e-6.

    mpiexec -n 4 python examples/eclkatyusha_p_sweep.py --out results/ec-lkatyusha-p

With the global snapshot gradient every refresh costs one full-precision
d-vector, so the expected bits per round are ``bits(C) + p bits(d floats)``
while the rounds grow as p shrinks (about ``1/p + sqrt(kappa/p)``); the paper
advises p in proportion to the compression ratio. Runs the ``ec-lkatyusha-p``
experiment (:mod:`ecmpi.experiments.eclkatyusha`), one :func:`ecmpi.run` per run
(:meth:`ecmpi.experiments.Setting.run_all`), takes rounds and uplink bits to eps from
:func:`ecmpi.analyze.summary` and draws both against the resolved p (the log's
``resolved.p``; a star: ``p = ratio``) into ``--out/p_sweep.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.figure import Figure
from mpi4py import MPI

from ecmpi import analyze
from ecmpi.experiments import get_experiment


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/ec-lkatyusha-p"))
    ap.add_argument("--quick", action="store_true", help="four values of p")
    ap.add_argument("--max-steps", type=int, default=None, help="cap every run's steps")
    a = ap.parse_args(argv)
    setting = get_experiment("ec-lkatyusha-p").setting(a.quick)
    setting.run_all(a.out, max_steps=a.max_steps)  # one ecmpi.run per run, on every rank
    if MPI.COMM_WORLD.rank != 0:
        return
    df = analyze.load(a.out)
    table = analyze.summary(df, eps=setting.eps)
    table["p"], table["given"] = df["resolved.p"], df["hyperparameters.p"]
    table = table.sort_values("p")
    print(table[["given", "p", "rounds_to_eps", "bits_up_to_eps"]].to_string(index=False))
    fig = Figure(figsize=(10, 4))
    panels = {"rounds_to_eps": "rounds", "bits_up_to_eps": "bits per worker"}
    for ax, (col, what) in zip(fig.subplots(1, 2), panels.items(), strict=True):
        ax.loglog(table["p"], table[col], "o-")
        ratio = table[table["given"] == "ratio"]
        ax.loglog(ratio["p"], ratio[col], "r*", ms=12, label="p = compression ratio")
        ax.set(xlabel="snapshot probability p", ylabel=f"{what} to f - f* <= {setting.eps:g}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out / "p_sweep.png", dpi=110)


if __name__ == "__main__":
    main()
