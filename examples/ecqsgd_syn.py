"""ECQ-SGD on the synthetic least-squares recipe "Syn-d" (Wu et al., ICML 2018).

Runs 32-bit-style SGD, QSGD and ECQ-SGD on ``syn:d=256,512,1024`` (10,000
samples, y = X w* + noise), step 0.02, s = 4 levels with l2 scaling, and
plots loss and ||w - w*|| against iterations::

    mpiexec -n 4 python examples/ecqsgd_syn.py --out results/ecqsgd_syn \\
        --figure docs/figures/ecqsgd_syn.png

One HDF5 log per run (``{algorithm}_d{d}.h5``), a table on stdout.
:func:`syn_args` is reused by ``ecqsgd_bits.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import COLORS, COMM, final, pyplot, run_cli, save_figure

from ecmpi.log import open_log


def syn_args(d: int, steps: int, batch: int, bucket: int) -> dict[str, list[str]]:
    """CLI arguments of the three methods on Syn-d."""
    common = [
        "--problem",
        "lsq",
        "--dataset",
        f"syn:d={d}",
        "--lr",
        "0.02",
        "--steps",
        str(steps),
        "--batch-size",
        str(batch),
        "--seed",
        "0",
        "--log-every",
        "10",
    ]
    q = ["--compressor", f"qsgd:levels=4,bucket={bucket},norm=l2"]
    return {
        "sgd": common,
        "qsgd": common + q,
        "ecq-sgd": common + q + ["--alpha", "1", "--beta", "1"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/ecqsgd_syn"))
    ap.add_argument("--figure", type=Path, default=None)
    ap.add_argument("--dims", default="256,512,1024")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--bucket", type=int, default=64)
    a = ap.parse_args()
    dims = [int(d) for d in a.dims.split(",")]
    logs: dict[tuple[int, str], Path] = {}
    for d in dims:
        for alg, args in syn_args(d, a.steps, a.batch_size, a.bucket).items():
            logs[d, alg] = run_cli(a.out / f"{alg}_d{d}.h5", alg, args)
    if COMM.rank != 0:
        return
    print(
        f"{'d':>5} {'method':>8} {'loss':>10} {'f-f*':>10} {'|w-w*|':>9} {'bits/worker':>12} "
        f"{'entropy bits':>12}"
    )
    for (d, alg), p in logs.items():
        r = final(p)
        ent = r.get("entropy_bits_up", float("nan"))
        print(
            f"{d:>5} {alg:>8} {r['loss']:10.4e} {r['suboptimality']:10.3e} "
            f"{r['dist_to_opt']:9.3e} {r['bits_up']:12.4e} {ent:12.4e}"
        )
    if a.figure:
        plt = pyplot()
        fig, axes = plt.subplots(2, len(dims), figsize=(4 * len(dims), 6), squeeze=False)
        for j, d in enumerate(dims):
            for alg in ("sgd", "qsgd", "ecq-sgd"):
                tr = open_log(logs[d, alg]).trajectory
                label = {
                    "sgd": "SGD (full precision)",
                    "qsgd": "QSGD s=4",
                    "ecq-sgd": "ECQ-SGD s=4",
                }[alg]
                axes[0, j].semilogy(tr["step"], tr["loss"], color=COLORS[alg], label=label)
                axes[1, j].semilogy(tr["step"], tr["dist_to_opt"], color=COLORS[alg])
            axes[0, j].set_title(f"Syn-{d}")
            axes[1, j].set_xlabel("iteration")
        axes[0, 0].set_ylabel("loss f(w)")
        axes[1, 0].set_ylabel("||w - w*||")
        axes[0, 0].legend()
        save_figure(fig, a.figure, announce=True)


if __name__ == "__main__":
    main()
