"""The emulated cluster network study: compressed allreduce against MPI_Allreduce on shaped links.

Needs root (network namespaces and tc). Three stages, each resumable (results
of finished stages are kept in ``--data``):

    python examples/netns_study.py measure --data docs/figures/network_data.json
    python examples/netns_study.py contention --data docs/figures/network_data.json
    python examples/netns_study.py report --data docs/figures/network_data.json \\
        --figures docs/figures

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
            P, rate, sizes, compressors=comps, collectives=algs, progress=True, timeout=3000
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


SHORT = {
    "none": "none",
    "fp16": "fp16",
    "qsgd:bits=2": "qsgd 2b",
    "qsgd:bits=4": "qsgd 4b",
    "sign": "sign (1b)",
    "topk:ratio=0.01": "topk 1%",
}
RATES_GBIT = {"1gbit": 1.0, "10gbit": 10.0}


def _fits(rows, contention):
    """Networks per rate, codecs per (compressor, P) from the phase times, MPI's gamma per P."""
    from ecmpi.bench import model

    nets = {rate: model.fit_network([r for r in rows if r["rate"] == rate]) for rate in RATES_GBIT}
    codecs = {}
    for P in sorted({r["P"] for r in rows}):
        for spec in STUDY_COMPRESSORS:
            codecs[spec, P] = model.fit_gamma(rows, spec, P)
        codecs["mpi", P] = model.fit_mpi_gamma(
            [r for r in rows if r["rate"] == "1gbit"], nets["1gbit"], P
        )
    return nets, codecs


def _md_main(rows, rate, P, sizes):
    from ecmpi.bench import model

    lines = [
        "| size | method | time (s) | speedup | ideal | of ideal | encode | comm | decode "
        "| link MB/call |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["rate"] != rate or r["P"] != P or r["size"] not in sizes:
            continue
        if r["algorithm"] == "MPI_Allreduce":
            ideal, name, ph = 1.0, "MPI_Allreduce float32", ["", "", ""]
        else:
            ideal = model.ideal_speedup(r["algorithm"], r["n"], P, model.codec(r["compressor"]))
            name = f"{r['algorithm']} {SHORT[r['compressor']]}"
            ph = [f"{r[k + '_seconds']:.3f}" for k in ("encode", "communicate", "decode")]
        lines.append(
            f"| {r['size'] >> 20}M | {name} | {r['seconds']:.3f} | {r['speedup']:.2f} | "
            f"{ideal:.1f} | {r['speedup'] / ideal:.0%} | {' | '.join(ph)} | "
            f"{r['link_sent'] / 1e6:.2f} |"
        )
    return "\n".join(lines)


def _md_compact(rows, alg):
    """Speedup of one collective per compressor, for every (rate, P, size) measured."""
    keys = sorted(
        {(r["rate"], r["P"], r["size"]) for r in rows if r["algorithm"] == alg},
        key=lambda k: (RATES_GBIT[k[0]], k[1], k[2]),
    )
    head = "| link | P | size | MPI (s) | " + " | ".join(SHORT.values()) + " |"
    lines = [head, "|---|---:|---:|---:|" + "---:|" * len(SHORT)]
    for rate, P, size in keys:
        sel = [r for r in rows if (r["rate"], r["P"], r["size"]) == (rate, P, size)]
        mpi = next(r["seconds"] for r in sel if r["algorithm"] == "MPI_Allreduce")
        cells = []
        for spec in SHORT:
            hit = [r for r in sel if r["algorithm"] == alg and r["compressor"] == spec]
            cells.append(f"{hit[0]['speedup']:.2f}" if hit else "")
        lines.append(
            f"| {rate} | {P} | {size >> 20 or f'{size >> 10}K'}"
            f"{'M' if size >> 20 else ''} | {mpi:.3f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def _plots(rows, nets, codecs, contention, figures):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ecmpi.bench import model

    colors = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#D55E00", "#CC79A7"]
    # 1. speedup against size, sra, per (rate, P), with the ideal (ratio of bytes) dashed
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8), sharey=True)
    for ax, (rate, P) in zip(axes, [("1gbit", 2), ("1gbit", 4), ("10gbit", 2), ("10gbit", 4)]):
        for spec, col in zip(SHORT, colors):
            sel = sorted(
                (
                    r
                    for r in rows
                    if (r["rate"], r["P"], r["algorithm"], r["compressor"])
                    == (rate, P, "sra", spec)
                ),
                key=lambda r: r["size"],
            )
            if not sel:
                continue
            x = [r["size"] / 2**20 for r in sel]
            ax.plot(x, [r["speedup"] for r in sel], "o-", color=col, label=SHORT[spec])
            ideal = [model.ideal_speedup("sra", r["n"], P, model.codec(spec)) for r in sel]
            ax.plot(x, ideal, "--", color=col, lw=0.8)
        ax.axhline(1, color="grey", lw=0.5)
        ax.set(xscale="log", yscale="log", title=f"sra, {rate}, P={P}", xlabel="vector (MiB)")
    axes[0].set_ylabel("speedup over MPI_Allreduce")
    axes[0].legend(fontsize=7, title="dashed: ideal", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(figures, "network_speedup.png"), dpi=110)
    plt.close(fig)

    # 2. time breakdown at 64 MiB, 1 Gb/s, P=4
    sel = [r for r in rows if (r["rate"], r["P"], r["size"]) == ("1gbit", 4, 64 * MB)]
    fig, ax = plt.subplots(figsize=(11, 3.8))
    labels, bottoms = [], []
    for i, r in enumerate(sel):
        if r["algorithm"] == "MPI_Allreduce":
            parts = [0.0, r["seconds"], 0.0]
            labels.append("MPI")
        else:
            parts = [r[k + "_seconds"] for k in ("encode", "communicate", "decode")]
            labels.append(f"{r['algorithm'][:4]}\n{SHORT[r['compressor']]}")
        b = 0.0
        for part, col, name in zip(parts, ["#E69F00", "#56B4E9", "#D55E00"], model_phases()):
            ax.bar(i, part, bottom=b, color=col, label=name if i == 1 else None)
            b += part
        bottoms.append(b)
    ax.set_xticks(range(len(labels)), labels, fontsize=6)
    ax.set(ylabel="seconds per call", title="64 MiB, 1 Gb/s, P=4 (4 ranks on 2 shared cores)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(figures, "network_breakdown.png"), dpi=110)
    plt.close(fig)

    # 3. the model against the measurements
    pred = model.predict_rows(rows, nets, codecs)
    fig, ax = plt.subplots(figsize=(5, 4.6))
    for alg, col in zip(["MPI_Allreduce", "allgather", "sra", "ring"], colors):
        idx = [i for i, r in enumerate(rows) if r["algorithm"] == alg]
        ax.scatter(
            [rows[i]["seconds"] for i in idx], [pred[i] for i in idx], s=9, color=col, label=alg
        )
    lo, hi = 1e-3, 100
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.6)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="measured (s)",
        ylabel="model (s)",
        title="alpha-beta-gamma fit, all rows",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(figures, "network_fit.png"), dpi=110)
    plt.close(fig)


def model_phases():
    return ["encode", "communicate", "decode"]


#: assumed per-message cost on a cluster: MPI over a fast fabric plus ecmpi's Python per message
ALPHA_CLUSTER = 20e-6
#: link bytes per payload byte measured by tc (Ethernet/IP/TCP framing)
FRAMING = 1.046


def _predictions(contention, figures):
    """Where compression pays: P = 8..1024 at 10/25/100/400 Gb/s, 64 MiB per rank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ecmpi.bench import model

    n = 16 * MB  # float32 entries: 64 MiB
    alone, nc = contention["1"][0], contention["n"]
    Ps = [8, 16, 32, 64, 128, 256, 512, 1024]
    specs = ["qsgd:bits=2", "qsgd:bits=4", "sign", "topk:ratio=0.01", "fp16"]
    cpu = {
        s: model.codec(s, gamma_encode=alone[s][0] / nc, gamma_decode=alone[s][1] / nc)
        for s in specs
    }
    q2 = model.codec("qsgd:bits=2")
    table = [
        "| link | P | MPI (ms) | sra qsgd 2b, free coding (ms) | speedup | "
        "break-even coding GB/s: qsgd 2b / sign / topk 1% | sra qsgd 2b with this CPU (ms) |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for rate in (10, 25, 100, 400):
        net = model.Network(alpha=ALPHA_CLUSTER, beta=8 * FRAMING / (rate * 1e9))
        sp, be = [], []
        for P in Ps:
            t_mpi = model.predict("MPI_Allreduce", n, P, net)
            t_free = model.predict("sra", n, P, net, q2)
            thr = {
                s: model.break_even_throughput("sra", n, P, net, model.codec(s))
                for s in ("qsgd:bits=2", "sign", "topk:ratio=0.01")
            }
            sp.append(t_mpi / t_free)
            be.append(thr["qsgd:bits=2"] / 1e9 if np.isfinite(thr["qsgd:bits=2"]) else np.nan)
            if P in (8, 64, 1024):
                t_cpu = model.predict("sra", n, P, net, cpu["qsgd:bits=2"])
                cells = " / ".join(f"{v / 1e9:.0f}" for v in thr.values())
                table.append(
                    f"| {rate} Gb/s | {P} | {t_mpi * 1e3:.1f} | {t_free * 1e3:.1f} | "
                    f"{t_mpi / t_free:.1f}x | {cells} | {t_cpu * 1e3:.0f} |"
                )
        axes[0].plot(Ps, sp, "o-", label=f"{rate} Gb/s")
        axes[1].plot(Ps, be, "o-", label=f"{rate} Gb/s")
    axes[0].axhline(1, color="grey", lw=0.5)
    axes[0].set(
        xscale="log",
        xlabel="P",
        ylabel="speedup over MPI_Allreduce",
        title=f"model: sra qsgd 2b, free coding, alpha={ALPHA_CLUSTER * 1e6:.0f} us",
    )
    axes[1].set(
        xscale="log",
        yscale="log",
        xlabel="P",
        ylabel="GB/s of float32 input",
        title="break-even encode+decode speed, sra qsgd 2b",
    )
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(figures, "network_prediction.png"), dpi=110)
    plt.close(fig)
    return "\n".join(table)


_E2E = r"""
import json, sys, time, numpy as np
from mpi4py import MPI
import ecmpi
from ecmpi.comm import CollectiveFeedback, CommStats
comm = MPI.COMM_WORLD
d, rows, cap = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[5])
kappa, eps = float(sys.argv[3]), float(sys.argv[4])
P, N = comm.size, comm.size * rows
# consistent under-determined least squares: f* = 0 exactly; row scales give condition kappa
g = np.random.default_rng([7, comm.rank])
i = np.arange(comm.rank * rows, (comm.rank + 1) * rows)
scale = np.sqrt(1 + (kappa - 1) * i / max(N - 1, 1)).astype(np.float32)
A = (g.standard_normal((rows, d), dtype=np.float32) / np.float32(np.sqrt(d))) * scale[:, None]
w = np.random.default_rng(11).standard_normal(d, dtype=np.float32)
b = A @ w
L = kappa * (1 + np.sqrt(N / d)) ** 2 / N * 1.05  # bound on lambda_max(A^T A)/N
def f(x):
    r = A @ x - b
    return comm.allreduce(float(r @ r), op=MPI.SUM) / (2 * N)
out = {}
methods = [("MPI", None), ("sign", "sra"), ("qsgd:bits=2", "sra"), ("topk:ratio=0.01", "allgather")]
for spec, alg in methods:
    x = np.zeros(d, np.float32)
    f0 = f(x); fb = CollectiveFeedback(); st = CommStats(); hist = []
    comm.Barrier(); t0 = time.perf_counter(); reached = None
    for t in range(cap):
        gr = A.T @ (A @ x - b) / np.float32(N) * np.float32(P)  # local gradient of the sum
        if alg is None:
            s = np.empty_like(gr); comm.Allreduce(gr, s); s /= P
        else:
            s = ecmpi.allreduce(gr, spec, comm=comm, collective=alg, average=True, seed=(3, t),
                                feedback=fb, stats=st, check=False)
        x -= np.float32(1 / L) * s
        ft = f(x); el = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        hist.append([t + 1, ft / f0, el])
        if ft <= eps * f0:
            reached = el
            break
    nbytes = st.bytes_sent / max(st.calls, 1) if alg else 2 * (P - 1) / P * 4 * d
    out[spec if alg is None else f"{alg} {spec}"] = {
        "steps": len(hist), "seconds": reached, "hist": hist, "bytes_per_step": nbytes}
if comm.rank == 0:
    print(json.dumps(out))
"""


def e2e(args: argparse.Namespace) -> None:
    """Error-feedback gradient descent on an emulated 1 Gb/s cluster: time to reach eps."""
    from ecmpi.bench.netns import EmulatedCluster

    data = _load(args.data)
    d, rows, kappa, eps, cap = 1 << 20, 16, 10.0, 1e-3, 150
    with EmulatedCluster(4, "1gbit") as cluster:
        argv = [sys.executable, "-c", _E2E, str(d), str(rows), str(kappa), str(eps), str(cap)]
        t0 = time.perf_counter()
        proc = cluster.run(argv, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-3000:])
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    data["e2e"] = {
        "d": d,
        "rows_per_rank": rows,
        "kappa": kappa,
        "eps": eps,
        "P": 4,
        "rate": "1gbit",
        "results": res,
        "wall": time.perf_counter() - t0,
        "load_before": os.getloadavg()[0],
    }
    _save(args.data, data)
    for k, v in res.items():
        print(k, v["steps"], v["seconds"], v["bytes_per_step"])


def report(args: argparse.Namespace) -> None:
    from ecmpi.bench import model

    data = _load(args.data)
    rows = [r for run in data["runs"].values() for r in run["rows"]]
    contention = data.get("contention")
    nets, codecs = _fits(rows, contention)
    _plots(rows, nets, codecs, contention, args.figures)
    print("## 1 Gb/s, P = 4\n")
    print(_md_main(rows, "1gbit", 4, {MB, 16 * MB, 64 * MB, 256 * MB}))
    for alg in ("sra", "ring", "allgather"):
        print(f"\n## speedup of {alg} over MPI_Allreduce\n")
        print(_md_compact(rows, alg))
    print("\n## fitted network\n")
    for rate, net in nets.items():
        nominal = 8 / (RATES_GBIT[rate] * 1e9)
        print(
            f"- {rate}: alpha = {net.alpha * 1e6:.0f} us, beta = {net.beta * 1e9:.2f} ns/B "
            f"({nominal / net.beta:.2f} of the nominal rate)"
        )
    print("\n## fitted per-entry costs (ns per entry)\n")
    print("| compressor | P | gamma_e | gamma_d | delta_e (ms) | delta_d (ms) |")
    print("|---|---:|---:|---:|---:|---:|")
    for (spec, P), c in sorted(codecs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(
            f"| {spec} | {P} | {c.gamma_encode * 1e9:.1f} | {c.gamma_decode * 1e9:.1f} | "
            f"{c.delta_encode * 1e3:.1f} | {c.delta_decode * 1e3:.1f} |"
        )
    pred = model.predict_rows(rows, nets, codecs)
    err = np.array([p / r["seconds"] for p, r in zip(pred, rows)])
    print(
        f"\nmodel/measured: median {np.median(err):.2f}, "
        f"middle 80% {np.quantile(err, 0.1):.2f}..{np.quantile(err, 0.9):.2f}"
    )
    if contention:
        print("\n## contention: seconds for 4M entries, per rank (min of 3)\n")
        print("| compressor | 1 rank enc/dec | 2 ranks | 4 ranks |")
        print("|---|---|---|---|")
        for spec in [*STUDY_COMPRESSORS, "copy"]:
            cells = []
            for P in ("1", "2", "4"):
                if P in contention:
                    e = max(v[spec][0] for v in contention[P])
                    d = max(v[spec][1] for v in contention[P])
                    cells.append(f"{e:.3f} / {d:.3f}")
            print(f"| {spec} | " + " | ".join(cells) + " |")
        print(f"\n## predictions (alpha = {ALPHA_CLUSTER * 1e6:.0f} us, 64 MiB per rank)\n")
        print(_predictions(contention, args.figures))
    if "e2e" in data:
        e = data["e2e"]
        print(
            f"\n## end to end: d = {e['d']}, {e['rows_per_rank']} rows per rank, P = {e['P']}, "
            f"{e['rate']}, f(x_t) <= {e['eps']} f(x_0)\n"
        )
        print("| method | steps | seconds to eps | seconds per step after the first | bytes/step |")
        print("|---|---:|---:|---:|---:|")
        for k, v in e["results"].items():
            h = v["hist"]
            per = (h[-1][2] - h[0][2]) / max(len(h) - 1, 1)
            sec = f"{v['seconds']:.1f}" if v["seconds"] is not None else "not reached"
            print(
                f"| {k} | {v['steps']} | {sec} | {per:.2f} | {v['bytes_per_step'] / 1e6:.2f} MB |"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("stage", choices=["measure", "contention", "e2e", "report"])
    ap.add_argument("--data", default="docs/figures/network_data.json")
    ap.add_argument("--figures", default="docs/figures")
    ap.add_argument("--only", default=None, help="comma-separated grid names")
    ap.add_argument("--redo", action="store_true")
    args = ap.parse_args()
    np.set_printoptions(precision=4)
    {"measure": measure, "contention": contention, "e2e": e2e, "report": report}[args.stage](args)


if __name__ == "__main__":
    main()
