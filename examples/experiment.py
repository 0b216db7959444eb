"""A paper's experiment in one MPI job through the Python API: runs, table and figure.

    mpiexec -n 4 python examples/experiment.py ecq-sgd --out results/ecq-sgd --quick

NAME is one of ``ecmpi.experiments.EXPERIMENTS`` (``ecq-sgd``, ``ecq-sgd-real``,
``qesgd``, ``ec-lkatyusha``, ``ec-lkatyusha-template``, ``dqgd``, ``dqgd-real``, ...),
the experiments that ``ecmpi reproduce NAME`` runs with one ``mpiexec`` per run.
Here every run is one :func:`ecmpi.run` call on the ranks of this job, its log in
``--out``; rank 0 then prints the table of :func:`ecmpi.analyze.summary` and draws
the experiment's figures with :func:`ecmpi.analyze.plot` (``--out/FIGURE.png``).
``--max-steps`` caps every run (a smoke test).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mpi4py import MPI

import ecmpi
from ecmpi import analyze
from ecmpi.experiments import EXPERIMENTS, get_experiment


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=sorted(EXPERIMENTS))
    ap.add_argument("--out", type=Path, required=True, help="directory of the logs")
    ap.add_argument("--quick", action="store_true", help="the small setting")
    ap.add_argument("--max-steps", type=int, default=None, help="cap every run's steps")
    a = ap.parse_args(argv)
    exp = get_experiment(a.name)
    setting = exp.setting(a.quick)
    a.out.mkdir(parents=True, exist_ok=True)
    for run in setting.runs:
        run = run.with_max_steps(a.max_steps)
        log = a.out / f"{run.name}.h5"
        ecmpi.run(run.algorithm, out=log, overwrite=True, quiet=True, **run.options)
    if MPI.COMM_WORLD.rank != 0:
        return
    df = analyze.load(a.out)
    table = analyze.summary(
        df,
        eps=setting.eps,
        group_by=setting.group_by,
        baseline=setting.baseline,
        accuracy=setting.accuracy,
    )
    print(f"{exp.name}: {exp.description}\n")
    print(analyze.format_table(table, "md"))
    for fig in setting.figures:  # each figure shows its runs, or all
        shown = [str(a.out / f"{name}.h5") for name in fig.runs or ()]
        sel = df[df["file"].isin(shown)] if shown else df
        path = a.out / f"{fig.name}.png"
        analyze.plot(
            sel,
            list(fig.x),
            fig.group_by,
            eps=setting.eps,
            title=fig.title,
            path=path,
            accuracy=setting.accuracy,
        )


if __name__ == "__main__":
    main()
