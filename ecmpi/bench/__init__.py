"""``ecmpi bench SUBCOMMAND``: collective and kernel benchmarks.

Subcommands (each a module with ``add_arguments(parser)`` and ``main(args)``,
imported only when chosen):

- ``allreduce``: compressed allreduce against ``MPI_Allreduce`` (:mod:`ecmpi.bench.allreduce`);
- ``compress``: encode/decode throughput on the CPU (:mod:`ecmpi.bench.compress`);
- ``gpu``: CUDA kernel throughput (:mod:`ecmpi.bench.gpu`).
"""

from __future__ import annotations

import argparse
import importlib

__all__ = ["SUBCOMMANDS", "add_arguments", "main"]

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "allreduce": ("ecmpi.bench.allreduce", "compressed allreduce vs MPI_Allreduce"),
    "compress": ("ecmpi.bench.compress", "compressor encode/decode throughput"),
    "gpu": ("ecmpi.bench.gpu", "CUDA kernel throughput"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``SUBCOMMAND [options...]``; the options are parsed by the subcommand's module."""
    lines = "\n".join(f"  {k:<10} {v[1]}" for k, v in SUBCOMMANDS.items())
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = f"subcommands:\n{lines}\n\n`ecmpi bench SUBCOMMAND --help` lists its options."
    parser.add_argument("subcommand", choices=sorted(SUBCOMMANDS), help="which benchmark")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's options")


def main(args: argparse.Namespace) -> int:
    """Import the chosen benchmark, parse its options and run it."""
    module_name, help_ = SUBCOMMANDS[args.subcommand]
    try:
        mod = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ValueError(
                f"`ecmpi bench {args.subcommand}` is not available in this installation"
            ) from None
        raise
    parser = argparse.ArgumentParser(prog=f"ecmpi bench {args.subcommand}", description=help_)
    mod.add_arguments(parser)
    try:
        options = parser.parse_args(args.options)
    except SystemExit as exc:  # --help, or argparse's own usage error
        return exc.code if isinstance(exc.code, int) else 2
    return int(mod.main(options) or 0)
