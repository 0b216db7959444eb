"""ECQ-SGD's per-step time split at d = 20,000: gradient and update, encode + decode, communicate.

    ecmpi reproduce ecq-sgd-time --out results/ecq-sgd-time
    python examples/ecqsgd_time.py --logs results/ecq-sgd-time/logs

Reads the logs of ``ecq-sgd-time`` (:data:`ecmpi.experiments.ecqsgd.TIME`). From
the cumulative ``wall_time`` (rank 0's seconds inside steps), ``compress_time``
(encode + decode) and ``comm_time`` (communicate) it prints milliseconds per
step over the logged steps after the first row (step 0 is setup): ``encode +
decode``, ``communicate`` and the rest, ``gradient + update = wall - encode -
communicate`` (the minibatch gradient, the error-feedback arithmetic and the
step), with the uplink bytes per worker and step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ecmpi import analyze


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=Path, default=Path("results/ecq-sgd-time/logs"))
    a = ap.parse_args(argv)
    df = analyze.load(a.logs)
    cols = ("method", "ranks", "steps", "ms/step", "gradient + update", "encode + decode")
    print("| " + " | ".join((*cols, "communicate", "bytes up/step")) + " |")
    print("|" + "---|" * 8)
    for _, r in df.sort_values("algorithm").iterrows():
        tr = r["trajectory"]
        steps = float(tr["step"][-1] - tr["step"][0])
        per = {
            k: 1e3 * float(tr[k][-1] - tr[k][0]) / steps
            for k in ("wall_time", "compress_time", "comm_time")
        }
        rest = per["wall_time"] - per["compress_time"] - per["comm_time"]
        up = float(np.diff(tr["bits_up"][[0, -1]])[0]) / 8 / steps
        wall, enc, comm = per["wall_time"], per["compress_time"], per["comm_time"]
        print(
            f"| {r['algorithm']} | {r['n_ranks']} | {steps:.0f} | {wall:.2f} | {rest:.2f} "
            f"| {enc:.2f} | {comm:.2f} | {up:,.0f} |"
        )


if __name__ == "__main__":
    main()
