"""ECQ-SGD's communication: loss against bits per worker, compression ratio at equal loss.

Reads the Syn-d logs of ``examples/ecqsgd_syn.py`` (runs them for d=256 first
when they are missing) and reports, for each d, the bits each method needs
to first reach ``1.2 x`` the final suboptimality of full-precision SGD
(fixed-width payloads and entropy-coded levels), and the ratio to SGD's bits.
The SGD baseline sends float64; the ``vs 32-bit`` column rescales its bits to
float32 payloads (``48 + 4d`` instead of ``48 + 8d`` bytes)::

    mpiexec -n 4 python examples/ecqsgd_bits.py --logs results/ecqsgd_syn \\
        --figure docs/figures/ecqsgd_bits.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import COLORS, COMM, pyplot, run_cli, save_figure
from ecqsgd_syn import syn_args

from ecmpi.log import open_log


def first_reach(tr: dict, key: str, target: float) -> float:
    """``tr[key]`` at the first logged row with suboptimality <= target (nan if never)."""
    hit = np.flatnonzero(tr["suboptimality"] <= target)
    return float(tr[key][hit[0]]) if hit.size else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=Path, default=Path("results/ecqsgd_syn"))
    ap.add_argument("--figure", type=Path, default=None)
    ap.add_argument("--factor", type=float, default=1.2)
    a = ap.parse_args()
    dims = sorted(int(p.stem.split("_d")[1]) for p in a.logs.glob("sgd_d*.h5"))
    if not dims:
        dims = [256]
        for alg, args in syn_args(256, 300, 32, 64).items():
            run_cli(a.logs / f"{alg}_d256.h5", alg, args)
    if COMM.rank != 0:
        return
    print(
        f"{'d':>5} {'method':>8} {'bits to eps':>12} {'ratio':>7} {'vs 32-bit':>9} "
        f"{'entropy bits':>12} {'ratio':>7} {'vs 32-bit':>9}"
    )
    trs = {}
    for d in dims:
        trs[d] = {
            m: open_log(a.logs / f"{m}_d{d}.h5").trajectory for m in ("sgd", "qsgd", "ecq-sgd")
        }
        eps = a.factor * float(trs[d]["sgd"]["suboptimality"][-1])
        b64 = first_reach(trs[d]["sgd"], "bits_up", eps)
        b32 = b64 * (48 + 4 * d) / (48 + 8 * d)
        for m, tr in trs[d].items():
            b = first_reach(tr, "bits_up", eps)
            e = first_reach(tr, "entropy_bits_up", eps) if "entropy_bits_up" in tr else b
            print(
                f"{d:>5} {m:>8} {b:12.4e} {b64 / b:7.2f} {b32 / b:9.2f} {e:12.4e} "
                f"{b64 / e:7.2f} {b32 / e:9.2f}"
            )
    if a.figure:
        plt = pyplot()
        fig, axes = plt.subplots(1, len(dims), figsize=(4 * len(dims), 3.4), squeeze=False)
        for j, d in enumerate(dims):
            ax = axes[0, j]
            for m, tr in trs[d].items():
                ax.loglog(tr["bits_up"][1:], tr["suboptimality"][1:], color=COLORS[m], label=m)
                if "entropy_bits_up" in tr:
                    ax.loglog(
                        tr["entropy_bits_up"][1:],
                        tr["suboptimality"][1:],
                        color=COLORS[m],
                        ls="--",
                        label=f"{m}, entropy coded",
                    )
            ax.set_title(f"Syn-{d}")
            ax.set_xlabel("bits per worker (uplink)")
        axes[0, 0].set_ylabel("f(w) - f*")
        axes[0, 0].legend(fontsize=7)
        save_figure(fig, a.figure, announce=True)


if __name__ == "__main__":
    main()
