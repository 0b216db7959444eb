"""One run through the Python API: EF-SGD with 4-level QSGD on logistic regression.

    mpiexec -n 4 python examples/run_ef_sgd.py --steps 300 --out ef-sgd.h5

:func:`ecmpi.run` takes the options of ``ecmpi run`` as keywords; this is
``ecmpi run ef-sgd --problem logreg --dataset synthetic:n=4000,d=100 --l2-rel 1e-3
--compressor qsgd:levels=4 --collective sra --batch-size 32 --steps 300 --out ef-sgd.h5``.
Rank 0 then reads the log with :mod:`ecmpi.analyze` and prints f - f* against the
bits each worker sent, and the summary table. The paper experiments are defined in
:mod:`ecmpi.experiments` (``examples/experiment.py`` runs one).
"""

from __future__ import annotations

import argparse

from mpi4py import MPI

import ecmpi
from ecmpi import analyze


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", default="ef-sgd.h5")
    a = ap.parse_args(argv)
    ecmpi.run(
        "ef-sgd",
        out=a.out,
        overwrite=True,
        quiet=True,
        problem="logreg",
        dataset="synthetic:n=4000,d=100",
        l2_rel=1e-3,
        compressor="qsgd:levels=4",
        collective="sra",
        batch_size=32,
        steps=a.steps,
        log_every=max(a.steps // 10, 1),
    )
    if MPI.COMM_WORLD.rank != 0:
        return
    df = analyze.load(a.out)
    tr = df["trajectory"].iloc[0]
    print(f"{'step':>6} {'f - f*':>12} {'bits/worker':>12}")
    for step, sub, bits in zip(tr["step"], tr["suboptimality"], tr["bits_up"], strict=True):
        print(f"{step:>6} {sub:>12.3e} {bits:>12.4g}")
    print(analyze.format_table(analyze.summary(df), "md"))


if __name__ == "__main__":
    main()
