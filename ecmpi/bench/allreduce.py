"""``ecmpi bench allreduce``: compressed allreduce beside ``MPI_Allreduce``, in one run.

For each vector size (bytes of float32 data) the benchmark times
``comm.Allreduce`` of the same vector, then every collective x compressor
through :func:`ecmpi.allreduce` (each time the mean over ``--iters`` calls
after ``--warmup`` calls, the slowest rank's). Both write into a buffer reused
across calls (``out=``), as a training loop would. It reports, as nccl-tests
define them for allreduce (S = bytes of the float32 vector, t = seconds)::

    algbw = S / t
    busbw = algbw * 2(P-1)/P

``ratio`` is t divided by the ``MPI_Allreduce`` time of the same size (below
1: faster than MPI), and ``sent`` the payload bytes per rank per call (the
largest over ranks), beside MPI's ring-optimal ``2(P-1)/P * S``. The
collectives are those of :data:`ecmpi.comm.COLLECTIVES` (all by default). Each
JSON row names its method under the key ``algorithm`` (``MPI_Allreduce`` or
the collective), as results written before keep it.

Example::

    mpiexec -n 4 ecmpi bench allreduce --sizes 1M,16M --compressor qsgd:levels=1 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..comm.registry import COLLECTIVES

__all__ = [
    "DEFAULT_COLLECTIVES",
    "DEFAULT_COMPRESSORS",
    "add_arguments",
    "bench",
    "collectives_option",
    "main",
    "parse_collectives",
    "parse_size",
    "relative_error",
]

DEFAULT_COMPRESSORS = (
    "none",
    "bf16",
    "qsgd:levels=1,bucket=512",
    "sign:bucket=512",
    "topk:ratio=0.01",
)
#: every registered collective, in registry order
DEFAULT_COLLECTIVES = tuple(COLLECTIVES)
_DEPRECATED = {"ALGORITHMS": "DEFAULT_COLLECTIVES"}
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """``"4K"`` -> 4096 bytes (K, M, G are powers of 1024; a plain number is bytes)."""
    t = text.strip().upper().removesuffix("B")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    num = t[: len(t) - len(unit)]
    try:
        value = int(float(num) * _UNITS[unit])
    except ValueError:
        raise ValueError(f"bad size {text!r}; use e.g. 4K, 1M, 256M") from None
    if value < 4:
        raise ValueError(f"size {text!r} is below one float32 entry")
    return value


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        new = _DEPRECATED[name]
        warnings.warn(
            f"ecmpi.bench.allreduce.{name} is deprecated; use {new}",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def collectives_option(parser: argparse.ArgumentParser, default: Sequence[str]) -> None:
    """Add ``--collectives`` (comma-separated names) and its deprecated alias ``--algorithms``."""
    parser.add_argument(
        "--collectives",
        default=None,
        help=f"comma-separated, of {', '.join(COLLECTIVES)} (default: {','.join(default)})",
    )
    parser.add_argument("--algorithms", default=None, help=argparse.SUPPRESS)


def parse_collectives(args: argparse.Namespace, default: Sequence[str]) -> list[str]:
    """The names of ``--collectives`` (or of the deprecated ``--algorithms``), checked.

    Raises:
        ValueError: both options, an unknown name (the message lists the registry), or none.
    """
    text = args.collectives
    if getattr(args, "algorithms", None) is not None:
        if text is not None:
            raise ValueError("give --collectives only (--algorithms is its deprecated alias)")
        warnings.warn("--algorithms is deprecated; use --collectives", FutureWarning, stacklevel=2)
        text = args.algorithms
    if text is None:
        text = ",".join(default)
    names = [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in names if a not in COLLECTIVES]
    if bad or not names:
        raise ValueError(f"unknown collective(s) {bad}; choose from {', '.join(COLLECTIVES)}")
    return names


def _fmt_size(nbytes: float) -> str:
    for unit in ("G", "M", "K"):
        if nbytes >= _UNITS[unit]:
            v = nbytes / _UNITS[unit]
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.3g}{unit}"
    return f"{nbytes:.0f}"


def _time(comm: Any, fn: Any, iters: int, warmup: int) -> float:
    """Mean seconds per call of ``fn(i)``, the slowest rank's."""
    from mpi4py import MPI

    for i in range(warmup):
        fn(i)
    comm.Barrier()
    t0 = time.perf_counter()
    for i in range(iters):
        fn(warmup + i)
    elapsed = (time.perf_counter() - t0) / iters
    return comm.allreduce(elapsed, op=MPI.MAX)


def timed_call(
    x: Any, c: Any, comm: Any, name: str, stats: Any, *, feedback: Any = None, check: bool = False
) -> Any:
    """``call(i)``: one :func:`ecmpi.allreduce` of ``x`` by collective ``name`` with seed
    ``(0, i)``, into a buffer reused across calls (as the ``MPI_Allreduce`` baseline)."""
    import ecmpi

    y = np.empty_like(x)

    def call(i: int) -> None:
        ecmpi.allreduce(
            x, c, comm=comm, collective=name, seed=(0, i), stats=stats, feedback=feedback,
            check=check, out=y,
        )  # fmt: skip

    return call


def paired_speedup(comm: Any, base: Any, fn: Any, pairs: int, start: int = 0) -> dict[str, float]:
    """``base``'s time over ``fn``'s, from ``pairs`` pairs of calls, each call timed alone
    between barriers (the slowest rank's): a drift of a shared machine slows both calls of
    a pair alike, which back-to-back means of each cannot tell apart. The order alternates
    (``base, fn``, then ``fn, base``): the first call after a pause starts with a full token
    bucket on a shaped link and with idle cores, an advantage neither keeps.

    Returns:
        ``speedup_paired`` (the median of the per-pair ratios), ``speedup_paired_min`` and
        ``speedup_paired_max``, and ``pairs``.
    """
    from mpi4py import MPI

    ratios = []
    for i in range(pairs):
        t = {}
        for k in (0, 1) if i % 2 == 0 else (1, 0):  # ABBA: neither goes first every time
            comm.Barrier()
            t0 = time.perf_counter()
            (base, fn)[k](start + i)
            t[k] = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        ratios.append(t[0] / t[1])
    return {
        "speedup_paired": float(np.median(ratios)),
        "speedup_paired_min": float(min(ratios)),
        "speedup_paired_max": float(max(ratios)),
        "pairs": pairs,
    }


def format_paired(rows: list[dict[str, Any]]) -> str:
    """Lines of the paired speedups (rows that have them)."""
    return "\n".join(
        f"  {_fmt_size(r['size'])} {r['algorithm']} {r['compressor']}: "
        f"{r['speedup_paired']:.3f} (min {r['speedup_paired_min']:.3f}, "
        f"max {r['speedup_paired_max']:.3f}, {r['pairs']} pairs)"
        for r in rows
        if "speedup_paired" in r
    )


def bench(
    comm: Any,
    sizes: list[int],
    collectives: list[str],
    specs: list[str],
    *,
    iters: int = 5,
    warmup: int = 1,
    feedback: bool = False,
    check: bool = False,
    pairs: int = 0,
) -> list[dict[str, Any]]:
    """One row per (size, method); the same rows on every rank (with ``pairs``, each
    compressed row also has :func:`paired_speedup`'s keys)."""
    from mpi4py import MPI

    import ecmpi
    from ecmpi.comm import CollectiveFeedback, CommStats, library_comm

    comm = library_comm(comm)
    P = comm.size
    bus = 2 * (P - 1) / P
    rows = []
    for nbytes in sizes:
        n = nbytes // 4
        x = np.random.default_rng([comm.rank, n]).standard_normal(n).astype(np.float32)
        out = np.empty_like(x)

        def mpi_call(i, _x=x, _out=out):
            comm.Allreduce(_x, _out, op=MPI.SUM)

        t_mpi = _time(comm, mpi_call, iters, warmup)
        base = {"size": n * 4, "n": n, "P": P}

        def row(method, spec, t, sent, st=None, _base=base, _t_mpi=t_mpi):
            algbw = _base["size"] / t
            r = {
                **_base,
                "algorithm": method,
                "compressor": spec,
                "seconds": t,
                "ratio": t / _t_mpi,
                "algbw_GBps": algbw / 1e9,
                "busbw_GBps": algbw * bus / 1e9,
                "bytes_sent": sent,
            }
            if st is not None:
                calls = max(st.calls, 1)
                r.update(
                    {
                        f"{k}_seconds": getattr(st, f"{k}_seconds") / calls
                        for k in ("encode", "communicate", "decode")
                    }
                )
            return r

        rows.append(row("MPI_Allreduce", "none", t_mpi, round(bus * n * 4)))
        for spec in specs:
            c = ecmpi.compressor(spec)
            for name in collectives:
                if not COLLECTIVES[name].supports(c):
                    continue
                st = CommStats()
                fb = CollectiveFeedback() if feedback else None
                call = timed_call(x, c, comm, name, st, feedback=fb, check=check)

                t = _time(comm, call, iters, warmup)
                sent = comm.allreduce(st.last.bytes_sent, op=MPI.MAX)
                paired = paired_speedup(comm, mpi_call, call, pairs) if pairs else {}
                y = ecmpi.allreduce(
                    x, c, comm=comm, collective=name, average=True, seed=(1, 0), check=False
                )
                rows.append(
                    {
                        **row(name, spec, t, sent, st),
                        "rel_error": relative_error(y, out, P),
                        **paired,
                    }
                )
    return rows


def relative_error(y: Any, total: np.ndarray, P: int) -> float:
    """``||y - total/P|| / ||total/P||``: a mean's error against ``MPI_Allreduce``'s sum."""
    ref = total.astype(np.float64) / P
    return float(np.linalg.norm(y.astype(np.float64) - ref) / max(np.linalg.norm(ref), 1e-300))


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of the rows."""
    lines = [
        "| size | collective | compressor | time (ms) | ratio vs MPI | speedup | rel. error "
        "| algbw GB/s | busbw GB/s | sent/rank |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        err = r.get("rel_error")
        lines.append(
            f"| {_fmt_size(r['size'])} | {r['algorithm']} | {r['compressor']} | "
            f"{r['seconds'] * 1e3:.3f} | {r['ratio']:.2f} | {1 / r['ratio']:.2f} | "
            f"{'' if err is None else f'{err:.2e}'} | {r['algbw_GBps']:.3f} | "
            f"{r['busbw_GBps']:.3f} | {_fmt_size(r['bytes_sent']) if r['bytes_sent'] else 0} |"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ecmpi bench allreduce``."""
    parser.add_argument(
        "--sizes",
        default="4K,64K,1M",
        help="float32 vector sizes in bytes, comma-separated (K/M/G = 1024^k); "
        "the full sweep is 4K,64K,1M,16M,256M",
    )
    collectives_option(parser, DEFAULT_COLLECTIVES)
    parser.add_argument(
        "--compressor",
        action="append",
        default=None,
        help="a compressor spec; repeat the option for several "
        f"(default: {' '.join(DEFAULT_COMPRESSORS)})",
    )
    parser.add_argument("--iters", type=int, default=5, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    parser.add_argument("--feedback", action="store_true", help="with error feedback")
    parser.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="also time N alternating MPI_Allreduce / method calls and report the median "
        "ratio (robust to a drifting machine; decides small differences such as `none`)",
    )
    parser.add_argument(
        "--check", action="store_true", help="include the cross-rank argument check in every call"
    )
    parser.add_argument("--out", default=None, help="write the rows as JSON to this file")
    parser.add_argument(
        "--emulate",
        default=None,
        metavar="RATE",
        help="run as root without mpiexec on an emulated cluster, one namespace and link "
        "of RATE (e.g. 1gbit) per rank, with tc byte counters (ecmpi.bench.emulate)",
    )
    parser.add_argument("--ranks", type=int, default=4, help="ranks for --emulate")
    parser.add_argument(
        "--node-size",
        type=int,
        default=1,
        help="ranks per emulated node for --emulate: they share one namespace and link, "
        "their traffic unshaped (ECMPI_NODE_SIZE is set for the hier collective)",
    )


def main(args: argparse.Namespace) -> int:
    """Run under ``mpiexec``; rank 0 prints the table and writes ``--out``."""
    if args.out:
        from ..outputs import check_output

        check_output(args.out, refuse_hdf5=True)  # never a log or a device
    if getattr(args, "emulate", None):
        from .emulate import main_allreduce

        return main_allreduce(args)
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    collectives = parse_collectives(args, DEFAULT_COLLECTIVES)
    if args.iters < 1 or args.warmup < 0 or args.pairs < 0:
        raise ValueError("--iters must be >= 1, --warmup and --pairs >= 0")
    specs = list(args.compressor or DEFAULT_COMPRESSORS)
    rows = bench(
        comm,
        sizes,
        collectives,
        specs,
        iters=args.iters,
        warmup=args.warmup,
        feedback=args.feedback,
        check=args.check,
        pairs=args.pairs,
    )
    if comm.rank == 0:
        print(f"ecmpi bench allreduce: P={comm.size}, {MPI.Get_library_version().splitlines()[0]}")
        print(format_table(rows))
        if args.pairs:
            print("paired speedup over MPI_Allreduce (median of alternating calls):")
            print(format_paired(rows))
        if args.out:
            doc = {
                "benchmark": "allreduce",
                "P": comm.size,
                "host": platform.node(),
                "mpi_library": MPI.Get_library_version().splitlines()[0].strip(),
                "iters": args.iters,
                "warmup": args.warmup,
                "feedback": args.feedback,
                "rows": rows,
            }
            with open(args.out, "w") as fh:
                json.dump(doc, fh, indent=1)
    return 0
