"""Rounds to f - f* <= 1e-6 against kappa: EC-LKatyusha, EC-LSVRG-DIANA and EC-GD-DIANA.

    mpiexec -n 4 python examples/eclkatyusha_kappa.py --sets breast_cancer --out results/eclk
    python examples/eclkatyusha_kappa.py --analyze --out results/eclk
    mpiexec -n 4 python examples/eclkatyusha_kappa.py --panel --out results/eclk-panel

Runs the chosen part of the ``ec-lkatyusha`` experiment's kappa sweep
(:func:`ecmpi.experiments.eclkatyusha.sweep_runs`, the run definitions of
``ecmpi reproduce ec-lkatyusha``) in this one MPI job, one :func:`ecmpi.run` per run,
logs under ``--out``; then (or with ``--analyze``, one process, every log there)
:func:`ecmpi.experiments.eclkatyusha.kappa_table`: rounds to eps (last crossing;
``>N`` where a seed did not get there), the fitted exponents of kappa, one figure
per data set. ``--panel`` runs the R = 1e-4 panel instead
(:func:`ecmpi.experiments.eclkatyusha.panel_runs`: TopK K = 2, 3, random dithering,
ec-lkatyusha on minibatches) and prints :func:`~ecmpi.experiments.eclkatyusha.panel_table`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ecmpi.experiments.base import Setting
from ecmpi.experiments.eclkatyusha import (
    DATASETS,
    EPS,
    METHODS,
    RELS,
    SEEDS,
    kappa_table,
    panel_runs,
    panel_table,
    sweep_runs,
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/eclk-kappa"))
    ap.add_argument("--sets", default="synthetic", help="comma-separated data sets, or all")
    ap.add_argument("--rels", default=",".join(f"{r:g}" for r in RELS), help="values of R")
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--analyze", action="store_true", help="only read the logs in --out")
    ap.add_argument("--panel", action="store_true", help="the R = 1e-4 panel (--seeds apply)")
    a = ap.parse_args(argv)
    if not a.analyze:
        names = tuple(DATASETS) if a.sets == "all" else tuple(a.sets.split(","))
        seeds = tuple(int(s) for s in a.seeds.split(","))
        runs = (
            panel_runs(seeds)
            if a.panel
            else sweep_runs(
                names,
                tuple(float(r) for r in a.rels.split(",")),
                seeds,
                tuple(a.methods.split(",")),
            )
        )
        Setting(runs=runs, figures=(), eps=EPS).run_all(a.out)
        from mpi4py import MPI

        if MPI.COMM_WORLD.rank != 0:
            return
    print(panel_table(a.out) if a.panel else kappa_table(a.out))


if __name__ == "__main__":
    main()
