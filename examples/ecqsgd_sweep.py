"""ECQ-SGD's alpha x beta map: final f - f* and rounds to the target over the grid.

    ecmpi reproduce ecq-sgd-sweep --out results/ecq-sgd-sweep
    python examples/ecqsgd_sweep.py --logs results/ecq-sgd-sweep/logs --figure sweep.png

Reads the logs of ``ecq-sgd-sweep`` (:data:`ecmpi.experiments.ecqsgd.SWEEP`) and
draws, for each (alpha, beta), the final f - f* (colour, log scale; a cross where
the run diverged or ended above f(x0) - f*) with the stability boundary
``alpha^2 omega + (beta - alpha)^2 = 1`` of the ECQ-SGD recursion
(:func:`ecmpi.compress.feedback.stability`, omega from the log), and the rounds
until f - f* stays below the experiment's target (last crossing).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ecmpi import analyze
from ecmpi.experiments.ecqsgd import EPS_REL


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=Path, default=Path("results/ecq-sgd-sweep/logs"))
    ap.add_argument("--figure", type=Path, default=None)
    a = ap.parse_args(argv)
    df = analyze.load(a.logs)
    s = analyze.summary(df, eps=EPS_REL, eps_relative=True)
    s["alpha"] = df["resolved.alpha"].astype(float).to_numpy()
    s["beta"] = df["resolved.beta"].astype(float).to_numpy()
    omega = float(df["resolved.omega"].astype(float).iloc[0])
    start = np.array([float(t["suboptimality"][0]) for t in df["trajectory"]])
    s["stability"] = s["alpha"] ** 2 * omega + (s["beta"] - s["alpha"]) ** 2
    cols = ["alpha", "beta", "stability", "status", "final_suboptimality", "rounds_to_eps"]
    print(f"omega = {omega:.4g}; target f - f* <= {EPS_REL:g} (f(x0) - f*)\n")
    print(s[cols].sort_values(["beta", "alpha"]).to_string(index=False))
    fig = Figure(figsize=(5.2, 3.8))
    ax = fig.subplots()
    ok = np.isfinite(s["final_suboptimality"]) & (s["final_suboptimality"] < start)
    z = np.log10(s["final_suboptimality"][ok])
    sc = ax.scatter(s["alpha"][ok], s["beta"][ok], c=z, s=260, cmap="viridis", marker="s")
    ax.scatter(s["alpha"][~ok], s["beta"][~ok], marker="x", s=120, c="k", label="diverged")
    for _, r in s[ok & np.isfinite(s["rounds_to_eps"])].iterrows():
        xy, txt = (r["alpha"], r["beta"]), f"{r['rounds_to_eps']:.0f}"
        ax.annotate(txt, xy, fontsize=7, ha="center", va="center", color="w")
    al = np.geomspace(s["alpha"].min() / 2, 1.5, 400)
    for sign in (1, -1):  # beta = alpha +- sqrt(1 - alpha^2 omega)
        inside = 1 - al**2 * omega >= 0
        ax.plot(
            al[inside],
            al[inside] + sign * np.sqrt(1 - al[inside] ** 2 * omega),
            "r--",
            lw=1,
            label="alpha^2 omega + (beta - alpha)^2 = 1" if sign > 0 else None,
        )
    ax.axvline(1 / (1 + omega), color="0.4", ls=":", lw=1, label="alpha = 1/(1+omega), beta = 1")
    ax.set(
        xscale="log",
        xlabel="alpha",
        ylabel="beta",
        ylim=(0.3, 1.2),
        title=f"ECQ-SGD final f - f* (log10; numbers: rounds to eps), omega = {omega:.3g}",
    )
    ax.title.set_fontsize(8)
    fig.colorbar(sc, ax=ax, label="log10 final f - f*")
    ax.legend(fontsize=7, loc="lower left")
    if a.figure:
        fig.tight_layout()
        fig.savefig(a.figure, dpi=110)


if __name__ == "__main__":
    main()
