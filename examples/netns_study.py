"""The emulated network study: compressed allreduce against MPI_Allreduce on shaped links.

``measure`` (root: namespaces and tc) runs each grid entry as one ``ecmpi bench
allreduce --emulate RATE`` (which starts the ranks itself, no mpiexec), kept in
``--data`` once done, so the study resumes::

    python examples/netns_study.py measure --data docs/figures/network_data.json
    python examples/netns_study.py report --data docs/figures/network_data.json

``report``: every row's speedup and the :mod:`ecmpi.bench.model` fit per link rate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from ecmpi.bench import model
from ecmpi.bench.emulate import STUDY_COMPRESSORS

#: name -> (rate, P, sizes, collectives, compressors)
GRID = {
    "1g-p4": ("1gbit", 4, "64K,1M,16M,64M", "allgather,sra,ring", STUDY_COMPRESSORS),
    "1g-p4-256": ("1gbit", 4, "256M", "sra", ("none", "qsgd:bits=2", "sign")),
    "1g-p2": ("1gbit", 2, "64K,1M,16M,64M", "allgather,sra,ring", STUDY_COMPRESSORS),
    "1g-p2-256": ("1gbit", 2, "256M", "sra", ("qsgd:bits=2",)),
    "10g-p4": ("10gbit", 4, "1M,16M,64M", "sra,ring", STUDY_COMPRESSORS),
    "10g-p2": ("10gbit", 2, "1M,16M,64M", "sra", STUDY_COMPRESSORS),
}


def measure(data: dict, path: Path) -> None:
    for name, (rate, P, sizes, collectives, specs) in GRID.items():
        if name in data["runs"]:
            continue
        out = path.with_suffix(".part.json")
        cmd = f"-m ecmpi bench allreduce --emulate {rate} --ranks {P} --sizes {sizes}".split()
        cmd += ["--collectives", collectives, "--out", str(out)]
        subprocess.run([sys.executable, *cmd, *(f"--compressor={s}" for s in specs)], check=True)
        data["runs"][name] = {"rate": rate, "P": P, "rows": json.loads(out.read_text())["rows"]}
        out.unlink()
        path.write_text(json.dumps(data, indent=1))  # resumable: one entry at a time


def report(data: dict, path: Path) -> None:
    rows = [r for run in data["runs"].values() for r in run["rows"]]
    print("| link | P | MiB | collective | compressor | seconds | speedup |\n" + "|---" * 7 + "|")
    for r in sorted(rows, key=lambda r: (r["rate"], r["P"], r["size"], r["algorithm"])):
        cells = (r["rate"], r["P"], r["size"] >> 20, r["algorithm"], r.get("compressor", ""))
        print("| " + " | ".join(map(str, cells)) + f" | {r['seconds']:.4f} | {r['speedup']:.2f} |")
    by_rate = {r["rate"]: [q for q in rows if q["rate"] == r["rate"]] for r in rows}
    nets = {rate: model.fit_network(sel) for rate, sel in by_rate.items()}
    for rate, n in nets.items():
        print(f"{rate}: alpha = {n.alpha * 1e6:.0f} us, beta = {n.beta * 1e9:.2f} ns/B")
    Ps = {r["P"] for r in rows}  # per-entry costs of each codec, and of MPI's summation
    codecs = {(s, P): model.fit_gamma(rows, s, P) for s in STUDY_COMPRESSORS for P in Ps}
    codecs |= {("mpi", P): model.fit_mpi_gamma(by_rate["1gbit"], nets["1gbit"], P) for P in Ps}
    err = np.array(model.predict_rows(rows, nets, codecs)) / [r["seconds"] for r in rows]
    print(f"model/measured: median {np.median(err):.2f}, 10%-90% {np.quantile(err, [0.1, 0.9])}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=["measure", "report"])
    ap.add_argument("--data", type=Path, default=Path("docs/figures/network_data.json"))
    a = ap.parse_args(argv)
    data = json.loads(a.data.read_text()) if a.data.exists() else {"runs": {}}
    {"measure": measure, "report": report}[a.stage](data, a.data)


if __name__ == "__main__":
    main()
