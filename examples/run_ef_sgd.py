"""EF-SGD with 4-level QSGD on logistic regression, through the library API.

Run it with (any number of ranks)::

    mpiexec -n 4 python examples/run_ef_sgd.py --steps 300 --out ef-sgd.h5

It builds the same run as ``ecmpi run ef-sgd --problem logreg --dataset
synthetic:n=4000,d=100 --l2-rel 1e-3 --compressor qsgd:levels=4 --collective
sra --batch-size 32``, logs it to HDF5 and prints f - f* against the bits each
worker sent.
"""

from __future__ import annotations

import argparse

from mpi4py import MPI

import ecmpi
from ecmpi.algorithms import RunContext, get, run
from ecmpi.comm import library_comm
from ecmpi.log import TrajectoryWriter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", default="ef-sgd.h5")
    args = ap.parse_args()

    comm = library_comm(MPI.COMM_WORLD)
    problem = ecmpi.problems.make("logreg", "synthetic:n=4000,d=100", comm=comm, l2_rel=1e-3)
    ctx = RunContext(
        problem=problem,
        comm=comm,
        compressor=ecmpi.compressor("qsgd:levels=4"),
        collective="sra",
        seed=0,
        batch_size=32,
    )
    info = problem.describe()  # collective: f*, L and mu are computed by all ranks together
    writer = None
    if comm.rank == 0:
        attrs = {
            "algorithm": "ef-sgd",
            "problem": "logreg",
            "dataset": info["dataset"],
            "n_ranks": comm.size,
            "compressor": ctx.compressor.spec,
            "collective": "sra",
            "f_star": info["f_star"],
            "L": info["L"],
            "mu": info["mu"],
        }
        writer = TrajectoryWriter(args.out, attrs, {"example": "run_ef_sgd"}, overwrite=True)
    res = run(get("ef-sgd"), ctx, steps=args.steps, log=writer, log_every=args.steps // 10)
    if comm.rank == 0:
        print(f"{'step':>6} {'f - f*':>12} {'bits/worker':>12}")
        for row in res.rows:
            print(f"{row['step']:>6} {row['suboptimality']:>12.3e} {row['bits_up']:>12.4g}")
        print(f"status {res.status}; log in {args.out}")


if __name__ == "__main__":
    main()
