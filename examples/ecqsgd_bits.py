"""ECQ-SGD's communication: uplink bits to the experiment's own target, per dataset.

    ecmpi reproduce ecq-sgd --out results/ecq-sgd
    python examples/ecqsgd_bits.py --logs results/ecq-sgd/logs --figure ecqsgd_bits.png

Reads the logs of the ``ecq-sgd`` experiment (:mod:`ecmpi.experiments.ecqsgd`).
The target is the one fixed in the definition before any run,
``f - f* <= EPS_REL * (f(x0) - f*)``, counted from the last crossing
(:func:`ecmpi.analyze.summary` with ``eps_relative``); this script only prints,
per dataset, the uplink bits each method needs and the ratio to 32-bit SGD, and
draws f - f* against the uplink bits per worker.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.figure import Figure

from ecmpi import analyze
from ecmpi.experiments.ecqsgd import EPS_REL


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=Path, default=Path("results/ecq-sgd/logs"))
    ap.add_argument("--figure", type=Path, default=None)
    a = ap.parse_args(argv)
    df = analyze.load(a.logs)
    datasets = sorted(df["dataset"].unique())
    fig = Figure(figsize=(4.5 * len(datasets), 3.6))
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    for ax, dataset in zip(axes, datasets, strict=True):
        runs = df[df["dataset"] == dataset]
        table = analyze.summary(
            runs, eps=EPS_REL, eps_relative=True, group_by=["algorithm", "compressor"]
        )
        print(f"\n{dataset}: f - f* <= {EPS_REL:g} (f(x0) - f*), last crossing\n")
        print(analyze.format_table(table, "md"))
        for _, r in runs.iterrows():
            tr = r["trajectory"]
            ax.loglog(tr["bits_up"][1:], tr["suboptimality"][1:], lw=0.8, label=r["algorithm"])
        ax.set(title=dataset, xlabel="uplink bits per worker", ylabel="f - f*")
    axes[0].legend(fontsize=7)
    if a.figure:
        fig.tight_layout()
        fig.savefig(a.figure, dpi=110)


if __name__ == "__main__":
    main()
