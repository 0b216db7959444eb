"""GPU kernel throughput beside a device-to-device copy of the same size.

Each row times one operation on a CuPy vector of ``n`` float32/float64
entries with CUDA events (best of ``repeats`` after a warm-up call, which
also compiles the kernels) and reports ``GB/s = n * itemsize / seconds``,
the input bytes per second. The reference row ``copy`` is ``cupy.copyto``
of the same vector, timed the same way, so ``ratio = GB/s / copy GB/s`` says
how close a kernel gets to the device's memory bandwidth (a copy reads and
writes ``n * itemsize`` bytes each).

Usage: ``ecmpi bench gpu --sizes 1M,64M`` (or ``python -m ecmpi.bench.gpu``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .compress import parse_entries

__all__ = ["DEFAULT_SPECS", "add_arguments", "bench_rows", "format_table", "main"]

DEFAULT_SPECS = (
    "qsgd:levels=1,bucket=512",
    "qsgd:levels=7,bucket=512",
    "qsgd:levels=127,bucket=512",
    "qsgd:levels=2,bucket=512",
    "terngrad:bucket=512",
    "sign:bucket=512",
    "topk:ratio=0.01",
    "randk:ratio=0.01",
)


def _time(cp: Any, fn: Callable[[], Any], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        best = min(best, cp.cuda.get_elapsed_time(start, stop) / 1e3)
    return best


def bench_rows(
    sizes: Sequence[int] = (1 << 20, 64 << 20),
    specs: Sequence[str] = DEFAULT_SPECS,
    dtype: Any = np.float32,
    repeats: int = 5,
) -> list[dict[str, Any]]:
    """Time copy, encode, fused error-feedback encode, decode and decode-add per spec and size.

    Returns:
        One dict per (size, spec, op): ``size, spec, op, seconds, gbps, ratio``.
    """
    import cupy as cp

    from ..compress import compressor
    from ..compress import gpu as G

    rows: list[dict[str, Any]] = []
    for n in sizes:
        x = cp.random.standard_normal(n, dtype=np.float64).astype(dtype)
        nbytes = n * x.itemsize
        dst = cp.empty_like(x)
        copy_s = _time(cp, lambda x=x, dst=dst: cp.copyto(dst, x), repeats)
        copy_gbps = nbytes / copy_s / 1e9
        rows.append(dict(size=n, spec="copy", op="copy", seconds=copy_s, gbps=copy_gbps, ratio=1.0))
        for spec in specs:
            c = compressor(spec)
            payload = c.encode(x, seed=1)
            h = cp.zeros_like(x)
            out = cp.empty_like(x)
            ops: dict[str, Callable[[], Any]] = {
                "encode": lambda c=c, x=x: c.encode(x, seed=1),
                "ef_encode": lambda c=c, x=x, h=h: G.ef_encode(c, x, h, seed=1),
                "decode": lambda c=c, p=payload, out=out: c.decode(p, out=out),
                "decode_add": lambda c=c, p=payload, out=out: c.decode_add(p, out),
            }
            for op, fn in ops.items():
                s = _time(cp, fn, repeats)
                gbps = nbytes / s / 1e9
                rows.append(
                    dict(size=n, spec=spec, op=op, seconds=s, gbps=gbps, ratio=gbps / copy_gbps)
                )
    return rows


def format_table(rows: Sequence[dict[str, Any]], device: str = "") -> str:
    """A Markdown table of :func:`bench_rows`."""
    lines = [f"GPU: {device}"] if device else []
    lines += [
        "| entries | compressor | op | ms | GB/s | share of copy |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']:,} | {r['spec']} | {r['op']} | {r['seconds'] * 1e3:.3f} | "
            f"{r['gbps']:.1f} | {r['ratio']:.2f} |"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ecmpi bench gpu``."""
    parser.add_argument("--sizes", default="1M,64M", help="comma-separated entry counts")
    parser.add_argument(
        "--compressors",
        default=";".join(DEFAULT_SPECS),
        help="semicolon-separated compressor specs",
    )
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--repeats", type=int, default=5)


def main(args: argparse.Namespace) -> int:
    """Print the table; returns 1 (with a message) when no GPU is usable."""
    try:
        import cupy as cp

        ok = cp.is_available()
    except ImportError:
        ok = False
    if not ok:
        print("ecmpi bench gpu: no usable CUDA device (CuPy missing or no GPU)")
        return 1
    sizes = [parse_entries(s) for s in args.sizes.split(",") if s.strip()]
    specs = [s.strip() for s in args.compressors.split(";") if s.strip()]
    rows = bench_rows(sizes, specs, np.dtype(args.dtype), args.repeats)
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print(format_table(rows, name))
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m ecmpi.bench.gpu", description=__doc__)
    add_arguments(p)
    raise SystemExit(main(p.parse_args()))
