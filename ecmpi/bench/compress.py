"""CPU compressor throughput beside ``numpy.copyto`` of the same vector.

For each compressor and size, one float32 (or float64) vector of ``n``
standard normal entries is encoded and decoded; each operation is timed as
the best of ``repeats`` runs after one warm-up call (which also compiles or
loads the numba kernels), each encode with a fresh seed.
``GB/s = n * itemsize / seconds`` is the input bytes per second; the
reference ``copy`` is ``numpy.copyto`` between two vectors of the same
size, timed the same way in the same run; ``ratio = GB/s / copy GB/s``.
``--clock thread`` times with the thread's CPU clock instead of the wall
clock, which keeps figures honest on a shared, busy machine (everything
here runs on one core).

Usage: ``ecmpi bench compress --sizes 1M,64M`` (or ``python -m ecmpi.bench.compress``).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import compressor
from ..compress import _fused

__all__ = ["DEFAULT_SPECS", "add_arguments", "bench_rows", "format_table", "main", "parse_entries"]

DEFAULT_SPECS = (
    "qsgd:levels=1,bucket=512",
    "qsgd:levels=4,bucket=512",
    "qsgd:levels=127,bucket=512",
    "terngrad:bucket=512",
    "sign:bucket=512",
    "topk:ratio=0.01",
    "randk:ratio=0.01",
    "fp16",
    "bf16",
)
_CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "thread": time.thread_time}


def parse_entries(text: str) -> int:
    """An entry count: ``"64M"`` -> 64 * 2**20 (K, M, G are powers of 1024), ``"1000"`` -> 1000."""
    text = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    digits = text[:-1] if text[-1:] in "KMG" else text
    try:
        value = int(digits) * mult
    except ValueError:
        raise ValueError(f"bad size {text!r}; use e.g. 1M, 64M or 1000") from None
    if value <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return value


def _best(fn: Callable[[], Any], repeats: int, clock: Callable[[], float]) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return max(best, 1e-9)


def bench_rows(
    sizes: Sequence[int],
    specs: Sequence[str] = DEFAULT_SPECS,
    *,
    repeats: int = 5,
    dtype: Any = np.float32,
    clock: str = "wall",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (size, compressor, operation): seconds, GB/s, copy GB/s, ratio.

    Raises:
        ValueError: unknown clock or compressor, or a size/repeat count below 1.
    """
    if clock not in _CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; use one of {', '.join(_CLOCKS)}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    comps = [compressor(s) for s in specs]
    tick = _CLOCKS[clock]
    rows: list[dict[str, Any]] = []
    for n in sizes:
        if n < 1:
            raise ValueError(f"size must be positive, got {n}")
        rows.extend(_bench_size(int(n), comps, repeats, np.dtype(dtype), tick, seed))
    return rows


def _bench_size(n, comps, repeats, dtype, tick, seed) -> list[dict[str, Any]]:
    x = np.random.default_rng(seed).standard_normal(n).astype(dtype)
    dst = np.empty_like(x)
    nbytes = x.nbytes
    t_copy = _best(lambda: np.copyto(dst, x), repeats, tick)
    copy_gbs = nbytes / t_copy / 1e9
    rows = [_row(n, "numpy.copyto", "copy", t_copy, nbytes, copy_gbs, None)]
    for c in comps:
        payload = c.encode(x, seed=seed)
        seeds = itertools.count(seed + 1)  # a fresh seed per call: no cached randk indices
        t_enc = _best(lambda c=c, it=seeds: c.encode(x, seed=next(it)), repeats, tick)
        rows.append(_row(n, c.spec, "encode", t_enc, nbytes, copy_gbs, payload.nbytes))
        t_dec = _best(lambda c=c, p=payload: c.decode(p, out=dst), repeats, tick)
        rows.append(_row(n, c.spec, "decode", t_dec, nbytes, copy_gbs, payload.nbytes))
    return rows


def _row(n, spec, op, seconds, nbytes, copy_gbs, wire) -> dict[str, Any]:
    gbs = nbytes / seconds / 1e9
    return {
        "n": int(n),
        "compressor": spec,
        "op": op,
        "seconds": seconds,
        "gbs": gbs,
        "copy_gbs": copy_gbs,
        "ratio": gbs / copy_gbs,
        "wire_bytes": wire,
    }


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`bench_rows` output."""
    head = "| n | compressor | op | ms | GB/s | copy GB/s | ratio | wire bytes |"
    lines = [head, "|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        wire = "" if r["wire_bytes"] is None else str(r["wire_bytes"])
        lines.append(
            f"| {r['n']} | {r['compressor']} | {r['op']} | {r['seconds'] * 1e3:.3f} | "
            f"{r['gbs']:.3f} | {r['copy_gbs']:.2f} | {r['ratio']:.3f} | {wire} |"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ecmpi bench compress``."""
    parser.add_argument("--sizes", default="1M,64M", help="comma-separated entry counts")
    parser.add_argument(
        "--compressors", default=";".join(DEFAULT_SPECS), help="';'-separated compressor specs"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (best is kept)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--clock", choices=sorted(_CLOCKS), default="wall")
    parser.add_argument(
        "--reference", action="store_true", help="time the NumPy reference, not the fused path"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")


def main(args: argparse.Namespace) -> int:
    """Run the benchmark and print a Markdown table (and the machine it ran on)."""
    if args.json:
        from ..outputs import check_output

        check_output(args.json, refuse_hdf5=True, option="--json")  # never a log or a device
    sizes = [parse_entries(s) for s in args.sizes.split(",") if s.strip()]
    specs = [s.strip() for s in args.compressors.split(";") if s.strip()]
    prev = _fused.set_enabled(False) if args.reference else _fused.enabled()
    try:
        rows = bench_rows(
            sizes, specs, repeats=args.repeats, dtype=np.dtype(args.dtype), clock=args.clock
        )
    finally:
        if args.reference:
            _fused.set_enabled(prev)
    path = (
        "NumPy reference"
        if args.reference
        else ("fused numba" if _fused.enabled() else "NumPy reference")
    )
    print(
        f"# {platform.processor() or platform.machine()}, {args.dtype}, {path}, "
        f"clock={args.clock}, best of {args.repeats}"
    )
    print(format_table(rows))
    if args.json:
        import json

        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m ecmpi.bench.compress")
    add_arguments(_parser)
    raise SystemExit(main(_parser.parse_args()))
