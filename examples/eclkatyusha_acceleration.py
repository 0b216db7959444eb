"""Acceleration: rounds to reach f - f* <= eps as the condition number grows.

    mpiexec -n 4 python examples/eclkatyusha_acceleration.py --out results/eclk_acceleration
    mpiexec -n 4 python examples/eclkatyusha_acceleration.py --problem quadratic \
        --out results/eclk_acceleration_quadratic
    # 20 workers on a cluster (Slurm):
    srun --mpi=pmi2 -n 20 python examples/eclkatyusha_acceleration.py \\
        --out results/eclk_acceleration --dataset synthetic:n=20000,d=100

l2-regularized logistic regression, ``lambda = R * L_data`` for R over two
decades or more (``kappa = L/mu = 1 + 1/R``), start at ``x* + 1``, full
local gradients, TopK per worker. For each R and method, runs until
``f - f* <= eps`` (``--eps``, default 1e-6; checked every ``--log-every``
rounds) and records the rounds. Fits ``log(rounds) = a + slope*log(kappa)``
by least squares over the reached points: loopless Katyusha's theory gives
slope 1/2 for ``ec-lkatyusha``, gradient-type methods slope 1.

``ec-gd`` is left out by default on this heterogeneous problem: its
compressed messages ``gamma*grad f_tau(x*) != 0`` keep it at a floor above
eps (add it with ``--methods``; it reports "not reached"); ``ec-lsvrg``
with the global snapshot gradient is the gradient-type method that reaches
x*. ``--problem quadratic`` sweeps the ``quadratic`` problem's prescribed
condition number instead (``--kappa``; every node's gradient vanishes at x*,
so ``ec-gd`` converges too and is in the default methods there).
Writes ``acc_<method>_<R or kappa>.h5`` logs, ``<stem>.png`` (log-log rounds
against kappa with the fitted lines), ``<stem>.md`` and ``<stem>.json``, the
stem being ``eclkatyusha_acceleration`` (``_quadratic`` for the quadratic).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import output_dir, pyplot, save_figure
from eclkatyusha_template import logged_run

from ecmpi.problems import make


def fit_slope(kappas: list[float], rounds: list[float]) -> tuple[float, float]:
    """Least-squares ``(slope, intercept)`` of log(rounds) on log(kappa) (finite points)."""
    k = np.array(kappas, dtype=float)
    r = np.array(rounds, dtype=float)
    ok = np.isfinite(r)
    if ok.sum() < 2:
        return math.nan, math.nan
    slope, icpt = np.polyfit(np.log(k[ok]), np.log(r[ok]), 1)
    return float(slope), float(icpt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/eclk_acceleration")
    ap.add_argument("--problem", choices=("logreg", "quadratic"), default="logreg")
    ap.add_argument("--dataset", default="synthetic:n=400,d=50,seed=1", help="logreg data")
    ap.add_argument("--rel", default="1e-1,3e-2,1e-2,3e-3,1e-3", help="values of R (logreg)")
    ap.add_argument("--kappa", default="10,30,100,300,1000", help="values of kappa (quadratic)")
    ap.add_argument("--dim", type=int, default=50, help="dimension of the quadratic")
    ap.add_argument("--methods", default=None, help="default: ec-lkatyusha,ec-lsvrg (+ec-gd)")
    ap.add_argument("--compressor", default="topk:k=5")
    ap.add_argument("--p", default="0.2", help="snapshot probability of both VR methods")
    ap.add_argument("--eps", type=float, default=1e-6)
    ap.add_argument("--max-steps", type=int, default=20000)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--figure", default=None, help="also copy the figure here")
    ap.add_argument("--fit-from", type=float, default=100.0, help="second fit: kappa >= this")
    ap.add_argument("--merge", default=None, help="a .json of an earlier sweep to add to the fit")
    args = ap.parse_args()

    comm, out = output_dir(args.out)
    quadratic = args.problem == "quadratic"
    sweep = [float(r) for r in (args.kappa if quadratic else args.rel).split(",")]
    default_methods = "ec-lkatyusha,ec-lsvrg" + (",ec-gd" if quadratic else "")
    methods = (args.methods or default_methods).split(",")
    table: dict[str, dict[str, list[float]]] = {m: {"kappa": [], "rounds": []} for m in methods}
    if args.merge:
        earlier = json.loads(Path(args.merge).read_text())
        for m in methods:
            table[m] = {k: list(earlier[m][k]) for k in ("kappa", "rounds")}
    for value in sweep:
        if quadratic:
            prob = make("quadratic", f"quadratic:d={args.dim},kappa={value:g}", comm=comm)
            tag = f"kappa{value:g}"
        else:
            prob = make("logreg", args.dataset, comm=comm, l2_rel=value)
            tag = f"R{value:g}"
        kappa = prob.L / prob.mu
        for name in methods:
            params = {"p": args.p} if name in ("ec-lkatyusha", "ec-lsvrg") else {}
            res = logged_run(
                comm,
                prob,
                name,
                args.compressor,
                out / f"acc_{name}_{tag}.h5",
                steps=args.max_steps,
                target=args.eps,
                log_every=args.log_every,
                params=params,
            )
            rounds = float(res.steps) if res.stop_reason == "target" else math.nan
            table[name]["kappa"].append(kappa)
            table[name]["rounds"].append(rounds)
            if comm.rank == 0:
                print(
                    f"{tag} kappa={kappa:.4g} {name:>14}: rounds {rounds:g} "
                    f"(f - f* {res.last['suboptimality']:.2e})",
                    flush=True,
                )
    if comm.rank == 0:
        report(table, out, args, comm.size)


def report(table, out: Path, args, nranks: int) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    result = {}
    for name, col in table.items():
        slope, icpt = fit_slope(col["kappa"], col["rounds"])
        result[name] = {**col, "slope": slope}
        line = ax.loglog(col["kappa"], col["rounds"], "o", label=f"{name} (slope {slope:.2f})")
        if math.isfinite(slope):
            k = np.array(col["kappa"])
            ax.loglog(k, np.exp(icpt) * k**slope, "-", color=line[0].get_color(), alpha=0.6)
        big = np.array(col["kappa"]) >= args.fit_from
        s2, _ = fit_slope(list(np.array(col["kappa"])[big]), list(np.array(col["rounds"])[big]))
        result[name]["slope_from"] = s2
    ax.set_xlabel("condition number kappa = L/mu")
    ax.set_ylabel(f"rounds to f - f* <= {args.eps:g}")
    data = f"quadratic d={args.dim}" if args.problem == "quadratic" else f"logreg {args.dataset}"
    ax.set_title(f"{data}, {args.compressor}, p={args.p}, {nranks} workers", fontsize=9)
    ax.legend(fontsize=8)
    stem = "eclkatyusha_acceleration" + ("_quadratic" if args.problem == "quadratic" else "")
    save_figure(fig, out / f"{stem}.png", args.figure)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    kappas = table[next(iter(table))]["kappa"]
    head = " | ".join(f"kappa {k:.3g}" for k in kappas)
    head = f"| method | {head} | fitted slope | slope for kappa >= {args.fit_from:g} |"
    lines = [head, "|" + "---|" * (len(kappas) + 3)]
    for name, r in result.items():
        cells = " | ".join("not reached" if not math.isfinite(v) else f"{v:g}" for v in r["rounds"])
        lines.append(f"| {name} | {cells} | {r['slope']:.2f} | {r['slope_from']:.2f} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
