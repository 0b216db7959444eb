"""The allreduce benchmark on an emulated cluster network, with the bytes each link carried.

:class:`ecmpi.bench.netns.EmulatedCluster` gives every rank its own namespace
and a tbf-shaped link; this module launches one MPMD job on it and measures,
for each vector size and method (``MPI_Allreduce`` of float32, then every
collective x compressor through :func:`ecmpi.allreduce`):

- ``seconds``: mean wall time per call over ``iters`` calls, the slowest rank's;
- ``speedup_paired`` (with ``pairs``): :func:`ecmpi.bench.allreduce.paired_speedup`,
  the median ratio over alternating ``MPI_Allreduce`` / method calls;
- ``encode/communicate/decode_seconds``: the :class:`ecmpi.CommStats` phases
  per call, the slowest rank's;
- ``bytes_sent``/``bytes_received``: payload bytes per rank per call from
  CommStats (the largest over ranks; for ``MPI_Allreduce`` the ring optimum
  ``2(P-1)/P * S``);
- ``link_sent``/``link_received``: bytes per call through the busiest link
  in each direction, read from the ``tc -s qdisc`` counters before and after
  the timed calls (Ethernet, IP and TCP headers and MPI's own messages
  included), and ``link_mean`` the mean over links and directions.

Rank 0 reads the counters (``tc -n NAMESPACE``) between barriers, outside the
timed region. Run it as root on one machine::

    ecmpi bench allreduce --emulate 1gbit --ranks 4 --sizes 1M,16M --out net.json
    python -m ecmpi.bench.emulate --rate 1gbit --ranks 4 --sizes 1M,16M --out net.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..comm.registry import COLLECTIVES
from .allreduce import (
    DEFAULT_COMPRESSORS,
    collectives_option,
    format_paired,
    format_table,
    paired_speedup,
    parse_collectives,
    parse_size,
    relative_error,
    timed_call,
)
from .netns import EmulatedCluster, read_counters, remove_stale

__all__ = [
    "EMULATED_COLLECTIVES",
    "STUDY_COMPRESSORS",
    "iterations_for",
    "main_allreduce",
    "run_emulated",
    "worker",
]

#: the collectives of the emulated run: all but ``ps`` (its root's link is the bottleneck)
EMULATED_COLLECTIVES = tuple(name for name in COLLECTIVES if name != "ps")
#: the compressors of the network study (1-bit qsgd is the scaled sign)
STUDY_COMPRESSORS = (
    "none",
    "fp16",
    "qsgd:bits=2",
    "qsgd:bits=4",
    "sign",
    "topk:ratio=0.01",
)


def iterations_for(nbytes: int, budget_bytes: float = 32 << 20, most: int = 5) -> int:
    """Timed calls per configuration: ``most`` for small vectors, down to 1, so that
    ``iters * nbytes`` stays near ``budget_bytes`` (large sizes are long and steady)."""
    return int(max(1, min(most, budget_bytes // max(nbytes, 1))))


def _warm(comm: Any, specs: Sequence[str], collectives: Sequence[str]) -> None:
    """One small call of every method: numba loads or compiles its kernels here, not in a timing."""
    import ecmpi

    x = np.linspace(-1, 1, 4099, dtype=np.float32)
    for spec in specs:
        c = ecmpi.compressor(spec)
        for name in collectives:
            if not COLLECTIVES[name].supports(c):
                continue
            ecmpi.allreduce(x, c, comm=comm, collective=name, seed=(9, 9), check=False)


def _measure(
    comm: Any, fn: Any, iters: int, warmup: int, links: dict[str, Any] | None
) -> tuple[float, dict[str, float]]:
    """Mean seconds per call (slowest rank) and per-call link bytes from tc."""
    from mpi4py import MPI

    for i in range(warmup):
        fn(i)
    comm.Barrier()
    before = read_counters(links["namespaces"], links["hub"]) if links and comm.rank == 0 else None
    comm.Barrier()
    t0 = time.perf_counter()
    for i in range(iters):
        fn(warmup + i)
    elapsed = (time.perf_counter() - t0) / iters
    seconds = comm.allreduce(elapsed, op=MPI.MAX)
    link: dict[str, float] = {}
    if links and comm.rank == 0:
        after = read_counters(links["namespaces"], links["hub"])
        sent = [(a.sent - b.sent) / iters for a, b in zip(after, before)]
        recv = [(a.received - b.received) / iters for a, b in zip(after, before)]
        link = {
            "link_sent": max(sent),
            "link_received": max(recv),
            "link_mean": float(np.mean(sent + recv)),
        }
    link = comm.bcast(link, root=0)
    return seconds, link


def worker(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The measurement, run on every rank of the emulated cluster (rows on rank 0, else [])."""
    from mpi4py import MPI

    import ecmpi
    from ecmpi.comm import CommStats, library_comm

    comm = library_comm(MPI.COMM_WORLD)
    P = comm.size
    links = config.get("links")
    specs = list(config["compressors"])
    collectives = list(config["collectives"])
    warmup = int(config.get("warmup", 0))
    _warm(comm, specs, collectives)
    rows: list[dict[str, Any]] = []
    for nbytes in config["sizes"]:
        n = int(nbytes) // 4
        iters = int(config.get("iters") or iterations_for(n * 4))
        x = np.random.default_rng([comm.rank, n]).standard_normal(n).astype(np.float32)
        out = np.empty_like(x)
        base = {"size": n * 4, "n": n, "P": P, "iters": iters, "rate": config.get("rate")}

        def mpi_call(i, _x=x, _out=out):
            comm.Allreduce(_x, _out, op=MPI.SUM)

        t_mpi, link = _measure(comm, mpi_call, iters, warmup, links)
        rows.append(
            {
                **base,
                "algorithm": "MPI_Allreduce",
                "compressor": "none",
                "seconds": t_mpi,
                "bytes_sent": 2 * (P - 1) / P * n * 4,
                "bytes_received": 2 * (P - 1) / P * n * 4,
                "messages": 2 * (P - 1),
                "rel_error": 0.0,
                **link,
            }
        )
        for spec in specs:
            c = ecmpi.compressor(spec)
            for name in collectives:
                if not COLLECTIVES[name].supports(c):
                    continue
                st = CommStats()
                call = timed_call(x, c, comm, name, st)

                t, link = _measure(comm, call, iters, warmup, links)
                pairs = int(config.get("pairs") or 0)
                paired = paired_speedup(comm, mpi_call, call, pairs) if pairs else {}
                y = ecmpi.allreduce(
                    x, c, comm=comm, collective=name, average=True, seed=(1, 0), check=False
                )
                calls = max(st.calls, 1)
                per = {
                    f"{k}_seconds": comm.allreduce(getattr(st, f"{k}_seconds") / calls, op=MPI.MAX)
                    for k in ("encode", "communicate", "decode")
                }
                rows.append(
                    {
                        **base,
                        "algorithm": name,
                        "compressor": spec,
                        "seconds": t,
                        "bytes_sent": comm.allreduce(st.bytes_sent / calls, op=MPI.MAX),
                        "bytes_received": comm.allreduce(st.bytes_received / calls, op=MPI.MAX),
                        "messages": comm.allreduce(st.messages / calls, op=MPI.MAX),
                        "wire_nbytes": c.wire_nbytes(n),
                        "rel_error": relative_error(y, out, P),
                        **per,
                        **link,
                        **paired,
                    }
                )
                if comm.rank == 0 and config.get("progress"):
                    print(f"  {n * 4 >> 20}M {name} {spec}: {t:.3f} s", file=sys.stderr, flush=True)
        del x, out
    for r in rows:
        r["speedup"] = _mpi_time(rows, r) / r["seconds"]
    return rows if comm.rank == 0 else []


def _mpi_time(rows: list[dict[str, Any]], r: dict[str, Any]) -> float:
    for m in rows:
        if m["algorithm"] == "MPI_Allreduce" and m["size"] == r["size"]:
            return m["seconds"]
    return float("nan")


def run_emulated(
    nranks: int,
    rate: str,
    sizes: Sequence[int],
    *,
    compressors: Sequence[str] = STUDY_COMPRESSORS,
    collectives: Sequence[str] = EMULATED_COLLECTIVES,
    iters: int | None = None,
    warmup: int = 0,
    timeout: float = 3600,
    progress: bool = False,
    algorithms: Sequence[str] | None = None,
    node_size: int = 1,
    pairs: int = 0,
) -> list[dict[str, Any]]:
    """Create an emulated cluster of ``nranks`` links at ``rate``, run :func:`worker`, tear down.

    Args:
        nranks: ranks (one namespace and link each).
        rate: link rate in tc syntax, e.g. ``"1gbit"``.
        sizes: float32 vector sizes in bytes.
        compressors: compressor specs.
        collectives: names of :data:`ecmpi.comm.COLLECTIVES`.
        iters: timed calls per configuration (None: :func:`iterations_for`).
        warmup: untimed calls before each configuration (kernels are warmed once anyway).
        timeout: seconds before the MPI job is killed.
        progress: print one line per configuration to stderr.
        algorithms: deprecated alias of ``collectives`` (DeprecationWarning; both: TypeError).
        node_size: ranks per emulated node (sharing one namespace and link; see
            :class:`ecmpi.bench.netns.EmulatedCluster`).
        pairs: alternating MPI_Allreduce / method calls per row for ``speedup_paired``.

    Returns:
        One dict per (size, method), see the module docstring; each row also
        carries ``load_before``, the 1-minute load average when the job started.

    Raises:
        NetnsUnavailable: not root, or ``ip``/``tc`` missing.
        RuntimeError: the MPI job failed (its output is in the message).
    """
    if algorithms is not None:
        if collectives is not EMULATED_COLLECTIVES:
            raise TypeError("run_emulated() got both 'collectives' and its deprecated 'algorithms'")
        warnings.warn(
            "run_emulated(algorithms=...) is deprecated; use the keyword 'collectives'",
            DeprecationWarning,
            stacklevel=2,
        )
        collectives = algorithms
    bad = [a for a in collectives if a not in COLLECTIVES]
    if bad:
        raise ValueError(f"unknown collective(s) {bad}; choose from {', '.join(COLLECTIVES)}")
    if not sizes:
        raise ValueError("no sizes given")
    remove_stale()  # namespaces of an earlier run killed with SIGKILL
    with (
        tempfile.TemporaryDirectory(prefix="ecmpi-emulate-") as tmp,
        EmulatedCluster(nranks, rate, node_size=node_size) as cluster,
    ):
        config = {
            "sizes": [int(s) for s in sizes],
            "compressors": list(compressors),
            "collectives": list(collectives),
            "iters": iters,
            "warmup": warmup,
            "rate": rate,
            "links": cluster.describe(),
            "progress": progress,
            "pairs": pairs,
        }
        cfg, out = os.path.join(tmp, "config.json"), os.path.join(tmp, "rows.json")
        with open(cfg, "w") as fh:
            json.dump(config, fh)
        load = os.getloadavg()[0]
        argv = [sys.executable, "-m", "ecmpi.bench.emulate", "--worker", cfg, "--out", out]
        proc = cluster.run(argv, timeout=timeout, capture=not progress)
        if proc.returncode != 0:
            raise RuntimeError(
                f"emulated MPI job failed (exit {proc.returncode}):\n"
                f"{(proc.stdout or '')[-3000:]}\n{(proc.stderr or '')[-3000:]}"
            )
        with open(out) as fh:
            rows = json.load(fh)
    for r in rows:
        r["load_before"] = load
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the emulated benchmark (also reachable as ``ecmpi bench allreduce --emulate``)."""
    parser.add_argument("--rate", default="1gbit", help="link rate in tc syntax (1gbit, 10gbit)")
    parser.add_argument("--ranks", type=int, default=4, help="ranks, one namespace each")
    parser.add_argument("--sizes", default="1M,16M", help="float32 vector sizes (K/M/G)")
    collectives_option(parser, EMULATED_COLLECTIVES)
    parser.add_argument(
        "--compressor", action="append", default=None, help="compressor spec; repeat for several"
    )
    parser.add_argument("--iters", type=int, default=None, help="timed calls (default: by size)")
    parser.add_argument(
        "--node-size", type=int, default=1, help="ranks per emulated node (one link per node)"
    )
    parser.add_argument(
        "--pairs", type=int, default=0, help="alternating MPI_Allreduce / method calls per row"
    )
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    """Run the emulated benchmark and print its table (or, with ``--worker``, be one rank)."""
    if args.worker:
        with open(args.worker) as fh:
            rows = worker(json.load(fh))
        from mpi4py import MPI

        if MPI.COMM_WORLD.rank == 0:
            with open(args.out, "w") as fh:
                json.dump(rows, fh)
        return 0
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    collectives = parse_collectives(args, EMULATED_COLLECTIVES)
    specs = list(args.compressor or DEFAULT_COMPRESSORS)
    if args.iters is not None and args.iters < 1:
        raise ValueError("--iters must be >= 1")
    if getattr(args, "pairs", 0) < 0:
        raise ValueError("--pairs must be >= 0")
    node_size = getattr(args, "node_size", 1) or 1
    rows = run_emulated(
        args.ranks,
        args.rate,
        sizes,
        compressors=specs,
        collectives=collectives,
        iters=args.iters,
        node_size=node_size,
        pairs=getattr(args, "pairs", 0),
    )
    for r in rows:
        r["node_size"] = node_size
    print(f"ecmpi bench allreduce --emulate {args.rate}: P={args.ranks}, {node_size} per node")
    print(format_table([{**r, "ratio": 1 / r["speedup"], **_bw(r)} for r in rows]))
    if any("speedup_paired" in r for r in rows):
        print("paired speedup over MPI_Allreduce (median of alternating calls):")
        print(format_paired(rows))
    print("link bytes per call (busiest link, each way):")
    for r in rows:
        print(
            f"  {r['size'] >> 20}M {r['algorithm']} {r['compressor']}: "
            f"{r['link_sent'] / 1e6:.3f} MB sent, {r['link_received'] / 1e6:.3f} MB received"
        )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"benchmark": "allreduce-emulated", "rate": args.rate, "rows": rows}, fh)
    return 0


def main_allreduce(args: argparse.Namespace) -> int:
    """``ecmpi bench allreduce --emulate RATE [--ranks P]``: its options, on an emulated cluster.

    ``ps``, ``--warmup``, ``--feedback`` and ``--check`` are not part of the emulated run."""
    names = [a for a in parse_collectives(args, EMULATED_COLLECTIVES) if a in EMULATED_COLLECTIVES]
    ns = argparse.Namespace(
        rate=args.emulate,
        ranks=args.ranks,
        sizes=args.sizes,
        collectives=",".join(names),
        compressor=args.compressor,
        iters=args.iters,
        out=args.out,
        worker=None,
        node_size=getattr(args, "node_size", 1),
        pairs=getattr(args, "pairs", 0),
    )
    return main(ns)


def _bw(r: dict[str, Any]) -> dict[str, float]:
    algbw = r["size"] / r["seconds"]
    return {"algbw_GBps": algbw / 1e9, "busbw_GBps": algbw * 2 * (r["P"] - 1) / r["P"] / 1e9}


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m ecmpi.bench.emulate", description=__doc__)
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
