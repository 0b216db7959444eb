"""The ``ecmpi`` command: ``run | analyze | bench | reproduce | info``.

Argument parsing and dispatch only. ``mpiexec -n P ecmpi run ALGORITHM
[options]`` (or ``python -m ecmpi run``) resolves its options with
:mod:`ecmpi.options` (defaults, then a TOML file given with ``--config``, then
the command line; each algorithm's ``hyperparameters`` become ``--name``
options) and runs the session of :mod:`ecmpi.session`, which
:func:`ecmpi.run` runs from Python: the problem, the step loop, rank 0's HDF5
log and summary table.

Errors: invalid options are reported once (by rank 0) before any work starts,
and every rank exits with status 2. An exception during the run ends the whole
job: the failing rank prints the message and calls ``MPI_Abort``, so no rank
waits forever; a failing rank other than 0 first hands the message to rank 0
through :mod:`ecmpi.error_channel`, which marks the log ``failed``. Exit status:
0 completed (also a diverged run or a reached target or bit budget), 1 failed,
2 bad options, 75 interrupted by SIGTERM/SIGUSR1/SIGINT (checkpointed; continue with
``--resume``; one that comes before the first step ends the setup at once, with nothing
to resume).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

from .errors import UsageError
from .options import (
    RUN_OPTIONS,
    OptionParser,
    add_run_arguments,
    peek_algorithm,
    prescan,
    resolve_run_options,
)

__all__ = ["EXIT_INTERRUPTED", "RUN_OPTIONS", "UsageError", "main", "resolve_run_options"]

EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: try again (resume)
_LAZY_COMMANDS = {
    "analyze": ("ecmpi.analyze", "tables and plots from HDF5 logs"),
    "bench": ("ecmpi.bench", "collective and kernel benchmarks"),
    "reproduce": ("ecmpi.reproduce", "run a paper's experiment end to end"),
}


# ---------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------
def cmd_run(argv: Sequence[str]) -> int:
    """``ecmpi run``: see the module docstring."""
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    if any(a in ("-h", "--help") for a in argv):
        try:
            alg_cls = peek_algorithm(argv)
        except UsageError:
            alg_cls = None
        p = OptionParser(prog="ecmpi run", description="Run an algorithm (collective: all ranks).")
        add_run_arguments(p, alg_cls)
        if world.rank == 0:
            p.print_help()
        return 0

    from .algorithms.loop import SignalLatch
    from .errors import SetupInterrupted
    from .session import run_session

    # SIGTERM/SIGUSR1/SIGINT from here to exit: one that comes during setup ends it at once
    # (SetupInterrupted, exit 75), one during the loop is acted on at the next step
    # (checkpoint, exit 75), one after the loop is ignored (the log says how the run ended)
    latch = SignalLatch(setup=True)
    known = prescan(argv)
    try:
        result = run_session(
            world,
            lambda resumed: resolve_run_options(argv, resumed_config=resumed),
            resume=known.resume,
            config=known.config,
            latch=latch,
        )
    except SetupInterrupted as exc:
        if known.resume:
            raise SetupInterrupted(
                exc.signum,
                f"{str(exc).split(';')[0]}; {known.resume} is left unchanged, resume it again",
            ) from None
        raise
    if result.status == "interrupted":
        return EXIT_INTERRUPTED
    return 0 if result.status in ("completed", "diverged") else 1


# ---------------------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------------------
def info() -> dict[str, Any]:
    """Versions, the MPI library, GPU availability and the GPU-aware-MPI status."""
    import h5py
    import numpy as np

    from . import __version__, available
    from .algorithms import ALGORITHMS
    from .session import mpi_library

    out: dict[str, Any] = {
        "ecmpi": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "h5py": h5py.version.version,
        "hdf5": h5py.version.hdf5_version,
    }
    try:
        import mpi4py
        from mpi4py import MPI

        out["mpi4py"] = mpi4py.__version__
        out["mpi_library"] = mpi_library()
        out["mpi_standard"] = "{}.{}".format(*MPI.Get_version())
        out["ranks"] = MPI.COMM_WORLD.size
    except ImportError as exc:
        out["mpi4py"] = f"not available ({exc})"
    try:
        import cupy

        try:
            out["gpu"] = (
                f"{cupy.cuda.runtime.getDeviceCount()} CUDA device(s), CuPy {cupy.__version__}"
            )
        except Exception as exc:
            out["gpu"] = f"none (CuPy {cupy.__version__}: {str(exc).splitlines()[0]})"
    except ImportError:
        out["gpu"] = "none (CuPy not installed)"
    try:
        from ._backend import gpu_mpi_status

        st = gpu_mpi_status()
        out["gpu_aware_mpi"] = (
            f"{'yes' if st['gpu_aware'] else 'no'} ({st['source']}); {st['path']}"
        )
    except (ImportError, ValueError) as exc:
        out["gpu_aware_mpi"] = f"unknown ({exc})"
    out["compressors"] = ", ".join(available())
    out["algorithms"] = ", ".join(ALGORITHMS)
    return out


def cmd_info(argv: Sequence[str]) -> int:
    p = OptionParser(prog="ecmpi info", description="Versions, MPI library, GPU and GPU-aware MPI.")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(list(argv))
    data = info()
    if _rank() == 0:
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            w = max(len(k) for k in data)
            for k, v in data.items():
                print(f"{k.ljust(w)}  {v}")
    return 0


# ---------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------
def _lazy_command(name: str, argv: Sequence[str]) -> int:
    module_name, help_ = _LAZY_COMMANDS[name]
    try:
        mod = importlib.import_module(module_name)
    except ImportError as exc:
        if (exc.name and module_name.startswith(exc.name)) or exc.name == module_name:
            raise UsageError(f"`ecmpi {name}` is not available in this installation") from None
        raise
    if not (hasattr(mod, "add_arguments") and hasattr(mod, "main")):
        raise UsageError(f"`ecmpi {name}` is not available in this installation")
    p = OptionParser(prog=f"ecmpi {name}", description=help_)
    mod.add_arguments(p)
    args = p.parse_args(list(argv))
    return int(mod.main(args) or 0)


def _rank() -> int:
    if "mpi4py.MPI" in sys.modules:
        return sys.modules["mpi4py.MPI"].COMM_WORLD.rank
    return int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))


def _usage() -> str:
    return (
        "usage: ecmpi {run,analyze,bench,reproduce,info} ...\n\n"
        "  run ALGORITHM [options]   run an algorithm (mpiexec -n P ecmpi run ...)\n"
        "  analyze LOG.h5 ...        tables and plots from logs\n"
        "  bench ...                 collective and kernel benchmarks\n"
        "  reproduce NAME            a paper's experiment end to end\n"
        "  info                      versions, MPI library, GPU and GPU-aware MPI\n\n"
        "`ecmpi COMMAND --help` lists a command's options; "
        "`ecmpi run ALGORITHM --help` includes the algorithm's hyperparameters."
    )


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        if _rank() == 0:
            print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from . import __version__

        if _rank() == 0:
            print(f"ecmpi {__version__}")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "run":
        return cmd_run(rest)
    if cmd == "info":
        return cmd_info(rest)
    if cmd in _LAZY_COMMANDS:
        return _lazy_command(cmd, rest)
    raise UsageError(f"unknown command {cmd!r}; choose run, analyze, bench, reproduce or info")


def _abort_job(code: int) -> None:
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        if mpi.COMM_WORLD.size > 1:
            # MPI_Abort kills every process at once; the launcher may not yet have
            # forwarded what this rank just wrote to stderr, so give it a moment
            time.sleep(0.5)
            mpi.COMM_WORLD.Abort(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ecmpi`` console script and ``python -m ecmpi``; returns the status."""
    from .algorithms.loop import RunError
    from .error_channel import close_channel, report_failure
    from .errors import SetupInterrupted

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except UsageError as exc:  # identical on every rank: rank 0 says it once
        if _rank() == 0:
            print(f"ecmpi: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except RunError as exc:  # raised identically on every rank by the loop
        if _rank() == 0:
            print(f"ecmpi: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except SystemExit as exc:  # --help of a subcommand, or a module's own sys.exit(code)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except SetupInterrupted as exc:  # a signal before the first step: nothing to save
        if _rank() == 0:  # the launcher gives the signal to every rank: say it once
            print(f"ecmpi: {exc}", file=sys.stderr, flush=True)
        _abort_job(EXIT_INTERRUPTED)  # no rank is left waiting for this one
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"ecmpi: interrupted (rank {_rank()})", file=sys.stderr, flush=True)
        _abort_job(130)
        return 130
    except BaseException as exc:
        rank = _rank()
        if rank != 0:
            time.sleep(1.0)  # an error shared by all ranks: let rank 0 report it and abort
        if isinstance(exc, MemoryError) and not os.environ.get("ECMPI_TRACEBACK"):
            text = (
                f"ecmpi: error on rank {rank}: out of memory ({exc or 'MemoryError'}); "
                "choose smaller sizes\n"
            )
        elif isinstance(
            exc, (ValueError, TypeError, OSError, ArithmeticError)
        ) and not os.environ.get("ECMPI_TRACEBACK"):
            text = f"ecmpi: error on rank {rank}: {type(exc).__name__}: {exc}\n"
        else:
            text = f"ecmpi: error on rank {rank}:\n{traceback.format_exc()}"
        # one write, so that the launcher forwards the message whole before the abort
        sys.stderr.write(text)
        sys.stderr.flush()
        if rank != 0:  # rank 0 marks its log failed before the abort
            report_failure(f"{type(exc).__name__}: {exc}")
        _abort_job(1)
        return 1
    finally:
        close_channel()  # a normal end, or an error raised on every rank alike
