"""QESGD against full-precision Epoch-SGD and QSGD at equal bits per entry (logistic regression).

scikit-learn's breast_cancer (569 x 30 standardized, bias, lambda = 1e-3 * L),
parameter-server pattern (rank 0 is the server and a worker), Epoch-SGD
stages (T_0 = 25 steps, doubling; step 1.0 halving). QESGD and QSGD use the
same quantizer in both directions (``qsgd:levels=7,norm=linf``, 4-bit codes),
so they send the same bits per entry and step::

    mpiexec -n 4 python examples/qesgd_logreg.py --out results/qesgd \\
        --figure docs/figures/qesgd_logreg.png
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
    ap.add_argument("--out", type=Path, default=Path("results/qesgd"))
    ap.add_argument("--figure", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=375)  # stages of 25, 50, 100, 200
    ap.add_argument("--compressor", default="qsgd:levels=7,bucket=31,norm=linf")
    a = ap.parse_args()
    common = [
        *BREAST_CANCER,
        *flags(lr="1.0", batch_size=8, steps=a.steps, seed=0, log_every=5, collective="ps"),
    ]
    stages = ["--stage-length", "25", "--stage-growth", "2", "--lr-decay", "0.5"]
    q = ["--compressor", a.compressor]
    sched = [
        "--schedule",
        "stagewise",
        "--stage-steps",
        "25",
        "--stage-growth",
        "2",
        "--decay",
        "0.5",
    ]
    runs = {"epoch-sgd": common + stages, "qesgd": common + stages + q, "qsgd": common + q + sched}
    logs = {m: run_cli(a.out / f"{m}.h5", m, args) for m, args in runs.items()}
    if COMM.rank != 0:
        return
    print(f"{'method':>9} {'loss':>10} {'f-f*':>10} {'bits up':>11} {'bits down':>11}")
    for m, p in logs.items():
        r = final(p)
        print(
            f"{m:>9} {r['loss']:10.6f} {r['suboptimality']:10.3e} {r['bits_up']:11.4e} "
            f"{r['bits_down']:11.4e}"
        )
    if a.figure:
        title = f"logistic regression, breast_cancer, ps (P={COMM.size})"
        plot_against_bits(logs, a.figure, title, downlink=True)


if __name__ == "__main__":
    main()
