"""DQ-GD on real data: least squares on scikit-learn's diabetes, distance against bits.

    python examples/dqgd_real.py --out results/dqgd
    mpiexec -n 2 python examples/dqgd_real.py --out results/dqgd

Least squares on ``sklearn:diabetes`` (442 x 10, standardized, with a bias
column; ``--l2-rel`` adds ``lambda = l2_rel * L``). Runs GD (64 bits per
dimension, float64), DQ-GD and naive QGD for several R from x0 = 0 and plots
``||x_t - x*|| / ||x_0 - x*||`` against the bits each worker sent. Writes
``dqgd_real.png`` and ``dqgd_real.md`` (measured rate per iteration and per
bit beside the theory) into ``--out``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import pyplot, save_figure
from mpi4py import MPI

from ecmpi.algorithms.base import RunContext
from ecmpi.algorithms.dqgd import DQGD, QGD, gd_contraction, rate_dqgd, rate_qgd
from ecmpi.problems import make


def trajectory(cls, prob, comm, x0, steps, **params):
    """Relative distances, cumulative bits per worker and saturated count of one run."""
    alg = cls(RunContext(problem=prob, comm=comm, compressor=None, x0=x0, params=params))
    x_star = np.asarray(prob.x_star)
    d0 = np.linalg.norm(x0 - x_star)
    dist, bits, sat, total = [1.0], [0], 0.0, 0
    for t in range(steps):
        if dist[-1] > 1e6:  # diverging (theory rate >= 1): stop before the range overflows
            break
        cost = alg.step(t)
        total += cost.bits_up
        sat += cost.extra["saturated"]
        dist.append(np.linalg.norm(alg.x - x_star) / d0)
        bits.append(total)
    return np.array(dist), np.array(bits), sat


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results/dqgd"))
    ap.add_argument("--l2-rel", type=float, default=None)
    ap.add_argument("--floor", type=float, default=1e-8, help="T is chosen so sigma^T = floor")
    ap.add_argument("--bits", default="3,4,6,8,12")
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    prob = make(
        "lsq", "sklearn:diabetes", comm=comm, scale="standard", bias=True, l2_rel=args.l2_rel
    )
    x_star = np.asarray(prob.x_star)
    d = x_star.shape[0]
    x0 = np.zeros(d)
    sigma = gd_contraction(prob.L, prob.mu)
    eta = 2.0 / (prob.L + prob.mu)
    steps = min(5000, math.ceil(math.log(args.floor) / math.log(sigma)))
    gd = [1.0]
    x = x0.copy()
    for _ in range(steps):
        x = x - eta * np.asarray(prob.grad(x))
        gd.append(np.linalg.norm(x - x_star) / np.linalg.norm(x0 - x_star))
    runs = {"GD (float64)": (np.array(gd), 64 * d * np.arange(steps + 1), 0.0, sigma, sigma)}
    for R in [float(b) for b in args.bits.split(",")]:
        eps = math.sqrt(d) * 2.0**-R
        runs[f"DQ-GD R={R:g}"] = (
            *trajectory(DQGD, prob, comm, x0, steps, bits_per_dim=R),
            rate_dqgd(sigma, eps),
            R,
        )
        runs[f"QGD R={R:g}"] = (
            *trajectory(QGD, prob, comm, x0, steps, bits_per_dim=R),
            rate_qgd(sigma, eps),
            R,
        )
    if comm.rank != 0:
        return
    plt = pyplot()
    lines = [
        f"least squares on sklearn:diabetes, d = {d}, kappa = {prob.L / prob.mu:.4g}, "
        f"sigma = {sigma:.4f}, T = {steps}, P = {comm.size}\n",
        "| method | measured rate per iteration | theory | measured rate per bit | saturated |",
        "|---|---|---|---|---|",
    ]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (dist, bits, sat, theory, _R) in runs.items():
        ok = np.isfinite(dist) & (dist > 0)
        last = int(np.flatnonzero(ok)[-1])
        rate = dist[last] ** (1.0 / last)
        per_bit = dist[last] ** (1.0 / bits[last])
        lines.append(f"| {name} | {rate:.4f} | {theory:.4f} | {per_bit:.6f} | {int(sat)} |")
        style = "-" if name.startswith("DQ") else ("--" if name.startswith("QGD") else "k-")
        ax.semilogy(bits[ok] / d, dist[ok], style, label=name, lw=1)
    ax.set_xlabel("bits per dimension sent by each worker (cumulative)")
    ax.set_ylabel(r"$\|x_t - x^*\| / \|x_0 - x^*\|$")
    ax.set_ylim(args.floor / 10, 10)
    ax.set_xlim(0, 8 * steps)  # GD (64 bits per dimension per step) runs off the right edge
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"least squares, diabetes (kappa={prob.L / prob.mu:.3g})")
    save_figure(fig, args.out / "dqgd_real.png", dpi=120)
    (args.out / "dqgd_real.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
