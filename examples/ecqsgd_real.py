"""ECQ-SGD on real data: l2-regularized logistic regression on scikit-learn's breast_cancer.

569 samples x 30 standardized features plus a bias, lambda = 1e-3 * L; SGD,
QSGD and ECQ-SGD with s = 4 levels, l2 scaling, one bucket per vector::

    mpiexec -n 4 python examples/ecqsgd_real.py --out results/ecqsgd_real \\
        --figure docs/figures/ecqsgd_real.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ecqsgd_syn import COLORS, COMM, final, run_cli

from ecmpi.log import open_log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/ecqsgd_real"))
    ap.add_argument("--figure", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--compressor", default="qsgd:levels=4,bucket=31,norm=l2")
    a = ap.parse_args()
    common = [
        "--problem",
        "logreg",
        "--dataset",
        "sklearn:breast_cancer",
        "--scale",
        "standard",
        "--bias",
        "--l2-rel",
        "1e-3",
        "--lr",
        "0.5",
        "--batch-size",
        "8",
        "--steps",
        str(a.steps),
        "--seed",
        "0",
        "--log-every",
        "10",
    ]
    q = ["--compressor", a.compressor]
    runs = {"sgd": common, "qsgd": common + q, "ecq-sgd": common + q}
    logs = {m: run_cli(a.out / f"{m}.h5", m, args) for m, args in runs.items()}
    if COMM.rank != 0:
        return
    print(f"{'method':>8} {'loss':>10} {'f-f*':>10} {'bits/worker':>12} {'entropy bits':>12}")
    for m, p in logs.items():
        r = final(p)
        print(
            f"{m:>8} {r['loss']:10.5f} {r['suboptimality']:10.3e} {r['bits_up']:12.4e} "
            f"{r.get('entropy_bits_up', r['bits_up']):12.4e}"
        )
    if a.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
        for m, p in logs.items():
            tr = open_log(p).trajectory
            axes[0].semilogy(tr["step"], tr["suboptimality"], color=COLORS[m], label=m)
            axes[1].loglog(tr["bits_up"][1:], tr["suboptimality"][1:], color=COLORS[m])
        axes[0].set_xlabel("iteration")
        axes[1].set_xlabel("bits per worker (uplink)")
        axes[0].set_ylabel("f(w) - f*")
        axes[0].legend()
        fig.suptitle(f"logistic regression, breast_cancer (P={COMM.size})")
        fig.tight_layout()
        a.figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(a.figure, dpi=110)
        print(f"figure: {a.figure}")


if __name__ == "__main__":
    main()
