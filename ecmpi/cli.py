"""The ``ecmpi`` command: ``run | analyze | bench | reproduce | info``.

``mpiexec -n P ecmpi run ALGORITHM [options]`` (or ``python -m ecmpi run``)
builds the problem, the compressor and the algorithm on every rank and runs
the step loop (:mod:`ecmpi.algorithms.loop`); rank 0 writes the HDF5 log and
prints a summary table. Options come from defaults, then a TOML file
(``--config``, same keys, ``-`` or ``_`` alike), then the command line. Each
algorithm's ``hyperparameters`` become ``--name`` options of ``run``.

Errors: invalid options are reported once (by rank 0) before any work starts,
and every rank exits with status 2. An exception during the run ends the whole
job: the failing rank prints the message and calls ``MPI_Abort``, so no rank
waits forever; a failing rank other than 0 first hands the message to rank 0
through :mod:`ecmpi.errors`, which marks the log ``failed``. Exit status:
0 completed (also a diverged run or a reached target or bit budget), 1 failed,
2 bad options, 75 interrupted by SIGTERM/SIGUSR1 (checkpointed; continue with
``--resume``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import tomllib

__all__ = ["EXIT_INTERRUPTED", "UsageError", "main", "resolve_run_options"]

EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: try again (resume)
_LAZY_COMMANDS = {
    "analyze": ("ecmpi.analyze", "tables and plots from HDF5 logs"),
    "bench": ("ecmpi.bench", "collective and kernel benchmarks"),
    "reproduce": ("ecmpi.reproduce", "run a paper's experiment end to end"),
}


class UsageError(ValueError):
    """Invalid command-line or config-file options (the same on every rank)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# ---------------------------------------------------------------------------------------
# run options
# ---------------------------------------------------------------------------------------
def _nonneg_int(v: Any) -> int:
    i = _int(v)
    if i < 0:
        raise ValueError(f"must be a non-negative integer, got {v!r}")
    return i


def _pos_int(v: Any) -> int:
    i = _int(v)
    if i < 1:
        raise ValueError(f"must be a positive integer, got {v!r}")
    return i


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(f"must be an integer, got {v!r}")
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, int):
        return v
    try:
        return int(str(v).replace("_", ""))
    except ValueError:
        f = float(v)  # accepts 1e6
        if not f.is_integer():
            raise ValueError(f"must be an integer, got {v!r}") from None
        return int(f)


def _float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"must be a number, got {v!r}")
    f = float(v)
    if math.isnan(f):
        raise ValueError("must be a number, got NaN")
    return f


def _pos_float(v: Any) -> float:
    f = _float(v)
    if not (f > 0 and math.isfinite(f)):
        raise ValueError(f"must be a positive number, got {v!r}")
    return f


def _nonneg_float(v: Any) -> float:
    f = _float(v)
    if not (f >= 0 and math.isfinite(f)):
        raise ValueError(f"must be a non-negative number, got {v!r}")
    return f


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {v!r}")


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"must be a non-empty string, got {v!r}")
    return v.strip()


def _x0(v: Any) -> str:
    s = _str(v)
    if s in ("zeros", "ones") or s.startswith("star+") or s.startswith("const:"):
        if s.startswith(("star+", "const:")):
            _float(s.split("+", 1)[1] if s.startswith("star+") else s.split(":", 1)[1])
        return s
    raise ValueError(f"must be zeros, ones, star+C (x* + C) or const:C, got {v!r}")


def _choice(*choices: str) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        s = _str(v)
        if s not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {v!r}")
        return s

    conv.choices = choices  # type: ignore[attr-defined]
    return conv


#: run option -> (converter, default, help); None default = unset
RUN_OPTIONS: dict[str, tuple[Callable[[Any], Any], Any, str]] = {
    "problem": (_choice("lsq", "logreg", "quadratic"), "lsq", "objective: lsq, logreg, quadratic"),
    "dataset": (_str, None, "dataset spec, e.g. synthetic:n=4000,d=100 or sklearn:breast_cancer"),
    "scale": (_choice("none", "standard", "minmax", "unit"), "none", "feature scaling"),
    "bias": (_bool, False, "append a constant feature"),
    "dtype": (_choice("float64", "float32"), "float64", "floating-point type of data and iterate"),
    "l2": (_nonneg_float, None, "l2 regularization lambda"),
    "l2_rel": (_nonneg_float, None, "l2 relative to the data's smoothness: lambda = R * L"),
    "kappa": (_pos_float, None, "condition number of the quadratic problem"),
    "dim": (_pos_int, None, "dimension of the quadratic problem"),
    "compressor": (_str, "none", "compressor spec, e.g. qsgd:levels=4,bucket=512 or topk:k=2"),
    "collective": (_choice("allgather", "sra", "ring", "ps"), "allgather", "collective algorithm"),
    "steps": (_nonneg_int, 100, "step budget"),
    "target": (_nonneg_float, None, "stop once f - f* <= TARGET (checked at logged rows)"),
    "max_bits": (_pos_float, None, "stop once the per-worker uplink bits reach this budget"),
    "lr": (_pos_float, None, "step size (default: the algorithm's, usually 1/L)"),
    "batch_size": (_nonneg_int, 1, "minibatch rows per worker (0: full local gradient)"),
    "seed": (_nonneg_int, 0, "seed of every random draw"),
    "x0": (_x0, "zeros", "start: zeros, ones, star+C (x* + C) or const:C"),
    "out": (_str, None, "HDF5 log file (default: no log)"),
    "overwrite": (_bool, False, "replace an existing --out file"),
    "log_every": (_pos_int, 1, "steps between logged rows"),
    "checkpoint_every": (
        _nonneg_int,
        0,
        "steps between checkpoints in the log (0: on signal only)",
    ),
    "progress_every": (_pos_int, None, "steps between progress lines when not on a terminal"),
    "on_nonfinite": (
        _choice("error", "skip"),
        "error",
        "NaN/Inf iterate: stop (error) or undo the step",
    ),
    "diverge_factor": (_pos_float, 1e6, "diverged when f - f* > FACTOR * (f(x0) - f*)"),
    "quiet": (_bool, False, "no progress display and no summary table"),
}
#: options that may change when resuming (the rest must match the log's config)
RESUME_MAY_CHANGE = ("steps", "target", "max_bits", "checkpoint_every", "progress_every", "quiet")
_FLAGS = ("overwrite", "bias", "quiet")


def _hyper_converter(h: Any) -> Callable[[Any], Any]:
    base = {bool: _bool, int: _int, float: _float, str: _str}.get(h.type, h.type)

    def conv(v: Any) -> Any:
        if v is None and h.default is None:
            return None
        out = base(v)
        if h.choices is not None and out not in h.choices:
            raise ValueError(f"must be one of {', '.join(map(str, h.choices))}, got {v!r}")
        return out

    return conv


def _norm_key(k: str) -> str:
    return k.strip().lstrip("-").replace("-", "_")


def _add_run_options(p: argparse.ArgumentParser, alg_cls: Any) -> None:
    p.add_argument("algorithm", nargs="?", help="algorithm name (see `ecmpi info`)")
    p.add_argument("--config", help="TOML file with the same keys as the options")
    p.add_argument("--resume", help="continue the run logged in this file from its checkpoint")
    g = p.add_argument_group("run options")
    for name, (_conv, default, help_) in RUN_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        if name in _FLAGS:
            g.add_argument(
                flag,
                dest=name,
                action="store_const",
                const=True,
                default=argparse.SUPPRESS,
                help=help_,
            )
        else:
            g.add_argument(
                flag,
                dest=name,
                default=argparse.SUPPRESS,
                metavar="V",
                help=f"{help_} (default: {default})",
            )
    if alg_cls is not None and alg_cls.hyperparameters:
        h = p.add_argument_group(f"{alg_cls.name} hyperparameters")
        for hp in alg_cls.hyperparameters:
            extra = f"; one of {', '.join(map(str, hp.choices))}" if hp.choices else ""
            h.add_argument(
                "--" + hp.name.replace("_", "-"),
                dest=hp.name,
                default=argparse.SUPPRESS,
                metavar="V",
                help=f"{hp.help} (default: {hp.default}{extra})",
            )


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from None
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):  # a [hyperparameters] table, or any table: flatten
            for k2, v2 in v.items():
                out[_norm_key(k2)] = v2
        else:
            out[_norm_key(k)] = v
    return out


def resolve_run_options(
    argv: Sequence[str], *, resumed_config: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Parse ``ecmpi run`` arguments into ``(algorithm class, options, hyperparameters)``.

    Pure (no MPI, no I/O but the config file): every rank gets the same result or
    the same :class:`UsageError`. ``resumed_config`` is the config of a log given
    with ``--resume``: its values are the base, and only :data:`RESUME_MAY_CHANGE`
    may differ.
    """
    from .algorithms import get

    known = _prescan(argv)
    toml = _read_toml(known.config) if known.config else {}
    base = dict(resumed_config or {})
    name = known.algorithm or toml.get("algorithm") or base.get("algorithm")
    if name is None:
        raise UsageError("ecmpi run: give an ALGORITHM (or --resume FILE.h5)")
    try:
        alg_cls = get(str(name))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except (ImportError, AttributeError) as exc:
        raise UsageError(
            f"algorithm {name!r} is not available in this installation: {exc}"
        ) from None
    if base and base.get("algorithm") not in (None, alg_cls.name, name):
        raise UsageError(
            f"cannot resume: the log was written by {base.get('algorithm')!r}, not {name!r}"
        )

    parser = _Parser(prog="ecmpi run")
    _add_run_options(parser, alg_cls)
    ns = vars(parser.parse_args(list(argv)))
    given_cli = {k: v for k, v in ns.items() if k not in ("algorithm", "config", "resume")}
    toml.pop("algorithm", None)

    hypers = {h.name: h for h in alg_cls.hyperparameters}
    unknown = sorted(k for k in toml if k not in RUN_OPTIONS and k not in hypers)
    if unknown:
        raise UsageError(
            f"config file {known.config}: unknown key(s) {', '.join(unknown)} "
            f"(for {alg_cls.name}); options are those of `ecmpi run {alg_cls.name} --help`"
        )

    opts: dict[str, Any] = {k: d for k, (_c, d, _h) in RUN_OPTIONS.items()}
    hp: dict[str, Any] = {k: h.default for k, h in hypers.items()}
    if base:
        opts.update({k: v for k, v in base.items() if k in RUN_OPTIONS})
        hp.update({k: v for k, v in base.get("hyperparameters", {}).items() if k in hypers})
    explicit: dict[str, Any] = {**toml, **given_cli}
    for k, raw in explicit.items():
        conv = RUN_OPTIONS[k][0] if k in RUN_OPTIONS else _hyper_converter(hypers[k])
        try:
            val = conv(raw)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--{k.replace('_', '-')}: {exc}") from None
        if k in RUN_OPTIONS:
            opts[k] = val
        else:
            hp[k] = val
    if base:
        changed = [
            k
            for k, v in explicit.items()
            if k not in RESUME_MAY_CHANGE
            and (
                opts.get(k, hp.get(k))
                != (base.get(k) if k in RUN_OPTIONS else base.get("hyperparameters", {}).get(k))
            )
        ]
        if changed:
            raise UsageError(
                "cannot resume with different settings: "
                + ", ".join(f"--{k.replace('_', '-')}" for k in sorted(changed))
                + f" (only {', '.join(RESUME_MAY_CHANGE)} may change)"
            )
    # cross-option checks
    if opts["l2"] is not None and opts["l2_rel"] is not None:
        raise UsageError("give either --l2 or --l2-rel, not both")
    if opts["problem"] == "quadratic":
        if opts["dataset"] is None and (opts["kappa"] is None or opts["dim"] is None):
            raise UsageError(
                "--problem quadratic needs --kappa and --dim (or a quadratic: dataset)"
            )
    else:
        if opts["kappa"] is not None or opts["dim"] is not None:
            raise UsageError("--kappa and --dim apply to --problem quadratic only")
        if opts["dataset"] is None:
            raise UsageError(
                f"--problem {opts['problem']} needs --dataset, e.g. synthetic:n=4000,d=100"
            )
    from . import compressor

    try:
        compressor(opts["compressor"])
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--compressor: {exc}") from None
    if opts["overwrite"] and opts["out"] is None:
        raise UsageError("--overwrite needs --out")
    if opts["checkpoint_every"] and opts["out"] is None and not base:
        raise UsageError("--checkpoint-every needs --out (checkpoints live in the log)")
    opts["algorithm"] = alg_cls.name
    return alg_cls, opts, hp


# ---------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------
def _x0_vector(spec: str, problem: Any) -> Any:
    import numpy as np

    d, dt = problem.d, problem.dtype
    if spec == "zeros":
        return np.zeros(d, dtype=dt)
    if spec == "ones":
        return np.ones(d, dtype=dt)
    if spec.startswith("const:"):
        return np.full(d, float(spec.split(":", 1)[1]), dtype=dt)
    c = float(spec.split("+", 1)[1])
    return (np.asarray(problem.x_star) + c).astype(dt)


def _rank0_check(comm: Any, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 only; its result or its error message reaches every rank."""
    res: tuple[str | None, Any] = (None, None)
    if comm.rank == 0:
        try:
            res = (None, fn())
        except (OSError, ValueError) as exc:
            res = (str(exc), None)
    msg, val = comm.bcast(res, root=0)
    if msg is not None:
        raise UsageError(msg)
    return val


def _agreed_run_options(
    comm: Any, argv: Sequence[str], resumed_config: dict[str, Any] | None
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """:func:`resolve_run_options` on every rank, then one allgather so that all ranks agree.

    A rank whose options are invalid, or ranks given different settings (another
    ``--steps`` on one rank, a different config file), make every rank raise the same
    UsageError, so no rank goes on into a collective that the others never join.
    """
    try:
        alg_cls, opts, hp = resolve_run_options(argv, resumed_config=resumed_config)
        mine: tuple[str | None, Any] = (None, (opts, hp))
    except UsageError as exc:
        mine = (str(exc), None)
    every = comm.allgather(mine)
    for rank, (msg, _) in enumerate(every):
        if msg is not None:
            raise UsageError(msg if rank == comm.rank or comm.size == 1 else f"{msg} (rank {rank})")
    ref_opts, ref_hp = every[0][1]
    diffs = []
    for rank, (_, (o, h)) in enumerate(every[1:], start=1):
        for key in sorted(set(ref_opts) | set(o) | set(ref_hp) | set(h)):
            a = ref_opts.get(key, ref_hp.get(key))
            b = o.get(key, h.get(key))
            if repr(a) != repr(b):
                diffs.append(f"{key} (rank 0: {a!r}, rank {rank}: {b!r})")
    if diffs:
        raise UsageError("ranks were given different settings: " + "; ".join(diffs[:8]))
    return alg_cls, opts, hp


def _summary(opts: dict[str, Any], result: Any, path: str | None) -> str:
    last = result.last
    rows = [
        ("algorithm", opts["algorithm"]),
        ("problem", f"{opts['problem']} {opts.get('dataset') or ''}".strip()),
        ("compressor / collective", f"{opts['compressor']} / {opts['collective']}"),
        ("status", f"{result.status} ({result.stop_reason})"),
        ("steps", str(result.steps)),
        ("f(x)", f"{last.get('loss', math.nan):.10g}"),
        ("f(x) - f*", f"{last.get('suboptimality', math.nan):.3e}"),
        ("||x - x*||", f"{last.get('dist_to_opt', math.nan):.3e}"),
        ("||grad f(x)||", f"{last.get('grad_norm', math.nan):.3e}"),
        (
            "bits per worker (up / down)",
            f"{last.get('bits_up', 0):.4g} / {last.get('bits_down', 0):.4g}",
        ),
        (
            "time in steps / comm / compress (s)",
            f"{last.get('wall_time', 0):.3f} / {last.get('comm_time', 0):.3f} / "
            f"{last.get('compress_time', 0):.3f}",
        ),
    ]
    if path:
        rows.append(("log", path))
    w = max(len(k) for k, _ in rows)
    v = max(len(val) for _, val in rows)
    lines = [
        f"| {'quantity'.ljust(w)} | {'value'.ljust(v)} |",
        f"|{'-' * (w + 2)}|{'-' * (v + 2)}|",
    ]
    lines += [f"| {k.ljust(w)} | {val.ljust(v)} |" for k, val in rows]
    return "\n".join(lines)


def _mpi_library() -> str:
    from mpi4py import MPI

    return MPI.Get_library_version().strip().splitlines()[0].strip()


def cmd_run(argv: Sequence[str]) -> int:
    """``ecmpi run``: see the module docstring."""
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    rank0 = world.rank == 0
    if any(a in ("-h", "--help") for a in argv):
        try:
            alg_cls = _peek_algorithm(argv)
        except UsageError:
            alg_cls = None
        p = _Parser(prog="ecmpi run", description="Run an algorithm (collective: all ranks).")
        _add_run_options(p, alg_cls)
        if rank0:
            p.print_help()
        return 0

    from .algorithms.loop import SignalLatch

    # SIGTERM/SIGUSR1 from here to exit: recorded, acted on by the loop (checkpoint, exit
    # 75); one that comes during setup stops the run at its first step, one after the loop
    # is ignored (the log already says how the run ended)
    latch = SignalLatch()
    resume_path = _peek_resume(argv)
    resumed_config = None
    if resume_path is not None:
        from .log import open_log

        def read() -> dict[str, Any]:
            log = open_log(resume_path)
            if log.checkpoint_step is None:
                raise ValueError(
                    f"{resume_path} holds no checkpoint (run with --checkpoint-every N)"
                )
            if int(log.attrs.get("n_ranks", -1)) != world.size:
                raise ValueError(
                    f"{resume_path} was run on {log.attrs.get('n_ranks')} ranks; resume it with "
                    f"mpiexec -n {log.attrs.get('n_ranks')} (re-sharding state is not supported)"
                )
            return log.config

        resumed_config = _rank0_check(world, read)
    alg_cls, opts, hp = _agreed_run_options(world, argv, resumed_config)
    out = resume_path or opts["out"]
    if resume_path is None and out is not None:

        def check_out() -> None:
            p = Path(out)
            if p.exists() and not opts["overwrite"]:
                raise ValueError(
                    f"{p} exists; pass --overwrite to replace it or --resume to continue it"
                )
            parent = p.parent if str(p.parent) else Path(".")
            if not parent.is_dir():
                raise ValueError(f"output directory {parent} does not exist")
            if not os.access(parent, os.W_OK):
                raise ValueError(f"output directory {parent} is not writable")

        _rank0_check(world, check_out)

    # -- the work (collective) -------------------------------------------------------------
    import numpy as np

    from . import compressor, problems
    from .algorithms import RunContext
    from .algorithms.loop import run
    from .comm import library_comm
    from .errors import close_channel, open_channel
    from .log import TrajectoryWriter, load_checkpoint
    from .watcher import watch

    channel = open_channel(world)  # closed below, or by main() after an exception
    comm = library_comm(world)
    comp = compressor(opts["compressor"])
    problem = problems.make(
        opts["problem"],
        opts["dataset"],
        comm=comm,
        l2=opts["l2"],
        l2_rel=opts["l2_rel"],
        kappa=opts["kappa"],
        dim=opts["dim"],
        seed=opts["seed"] if opts["problem"] == "quadratic" and opts["dataset"] is None else None,
        scale=opts["scale"],
        bias=opts["bias"],
        dtype=np.dtype(opts["dtype"]).type,
    )
    x0 = _x0_vector(opts["x0"], problem)
    ctx = RunContext(
        problem=problem,
        comm=comm,
        compressor=comp,
        collective=opts["collective"],
        seed=opts["seed"],
        lr=opts["lr"],
        batch_size=opts["batch_size"],
        x0=x0,
        params=dict(hp),
    )
    info = problem.describe()
    resume = load_checkpoint(resume_path, comm) if resume_path else None
    watchers: list[Any] = []

    def attach(w: TrajectoryWriter) -> TrajectoryWriter:
        # errors on other ranks mark the log failed; so does rank 0's own death
        channel.attach(w)
        watchers.append(watch(w.path))
        return w

    def make_writer(alg: Any) -> TrajectoryWriter | None:
        if out is None:
            return None
        config = {**opts, "hyperparameters": hp, "resolved": alg.describe(), "problem_info": info}
        if resume_path:
            return attach(
                TrajectoryWriter.resume(resume_path, log_every=opts["log_every"], config=config)
            )
        attrs = {
            "algorithm": opts["algorithm"],
            "problem": opts["problem"],
            "dataset": info.get("dataset") or opts["dataset"] or "none",
            "compressor": comp.spec,
            "collective": opts["collective"],
            "n_ranks": world.size,
            "seed": opts["seed"],
            "f_star": info.get("f_star", math.nan),
            "L": info.get("L", math.nan),
            "mu": info.get("mu", math.nan),
            "mpi_library": _mpi_library(),
            "gpu_mpi": _gpu_mpi_attr(),
        }
        return attach(TrajectoryWriter(out, attrs, config, overwrite=opts["overwrite"]))

    result = run(
        alg_cls,
        ctx,
        steps=opts["steps"],
        target=opts["target"],
        max_bits=opts["max_bits"],
        log=make_writer,
        log_every=opts["log_every"],
        progress=None if opts["quiet"] else True,
        progress_every=opts["progress_every"],
        checkpoint_every=opts["checkpoint_every"],
        on_nonfinite=opts["on_nonfinite"],
        diverge_factor=opts["diverge_factor"],
        resume=resume,
        handle_signals=latch,
    )
    for w in watchers:
        if w is not None:
            w.release()
    close_channel()
    if rank0 and not opts["quiet"]:
        print(_summary(opts, result, out), flush=True)
    if result.status == "interrupted":
        return EXIT_INTERRUPTED
    return 0 if result.status in ("completed", "diverged") else 1


def _prescan(argv: Sequence[str]) -> argparse.Namespace:
    """ALGORITHM, --config and --resume, found before the full parser can be built.

    Every option but the flags takes one value (``--name V`` or ``--name=V``).
    """
    found = argparse.Namespace(algorithm=None, config=None, resume=None)
    flags = {"--" + f.replace("_", "-") for f in _FLAGS} | {"-h", "--help"}
    it = iter(argv)
    for a in it:
        if a.startswith("-"):
            name, eq, val = a.partition("=")
            if name in flags:
                continue
            if not eq:
                val = next(it, None)
            if name in ("--config", "--resume"):
                setattr(found, name[2:], val)
        elif found.algorithm is None:
            found.algorithm = a
    return found


def _peek_resume(argv: Sequence[str]) -> str | None:
    return _prescan(argv).resume


def _peek_algorithm(argv: Sequence[str]) -> Any:
    from .algorithms import get

    known = _prescan(argv)
    name = known.algorithm or (_read_toml(known.config).get("algorithm") if known.config else None)
    if name is None:
        return None
    try:
        return get(name)
    except (ValueError, ImportError, AttributeError) as exc:
        raise UsageError(str(exc)) from None


# ---------------------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------------------
def info() -> dict[str, Any]:
    """Versions, the MPI library, GPU availability and the GPU-aware-MPI status."""
    import h5py
    import numpy as np

    from . import __version__, available
    from .algorithms import ALGORITHMS

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
        out["mpi_library"] = _mpi_library()
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
    p = _Parser(prog="ecmpi info", description="Versions, MPI library, GPU and GPU-aware MPI.")
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
    p = _Parser(prog=f"ecmpi {name}", description=help_)
    mod.add_arguments(p)
    args = p.parse_args(list(argv))
    return int(mod.main(args) or 0)


def _gpu_mpi_attr() -> str:
    """The log's ``gpu_mpi`` attribute: which path device buffers take through MPI."""
    from ._backend import gpu_mpi_status

    st = gpu_mpi_status()
    return f"arrays on the CPU; device buffers would use {st['path']} ({st['source']})"


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
    from .errors import close_channel, report_failure

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
    except KeyboardInterrupt:
        print(f"ecmpi: interrupted (rank {_rank()})", file=sys.stderr, flush=True)
        _abort_job(130)
        return 130
    except BaseException as exc:
        rank = _rank()
        if rank != 0:
            time.sleep(1.0)  # an error shared by all ranks: let rank 0 report it and abort
        if isinstance(
            exc, (ValueError, TypeError, OSError, FloatingPointError)
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
