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
from _common import BREAST_CANCER, COMM, final, plot_against_bits, run_cli

from ecmpi.experiments.base import flags


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/ecqsgd_real"))
    ap.add_argument("--figure", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--compressor", default="qsgd:levels=4,bucket=31,norm=l2")
    a = ap.parse_args()
    common = [
        *BREAST_CANCER,
        *flags(lr="0.5", batch_size=8, steps=a.steps, seed=0, log_every=10),
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
        title = f"logistic regression, breast_cancer (P={COMM.size})"
        plot_against_bits(logs, a.figure, title)


if __name__ == "__main__":
    main()
