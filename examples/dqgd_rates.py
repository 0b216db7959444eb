"""The DQ-GD rate function: measured linear rate against bits per dimension R.

    python examples/dqgd_rates.py --out results/dqgd        # one worker (the paper's setting)
    mpiexec -n 4 python examples/dqgd_rates.py --out results/dqgd

For each problem (a quadratic with kappa = 3.5 in d = 50 and d = 200, and least
squares on synthetic data in d = 50) and each R, runs GD, DQ-GD and naive QGD
for T steps (``sigma^T = 1e-10``) from x0 = 0 and measures ``(||x_T - x*|| / ||x_0 - x*||)^(1/T)``.
Writes ``dqgd_rates.png`` (measured points and the theory curves
``max(sigma, rho*2^-R)``, ``sigma + rho*2^-R``, ``max(sigma, 2^-R)``) and
``dqgd_rates.md`` / ``dqgd_rates.json`` (the table) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
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

PROBLEMS = {
    "quadratic d=50": dict(name="quadratic", dim=50, kappa=3.5, n=500),
    "quadratic d=200": dict(name="quadratic", dim=200, kappa=3.5, n=2000),
    "lsq synthetic d=50": dict(name="lsq", dataset="synthetic:n=2000,d=50"),
}


def measured_rate(x_t: np.ndarray, x0: np.ndarray, x_star: np.ndarray, steps: int) -> float:
    """``(||x_T - x*|| / ||x_0 - x*||)^(1/T)``."""
    return float((np.linalg.norm(x_t - x_star) / np.linalg.norm(x0 - x_star)) ** (1.0 / steps))


def run_one(cls, prob, comm, x0, steps: int, **params) -> tuple[float, float, float]:
    """Rate, theory and total saturated coordinates of one run."""
    ctx = RunContext(problem=prob, comm=comm, compressor=None, x0=x0, params=params)
    alg = cls(ctx)
    sat = 0.0
    for t in range(steps):
        sat += alg.step(t).extra["saturated"]
        if not np.all(np.isfinite(alg.x)) or np.linalg.norm(alg.x) > 1e12:
            return float("nan"), alg.theory_rate, sat
    return measured_rate(alg.x, x0, np.asarray(prob.x_star), steps), alg.theory_rate, sat


def sweep(comm, spec: dict, bits: list[int], floor: float) -> dict:
    kw = dict(spec)
    prob = make(kw.pop("name"), kw.pop("dataset", None), comm=comm, **kw)
    x_star = np.asarray(prob.x_star)
    x0 = np.zeros_like(x_star)
    d = x_star.shape[0]
    sigma = gd_contraction(prob.L, prob.mu)
    # T with sigma^T = floor: long enough for the rate, short of float64's rounding floor
    steps = max(5, math.ceil(math.log(floor) / math.log(sigma)))
    eta = 2.0 / (prob.L + prob.mu)
    x = x0.copy()
    for _ in range(steps):
        x = x - eta * np.asarray(prob.grad(x))
    rows = []
    for R in bits:
        eps = math.sqrt(d) * 2.0**-R
        dq, _, dq_sat = run_one(DQGD, prob, comm, x0, steps, bits_per_dim=R)
        dqi, th_inf, _ = run_one(DQGD, prob, comm, x0, steps, bits_per_dim=R, range_norm="linf")
        nv, _, nv_sat = run_one(QGD, prob, comm, x0, steps, bits_per_dim=R)
        rows.append(
            dict(
                R=R,
                gd=measured_rate(x, x0, x_star, steps),
                dqgd=dq,
                dqgd_linf=dqi,
                qgd=nv,
                theory_dqgd=rate_dqgd(sigma, eps),
                theory_dqgd_linf=th_inf,
                theory_qgd=rate_qgd(sigma, eps),
                saturated=dq_sat + nv_sat,
            )
        )
    return dict(
        d=d, L=prob.L, mu=prob.mu, kappa=prob.L / prob.mu, sigma=sigma, steps=steps, rows=rows
    )


def table(results: dict) -> str:
    lines = []
    for name, res in results.items():
        lines.append(
            f"\n**{name}** (d = {res['d']}, kappa = {res['kappa']:.3g}, "
            f"sigma = {res['sigma']:.4f}, T = {res['steps']})\n"
        )
        lines.append(
            "| R | GD | DQ-GD | theory max(sigma, rho 2^-R) | DQ-GD linf | "
            "theory max(sigma, 2^-R) | naive QGD | theory sigma + rho 2^-R |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for r in res["rows"]:
            lines.append(
                f"| {r['R']} | {r['gd']:.4f} | {r['dqgd']:.4f} | {r['theory_dqgd']:.4f} | "
                f"{r['dqgd_linf']:.4f} | {r['theory_dqgd_linf']:.4f} | {r['qgd']:.4f} | "
                f"{r['theory_qgd']:.4f} |"
            )
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), sharey=True)
    for ax, (name, res) in zip(np.atleast_1d(axes), results.items(), strict=True):
        Rs = np.array([r["R"] for r in res["rows"]])
        grid = np.linspace(Rs.min(), Rs.max(), 200)
        s, d = res["sigma"], res["d"]
        ax.plot(
            grid,
            np.maximum(s, math.sqrt(d) * 2.0**-grid),
            "C1-",
            lw=1,
            label=r"theory $\max(\sigma, \rho 2^{-R})$",
        )
        ax.plot(
            grid, s + math.sqrt(d) * 2.0**-grid, "C2-", lw=1, label=r"theory $\sigma + \rho 2^{-R}$"
        )
        ax.plot(
            grid,
            np.maximum(s, 2.0**-grid),
            "k:",
            lw=1,
            label=r"rate function $\max(\sigma, 2^{-R})$",
        )
        ax.plot(Rs, [r["gd"] for r in res["rows"]], "C0s", label="GD (measured)")
        ax.plot(Rs, [r["dqgd"] for r in res["rows"]], "C1o", label="DQ-GD")
        ax.plot(Rs, [r["dqgd_linf"] for r in res["rows"]], "C3^", label="DQ-GD, linf range")
        ax.plot(Rs, [r["qgd"] for r in res["rows"]], "C2x", label="naive QGD")
        ax.set_title(f"{name}, kappa={res['kappa']:.3g}")
        ax.set_xlabel("bits per dimension R")
        ax.set_ylim(0.2, 1.3)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel(r"measured rate $(\|x_T-x^*\|/\|x_0-x^*\|)^{1/T}$")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results/dqgd"))
    ap.add_argument("--floor", type=float, default=1e-10, help="T is chosen so sigma^T = floor")
    ap.add_argument("--bits", default="2,3,4,5,6,7,8,9,10")
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    bits = [int(b) for b in args.bits.split(",")]
    results = {name: sweep(comm, spec, bits, args.floor) for name, spec in PROBLEMS.items()}
    if comm.rank == 0:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "dqgd_rates.json").write_text(json.dumps(results, indent=1))
        (args.out / "dqgd_rates.md").write_text(table(results))
        plot(results, args.out / "dqgd_rates.png")
        print(table(results))


if __name__ == "__main__":
    main()
