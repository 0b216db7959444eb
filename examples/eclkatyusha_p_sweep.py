"""The effect of the snapshot probability p on EC-LKatyusha's communication.

    mpiexec -n 4 python examples/eclkatyusha_p_sweep.py --out results/eclk_p_sweep
    # 20 workers on a cluster (Slurm):
    srun --mpi=pmi2 -n 20 python examples/eclkatyusha_p_sweep.py --out results/eclk_p_sweep \\
        --dataset synthetic:n=20000,d=100

With the global snapshot gradient every refresh of w costs one
full-precision d-vector, so the expected bits per round are
``bits(C) + p * bits(d floats)`` while the rounds grow as p shrinks
(loopless Katyusha: about ``1/p + sqrt(kappa/p)`` up to logs). The paper's
advice is p proportional to the compression ratio. For each p (and
``p=ratio``) the sweep runs ``ec-lkatyusha`` on l2-logistic regression from
``x* + 1`` until ``f - f* <= eps`` and records rounds and bits per worker.
Writes ``p_<p>.h5`` logs, ``eclkatyusha_p_sweep.png`` (rounds and bits
against p, the compression ratio marked), ``.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import output_dir, pyplot, save_figure
from eclkatyusha_template import logged_run

from ecmpi import compressor
from ecmpi.algorithms.ec import compression_ratio
from ecmpi.problems import make


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/eclk_p_sweep")
    ap.add_argument("--dataset", default="synthetic:n=400,d=50,seed=1")
    ap.add_argument("--l2-rel", type=float, default=1e-2)
    ap.add_argument("--compressor", default="topk:k=2")
    ap.add_argument("--ps", default="0.01,0.02,0.05,0.1,0.2,0.5,1,ratio")
    ap.add_argument("--eps", type=float, default=1e-6)
    ap.add_argument("--max-steps", type=int, default=20000)
    ap.add_argument("--figure", default=None, help="also copy the figure here")
    args = ap.parse_args()

    comm, out = output_dir(args.out)
    prob = make("logreg", args.dataset, comm=comm, l2_rel=args.l2_rel)
    ratio = compression_ratio(compressor(args.compressor), prob.d, prob.dtype)
    rows = []
    for p in args.ps.split(","):
        res = logged_run(
            comm,
            prob,
            "ec-lkatyusha",
            args.compressor,
            out / f"p_{p}.h5",
            steps=args.max_steps,
            target=args.eps,
            log_every=10,
            params={"p": p},
        )
        reached = res.stop_reason == "target"
        row = {
            "p": ratio if p == "ratio" else float(p),
            "label": p,
            "rounds": res.steps if reached else math.nan,
            "bits_up": res.last["bits_up"] if reached else math.nan,
        }
        rows.append(row)
        if comm.rank == 0:
            print(f"p={p}: rounds {row['rounds']}, bits/worker {row['bits_up']:.4g}", flush=True)
    if comm.rank == 0:
        report(rows, ratio, prob, out, args, comm.size)


def report(rows, ratio, prob, out: Path, args, nranks: int) -> None:
    plt = pyplot()
    pts = sorted((r for r in rows if r["label"] != "ratio"), key=lambda r: r["p"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.loglog([r["p"] for r in pts], [r["rounds"] for r in pts], "o-")
    a2.loglog([r["p"] for r in pts], [r["bits_up"] for r in pts], "o-")
    for r in rows:
        if r["label"] == "ratio":
            a1.loglog([r["p"]], [r["rounds"]], "r*", ms=12, label="p = compression ratio")
            a2.loglog([r["p"]], [r["bits_up"]], "r*", ms=12, label="p = compression ratio")
    for a, lab in ((a1, "rounds"), (a2, "bits per worker")):
        a.axvline(ratio, color="gray", ls=":")
        a.set_xlabel("snapshot probability p")
        a.set_ylabel(f"{lab} to f - f* <= {args.eps:g}")
        a.legend(fontsize=8)
    kappa = prob.L / prob.mu
    fig.suptitle(
        f"ec-lkatyusha, logreg {args.dataset}, kappa = {kappa:.3g}, "
        f"{args.compressor}, {nranks} workers",
        fontsize=9,
    )
    save_figure(fig, out / "eclkatyusha_p_sweep.png", args.figure)
    (out / "eclkatyusha_p_sweep.json").write_text(
        json.dumps({"ratio": ratio, "kappa": kappa, "rows": rows}, indent=1)
    )
    lines = ["| p | rounds | bits per worker |", "|---|---|---|"]
    for r in rows:
        lab = f"{r['p']:.3g} (ratio)" if r["label"] == "ratio" else r["label"]
        lines.append(f"| {lab} | {r['rounds']:g} | {r['bits_up']:.4g} |")
    (out / "eclkatyusha_p_sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
