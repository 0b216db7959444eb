"""The emulated cluster network study: compressed allreduce against MPI_Allreduce on shaped links.

Needs root (network namespaces and tc). Three stages, each resumable (results
of finished stages are kept in ``--data``):

    python examples/netns_study.py measure --data docs/figures/network_data.json
    python examples/netns_study.py contention --data docs/figures/network_data.json
    python examples/netns_study.py report --data docs/figures/network_data.json --figures docs/figures

``measure`` runs :func:`ecmpi.bench.emulate.run_emulated` over the grid below
(each (rate, P, group) a separate MPMD job on a fresh emulated cluster);
``contention`` times encode/decode of one rank alone and of 4 ranks at once on
the same cores; ``report`` fits :mod:`ecmpi.bench.model`, writes the figures
``network_*.png`` and prints the markdown tables of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from ecmpi.bench.emulate import STUDY_COMPRESSORS, run_emulated

MB = 1 << 20
ALL = ("allgather", "sra", "ring")
#: (name, rate, P, sizes, algorithms, compressors): sized for about 30 min on 2 shared cores
GRID = [
    ("1g-p4", "1gbit", 4, [64 << 10, MB, 16 * MB, 64 * MB], ALL, STUDY_COMPRESSORS),
    ("1g-p4-256", "1gbit", 4, [256 * MB], ("sra",), ("none", "qsgd:bits=2", "sign")),
    ("1g-p2", "1gbit", 2, [64 << 10, MB, 16 * MB, 64 * MB], ALL, STUDY_COMPRESSORS),
    ("1g-p2-256", "1gbit", 2, [256 * MB], ("sra",), ("qsgd:bits=2",)),
    ("10g-p4", "10gbit", 4, [MB, 16 * MB, 64 * MB], ("sra", "ring"), STUDY_COMPRESSORS),
    ("10g-p2", "10gbit", 2, [MB, 16 * MB, 64 * MB], ("sra",), STUDY_COMPRESSORS),
]


def _load(path: str) -> dict:
    if os.path.exists(path):
        with open(path) as fh:
            return json.load(fh)
    return {"runs": {}}


def _save(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


def measure(args: argparse.Namespace) -> None:
    data = _load(args.data)
    for name, rate, P, sizes, algs, comps in GRID:
        if args.only and name not in args.only.split(","):
            continue
        if name in data["runs"] and not args.redo:
            print(f"{name}: done already", flush=True)
            continue
        t0 = time.perf_counter()
        print(f"{name}: {rate} P={P} sizes={[s >> 10 for s in sizes]} KiB", flush=True)
        rows = run_emulated(
            P, rate, sizes, compressors=comps, algorithms=algs, progress=True, timeout=3000
        )
        data["runs"][name] = {"rate": rate, "P": P, "rows": rows, "wall": time.perf_counter() - t0}
        _save(args.data, data)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)


_CONTENTION = r"""
import json, sys, time, numpy as np
from mpi4py import MPI
import ecmpi
comm = MPI.COMM_WORLD
n = int(sys.argv[1])
x = np.random.default_rng(comm.rank).standard_normal(n).astype(np.float32)
res = {}
for spec in sys.argv[2].split(";"):
    c = ecmpi.compressor(spec)
    c.decode(c.encode(x[:4099], seed=1))
    acc = np.zeros(n, np.float32)
    enc, dec = [], []
    for it in range(3):
        comm.Barrier(); t0 = time.perf_counter(); p = c.encode(x, seed=(1, it))
        t1 = time.perf_counter(); c.decode_add(p, acc); t2 = time.perf_counter()
        enc.append(t1 - t0); dec.append(t2 - t1)
    res[spec] = [min(enc), min(dec)]
t0 = time.perf_counter(); y = x.copy(); res["copy"] = [time.perf_counter() - t0, 0.0]
res = comm.gather(res)
if comm.rank == 0:
    print(json.dumps(res))
"""


def contention(args: argparse.Namespace) -> None:
    """Encode/decode seconds of 4M entries: one rank alone, then 2 and 4 ranks at once."""
    data = _load(args.data)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    n = 4 * MB
    specs = ";".join(s for s in STUDY_COMPRESSORS)
    out = {"n": n, "load_before": os.getloadavg()[0]}
    for P in (1, 2, 4):
        proc = subprocess.run(
            [mpiexec, "-n", str(P), sys.executable, "-c", _CONTENTION, str(n), specs],
            capture_output=True,
            text=True,
            check=True,
            timeout=1200,
        )
        out[str(P)] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(P, out[str(P)][0], flush=True)
    data["contention"] = out
    _save(args.data, data)


def report(args: argparse.Namespace) -> None:
    from ecmpi.bench import model

    data = _load(args.data)
    rows = [r for run in data["runs"].values() for r in run["rows"]]
    text = model.study_report(rows, data.get("contention"), figures=args.figures)
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("stage", choices=["measure", "contention", "report"])
    ap.add_argument("--data", default="docs/figures/network_data.json")
    ap.add_argument("--figures", default="docs/figures")
    ap.add_argument("--only", default=None, help="comma-separated grid names")
    ap.add_argument("--redo", action="store_true")
    args = ap.parse_args()
    np.set_printoptions(precision=4)
    {"measure": measure, "contention": contention, "report": report}[args.stage](args)


if __name__ == "__main__":
    main()
