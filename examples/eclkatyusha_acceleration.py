"""Acceleration: rounds to reach f - f* <= eps as the condition number grows.

    mpiexec -n 4 python examples/eclkatyusha_acceleration.py --out results/eclk_acceleration
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
x*. Writes ``acc_<method>_R<R>.h5`` logs, ``eclkatyusha_acceleration.png``
(log-log rounds against kappa with the fitted lines), ``.md`` and ``.json``.
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
    ap.add_argument("--dataset", default="synthetic:n=400,d=50,seed=1")
    ap.add_argument("--rel", default="1e-1,3e-2,1e-2,3e-3,1e-3", help="values of R")
    ap.add_argument("--methods", default="ec-lkatyusha,ec-lsvrg")
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
    rels = [float(r) for r in args.rel.split(",")]
    methods = args.methods.split(",")
    table: dict[str, dict[str, list[float]]] = {m: {"kappa": [], "rounds": []} for m in methods}
    if args.merge:
        earlier = json.loads(Path(args.merge).read_text())
        for m in methods:
            table[m] = {k: list(earlier[m][k]) for k in ("kappa", "rounds")}
    for R in rels:
        prob = make("logreg", args.dataset, comm=comm, l2_rel=R)
        kappa = prob.L / prob.mu
        for name in methods:
            params = {"p": args.p} if name in ("ec-lkatyusha", "ec-lsvrg") else {}
            res = logged_run(
                comm,
                prob,
                name,
                args.compressor,
                out / f"acc_{name}_R{R:g}.h5",
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
                    f"R={R:g} kappa={kappa:.4g} {name:>14}: rounds {rounds:g} "
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
    ax.set_title(
        f"logreg {args.dataset}, {args.compressor}, p={args.p}, {nranks} workers", fontsize=9
    )
    ax.legend(fontsize=8)
    save_figure(fig, out / "eclkatyusha_acceleration.png", args.figure)
    (out / "eclkatyusha_acceleration.json").write_text(json.dumps(result, indent=1))
    kappas = table[next(iter(table))]["kappa"]
    head = " | ".join(f"kappa {k:.3g}" for k in kappas)
    head = f"| method | {head} | fitted slope | slope for kappa >= {args.fit_from:g} |"
    lines = [head, "|" + "---|" * (len(kappas) + 3)]
    for name, r in result.items():
        cells = " | ".join("not reached" if not math.isfinite(v) else f"{v:g}" for v in r["rounds"])
        lines.append(f"| {name} | {cells} | {r['slope']:.2f} | {r['slope_from']:.2f} |")
    (out / "eclkatyusha_acceleration.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
