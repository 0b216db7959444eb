"""The EC-LKatyusha experimental template: f - f* against rounds and bits per worker.

    mpiexec -n 4 python examples/eclkatyusha_template.py --out results/eclk_template
    # 20 workers on a cluster (Slurm):
    srun --mpi=pmi2 -n 20 python examples/eclkatyusha_template.py --out results/eclk_template \\
        --dataset synthetic:n=20000,d=100 --steps 20000

Template of Qian, Richtárik, Zhang (NeurIPS 2021): l2-regularized logistic
regression with ``lambda = L/1e4`` (``l2_rel``), start at ``x* + 1``, TopK
with K in {1, 2, 3} per worker and random dithering (``qsgd``, used as the
contraction ``Q/(omega+1)``), every method of the error-compensated family
plus uncompressed loopless Katyusha; ec-gd/ec-sgd/DIANA use the template's
step ``1/(L + lambda)`` (full local gradients, ``--batch-size 0``).
EC-LSVRG and EC-LKatyusha use the global snapshot gradient with ``p = delta``,
the contraction factor of the compressor (K/d for TopK: the paper's "p in
proportion to K/d"). ``lkatyusha`` (uncompressed, full precision, p = 1) is
drawn in every panel as the reference.

Writes one HDF5 log per (method, compressor) into ``--out``
(``template_<method>_<compressor>.h5``, schema ``ecmpi.trajectory/1``), the
figure ``eclkatyusha_template.png`` (two rows: against rounds, against bits
per worker) and ``eclkatyusha_template.md`` (final f - f* and bits per run).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import output_dir, pyplot, save_figure

from ecmpi import compressor
from ecmpi.algorithms import RunContext, get
from ecmpi.algorithms.loop import RunResult, run
from ecmpi.log import TrajectoryWriter
from ecmpi.problems import make

METHODS = (
    "ec-gd",
    "ec-sgd",
    "ec-lsvrg",
    "ec-sgd-diana",
    "ec-lsvrg-diana",
    "ec-lkatyusha",
    "lkatyusha",
)
#: per-method hyperparameters of the template
PARAMS: dict[str, dict[str, Any]] = {"ec-lkatyusha": {"p": "delta"}, "ec-lsvrg": {"p": "delta"}}
#: methods that send full precision: run once, with the identity compressor
UNCOMPRESSED = ("lkatyusha",)


def slug(text: str) -> str:
    """A file-name-safe version of a spec."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def logged_run(
    comm: Any,
    prob: Any,
    name: str,
    comp: str,
    path: Path | None,
    *,
    steps: int,
    target: float | None = None,
    log_every: int = 10,
    batch: int = 0,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    x0: Any = None,
) -> RunResult:
    """Run one method from ``x* + 1`` (or ``x0``) and log it to ``path`` (rank 0) if given."""
    info = prob.describe()
    ctx = RunContext(
        problem=prob,
        comm=comm,
        compressor=compressor(comp),
        seed=seed,
        batch_size=batch,
        x0=prob.x_star + 1.0 if x0 is None else x0,
        params=dict(params or {}),
    )

    def writer(alg: Any) -> TrajectoryWriter | None:
        if path is None:
            return None
        attrs = {
            "algorithm": name,
            "problem": prob.name,
            "dataset": info["dataset"],
            "n_ranks": comm.size,
            "compressor": ctx.compressor.spec,
            "collective": "allgather",
            "seed": seed,
            "f_star": info["f_star"],
            "L": info["L"],
            "mu": info["mu"],
        }
        config = {"resolved": alg.describe(), "problem_info": info, "steps": steps}
        return TrajectoryWriter(
            path, attrs, json.loads(json.dumps(config, default=str)), overwrite=True
        )

    return run(get(name), ctx, steps=steps, target=target, log=writer, log_every=log_every)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/eclk_template")
    ap.add_argument("--dataset", default="synthetic:n=400,d=20,seed=1")
    ap.add_argument("--l2-rel", type=float, default=1e-4)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--compressors", default="topk:k=1;topk:k=2;topk:k=3;qsgd:levels=2,bucket=512")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--figure", default=None, help="also copy the figure here")
    args = ap.parse_args()

    comm, out = output_dir(args.out)
    prob = make("logreg", args.dataset, comm=comm, l2_rel=args.l2_rel)
    comps = args.compressors.split(";")
    methods = args.methods.split(",")
    curves: dict[tuple[str, str], list[dict[str, float]]] = {}
    for comp in comps:
        for name in methods:
            if name in UNCOMPRESSED:
                if (name, "none") not in curves:
                    curves[(name, "none")] = logged_run(
                        comm,
                        prob,
                        name,
                        "none",
                        out / f"template_{name}_none.h5",
                        steps=args.steps,
                    ).rows
                curves[(name, comp)] = curves[(name, "none")]
                continue
            path = out / f"template_{name}_{slug(comp)}.h5"
            res = logged_run(
                comm,
                prob,
                name,
                comp,
                path,
                steps=args.steps,
                batch=1 if name in ("ec-sgd", "ec-sgd-diana") else 0,
                params=PARAMS.get(name),
            )
            curves[(name, comp)] = res.rows
            if comm.rank == 0:
                last = res.rows[-1]
                print(
                    f"{comp:>28} {name:>15} f-f* {last['suboptimality']:.3e} "
                    f"bits/worker {last['bits_up']:.3e}",
                    flush=True,
                )
    if comm.rank == 0:
        report(curves, comps, methods, prob, out, args)


def report(curves, comps, methods, prob, out: Path, args) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, len(comps), figsize=(4.2 * len(comps), 7), squeeze=False)
    for j, comp in enumerate(comps):
        for name in methods:
            rows = curves[(name, comp)]
            sub = np.maximum([r["suboptimality"] for r in rows], 1e-16)
            style = {"color": "black", "ls": "--"} if name in UNCOMPRESSED else {}
            label = f"{name} (none)" if name in UNCOMPRESSED else name
            steps = [r["step"] for r in rows]
            axes[0, j].semilogy(steps, sub, label=label, **style)
            bits = np.maximum([r["bits_up"] for r in rows], 1)
            axes[1, j].loglog(bits, sub, label=label, **style)
        axes[0, j].set_title(comp, fontsize=9)
        axes[0, j].set_xlabel("communication rounds")
        axes[1, j].set_xlabel("bits per worker")
    for i in range(2):
        axes[i, 0].set_ylabel("f(x) - f*")
    axes[0, 0].legend(fontsize=7)
    kappa = prob.L / prob.mu
    fig.suptitle(
        f"logreg {args.dataset}, lambda = L/{1 / args.l2_rel:.0e} "
        f"(kappa = {kappa:.3g}), {int(prob.comm.size)} workers, x0 = x* + 1"
    )
    save_figure(fig, out / "eclkatyusha_template.png", args.figure)
    lines = [
        f"| compressor | method | f - f* after {args.steps} rounds | bits per worker |",
        "|---|---|---|---|",
    ]
    for comp in comps:
        for name in methods:
            if name in UNCOMPRESSED and comp != comps[0]:
                continue
            last = curves[(name, comp)][-1]
            sub = last["suboptimality"]
            shown = "none" if name in UNCOMPRESSED else comp
            lines.append(
                f"| `{shown}` | {name} | {sub:.2e} | {last['bits_up']:.3g} |"
                if math.isfinite(sub)
                else f"| `{shown}` | {name} | diverged | |"
            )
    (out / "eclkatyusha_template.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
