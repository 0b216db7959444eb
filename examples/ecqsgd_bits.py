"""ECQ-SGD's communication: bits per worker to equal loss, with and without entropy coding.

    mpiexec -n 4 python examples/experiment.py ecq-sgd --out results/ecq-sgd
    python examples/ecqsgd_bits.py --logs results/ecq-sgd --figure ecqsgd_bits.png

Reads the logs of the ``ecq-sgd`` experiment (:mod:`ecmpi.experiments.ecqsgd`).
For each Syn-d, the target is ``--factor`` times the final f - f* of 32-bit SGD;
:func:`ecmpi.analyze.summary` gives the uplink bits each method needs to reach it
and the compression ratio against SGD; the last column counts the bits of the same
QSGD levels entropy coded (the logged ``entropy_bits_up``). The figure draws f - f*
against both bit counts (dashed: entropy coded).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ecmpi import analyze


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=Path, default=Path("results/ecq-sgd"))
    ap.add_argument("--factor", type=float, default=1.2)
    ap.add_argument("--figure", type=Path, default=None)
    a = ap.parse_args(argv)
    df = analyze.load(a.logs)
    datasets = sorted(df["dataset"].unique())
    fig = Figure(figsize=(4 * len(datasets), 3.4))
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    for ax, (dataset, runs) in zip(axes, df.groupby("dataset"), strict=True):
        sgd = runs[runs["algorithm"] == "sgd"]
        eps = a.factor * np.mean([tr["suboptimality"][-1] for tr in sgd["trajectory"]])
        table = analyze.summary(runs, eps=eps, group_by="algorithm")
        entropy = {}
        for alg, tr in zip(runs["algorithm"], runs["trajectory"], strict=True):
            bits = tr.get("entropy_bits_up", tr["bits_up"])
            hit = np.flatnonzero(tr["suboptimality"] <= eps)
            entropy.setdefault(alg, []).append(bits[hit[0]] if hit.size else np.nan)
            ax.loglog(tr["bits_up"][1:], tr["suboptimality"][1:], label=alg)
            if "entropy_bits_up" in tr:
                ax.loglog(bits[1:], tr["suboptimality"][1:], "--", label=f"{alg}, entropy coded")
        print(f"\n{dataset}: f - f* <= {eps:.3g}\n")
        print(analyze.format_table(table, "md"))
        print("entropy-coded bits to eps:", {k: f"{np.mean(v):.4g}" for k, v in entropy.items()})
        ax.set(title=dataset, xlabel="bits per worker (uplink)", ylabel="f - f*")
    ax.legend(fontsize=7)
    if a.figure:
        fig.tight_layout()
        fig.savefig(a.figure, dpi=110)


if __name__ == "__main__":
    main()
