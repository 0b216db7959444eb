"""One run from options to log: what ``ecmpi run`` and :func:`ecmpi.run` do.

:func:`run` (collective over ``comm``) is the Python form of
``mpiexec -n P ecmpi run ALGORITHM [options]``::

    import ecmpi
    res = ecmpi.run("ef-sgd", problem="logreg", dataset="synthetic:n=4000,d=100",
                    l2_rel=1e-3, compressor="qsgd:levels=4", collective="sra",
                    batch_size=32, steps=300, seed=0, out="ef-sgd.h5", overwrite=True)
    res.status, res.steps, res.last["suboptimality"]

A session, on every rank:

1. resolves the options (:mod:`ecmpi.options`) and checks that all ranks agree
   (one allgather: an invalid or different setting on any rank raises the same
   :class:`~ecmpi.options.UsageError` on every rank, before any work);
2. with ``resume``, reads the log's config on rank 0 and its checkpoint on
   every rank; otherwise checks on rank 0 that the log can be written;
3. opens the error channel (:mod:`ecmpi.error_channel`), builds the compressor, the
   problem and x0, and runs :func:`ecmpi.algorithms.loop.run`; rank 0 writes
   the HDF5 log (attributes: docs/hdf5.md) watched by :mod:`ecmpi.watcher`;
4. closes the channel and, unless ``quiet``, prints the summary table on rank 0.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .algorithms.loop import RunResult
from .errors import UsageError
from .options import resolve_options
from .outputs import check_output

__all__ = ["RunResult", "run", "run_session", "summary"]

#: ``(algorithm class, options, hyperparameters)`` from the resumed log's config (or None)
Resolver = Callable[[dict[str, Any] | None], tuple[Any, dict[str, Any], dict[str, Any]]]


def run(algorithm: str, *, comm: Any = None, out: Any = None, **options: Any) -> RunResult:
    """Run ``algorithm`` as ``ecmpi run`` would (collective over ``comm``).

    Args:
        algorithm: the algorithm's name (``gd``, ``ef-sgd``, ``ecq-sgd``, ...; see
            :data:`ecmpi.algorithms.ALGORITHMS`).
        comm: the mpi4py communicator of the run (default ``COMM_WORLD``).
        out: the HDF5 log file (default: no log).
        **options: the options of ``ecmpi run`` with underscores (``lr=0.5``,
            ``batch_size=32``, ``compressor="qsgd:levels=4"``, ``collective="sra"``,
            ``steps=300``, ``dataset="synthetic:n=4000,d=100"``, ``quiet=True``,
            ``overwrite=True``; ``config="run.toml"``, ``resume="run.h5"``) and the
            algorithm's hyperparameters; None leaves an option at its default.

    An exception on one rank other than 0 is handed to rank 0, which marks the log
    ``failed`` and ends the job; start scripts with ``mpiexec -n P python -m mpi4py
    script.py`` so that one on rank 0 ends the job too instead of leaving the others
    waiting in a collective.

    Returns:
        How the run ended (identical on every rank, except ``rows``).

    Raises:
        UsageError: an unknown option, an invalid value or combination (on every rank).
        RunError: raised by the loop on every rank (e.g. a non-finite iterate).
        SetupInterrupted: SIGTERM/SIGUSR1/SIGINT came before the first step.
    """
    from mpi4py import MPI

    from .algorithms.loop import RunError, SignalLatch
    from .error_channel import close_channel, report_failure

    world = MPI.COMM_WORLD if comm is None else comm
    config = options.pop("config", None)
    resume = options.pop("resume", None)
    if out is not None:
        options["out"] = out

    def resolve(resumed: dict[str, Any] | None) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        return resolve_options(algorithm, options, config=config, resumed_config=resumed)

    latch = SignalLatch(setup=True)  # a signal before the first step: SetupInterrupted
    try:
        result = run_session(
            world,
            resolve,
            resume=None if resume is None else str(resume),
            config=None if config is None else str(config),
            latch=latch,
        )
    except (UsageError, RunError):  # raised alike on every rank
        close_channel()
        raise
    except BaseException as exc:
        if world.rank != 0:  # rank 0 marks its log failed and ends the job
            report_failure(f"{type(exc).__name__}: {exc}")
        else:
            close_channel()
        raise
    finally:
        latch.restore()
    return result


def run_session(
    world: Any,
    resolve: Resolver,
    *,
    resume: str | None = None,
    config: str | None = None,
    latch: Any = True,
) -> RunResult:
    """The session (see the module docstring) with options from ``resolve``.

    Args:
        world: the communicator of the run.
        resolve: ``resumed_config -> (algorithm class, options, hyperparameters)``, the
            same on every rank (:func:`~ecmpi.options.resolve_run_options` for a command
            line, :func:`~ecmpi.options.resolve_options` for keyword arguments).
        resume: the log to continue from its checkpoint.
        config: the TOML file the options came from (an input: never the output).
        latch: ``handle_signals`` of the loop (a :class:`~ecmpi.algorithms.loop.SignalLatch`
            installed for longer than the loop, or True).

    After an exception the error channel stays open, so that the caller may report the
    failure to rank 0 (:func:`ecmpi.error_channel.report_failure`) before closing it.
    """
    resumed_config, checkpoint_step = None, 0
    if resume is not None:
        from .log import open_log

        def read() -> tuple[dict[str, Any], int]:
            log = open_log(resume)
            if log.checkpoint_step is None:
                raise ValueError(
                    f"{resume} holds no checkpoint (run with --checkpoint-every N): it cannot "
                    "be resumed; start the run again without --resume"
                )
            if int(log.attrs.get("n_ranks", -1)) != world.size:
                raise ValueError(
                    f"{resume} was run on {log.attrs.get('n_ranks')} ranks; resume it with "
                    f"mpiexec -n {log.attrs.get('n_ranks')} (re-sharding state is not supported)"
                )
            _check_columns(resume)
            return log.config, int(log.checkpoint_step)

        resumed_config, checkpoint_step = _rank0_check(world, read)
    alg_cls, opts, hp = _agreed_options(world, resolve, resumed_config)
    if resume is not None and opts["steps"] <= checkpoint_step:
        raise UsageError(
            f"{resume} is checkpointed at step {checkpoint_step}, so the step budget "
            f"--steps {opts['steps']} is already reached; nothing to run, the log is left "
            f"unchanged (give --steps above {checkpoint_step} to continue it)"
        )
    out = resume or opts["out"]
    if resume is None and out is not None:

        def check_out() -> None:
            p = Path(out)
            check_output(p, inputs=(_dataset_file(opts["dataset"]), config))
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
    from .algorithms.loop import run as run_loop
    from .comm import library_comm
    from .error_channel import close_channel, open_channel
    from .log import TrajectoryWriter, load_checkpoint
    from .watcher import watch

    channel = open_channel(world)  # closed below, or by the caller after an exception
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
        seed=opts["seed"] if _seeded_problem(opts) else None,
        scale=opts["scale"],
        bias=opts["bias"],
        dtype=np.dtype(opts["dtype"]).type,
        hidden=opts["hidden"],
        test_fraction=opts["test_fraction"],
    )
    _check_batch(opts["batch_size"], problem, comm)
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
    loaded = load_checkpoint(resume, comm) if resume else None
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
        if resume:
            return attach(
                TrajectoryWriter.resume(resume, log_every=opts["log_every"], config=config)
            )
        attrs = log_attributes(opts, info, comp.spec, world.size)
        return attach(TrajectoryWriter(out, attrs, config, overwrite=opts["overwrite"]))

    result = run_loop(
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
        resume=loaded,
        handle_signals=latch,
    )
    for w in watchers:
        if w is not None:
            w.release()
    close_channel()
    if world.rank == 0 and not opts["quiet"]:
        print(summary(opts, result, out), flush=True)
    return result


def log_attributes(
    opts: dict[str, Any], info: dict[str, Any], compressor_spec: str, n_ranks: int
) -> dict[str, Any]:
    """The root attributes of a new log (schema ``ecmpi.trajectory/1``, docs/hdf5.md)."""
    from .algorithms import get as algorithm_class

    return {
        "algorithm": opts["algorithm"],
        "problem": opts["problem"],
        "dataset": info.get("dataset") or opts["dataset"] or "none",
        "compressor": compressor_spec,
        "collective": opts["collective"],
        "n_ranks": n_ranks,
        "seed": opts["seed"],
        "f_star": info.get("f_star", math.nan),
        "L": info.get("L", math.nan),
        "mu": info.get("mu", math.nan),
        "mpi_library": mpi_library(),
        "gpu_mpi": gpu_mpi_attr(),
        "self_quantizing": algorithm_class(opts["algorithm"]).self_quantizing,
    }


def _check_batch(batch_size: int, problem: Any, comm: Any) -> None:
    """Refuse a minibatch larger than the smallest non-empty shard (collective)."""
    from mpi4py import MPI

    rows = int(problem.n_local) or math.inf  # a rank without rows draws no batch
    smallest = comm.allreduce(rows, op=MPI.MIN)
    if 0 < batch_size and batch_size > smallest:
        raise UsageError(
            f"--batch-size {batch_size} exceeds the {smallest} rows of the smallest shard; "
            f"give at most {smallest}, or 0 for the full local gradient"
        )


def _seeded_problem(opts: dict[str, Any]) -> bool:
    """Whether the run's seed builds the problem (a generated quadratic; mlp's
    initialization and held-out split)."""
    return opts["problem"] == "mlp" or (opts["problem"] == "quadratic" and not opts["dataset"])


def _x0_vector(spec: str, problem: Any) -> Any:
    """The start point named by ``spec`` (``init``, ``zeros``, ``ones``, ``const:C``,
    ``star+C``)."""
    import numpy as np

    d, dt = problem.d, problem.dtype
    if spec == "init":
        return problem.initial_point()
    if spec == "zeros":
        return np.zeros(d, dtype=dt)
    if spec == "ones":
        return np.ones(d, dtype=dt)
    if spec.startswith("const:"):
        return np.full(d, float(spec.split(":", 1)[1]), dtype=dt)
    c = float(spec.split("+", 1)[1])
    return (np.asarray(problem.x_star) + c).astype(dt)


def _dataset_file(spec: str | None) -> str | None:
    """The file a ``libsvm:PATH`` or ``hdf5:PATH`` dataset reads (None for the others)."""
    from .problems.data import parse_dataset_spec

    try:
        source, path, _ = parse_dataset_spec(spec) if spec else (None, None, None)
    except ValueError:
        return None  # reported when the data is loaded
    return path if source in ("libsvm", "hdf5") else None


def _check_columns(path: str) -> None:
    """Refuse a log whose trajectory columns differ in length by more than one partial row.

    The reader keeps only complete rows (the shortest column): resuming such a log would
    silently drop every row past that length.
    """
    from .log._files import open_read

    with open_read(path) as f:
        lengths = {k: int(v.shape[0]) for k, v in f["trajectory"].items()}
    if lengths and max(lengths.values()) - min(lengths.values()) > 1:
        listed = ", ".join(f"{k}: {n}" for k, n in sorted(lengths.items()))
        raise ValueError(
            f"{path}: the trajectory columns have unequal lengths ({listed} rows); the log is "
            "damaged and resuming it would drop rows, so it is refused"
        )


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


def _agreed_options(
    comm: Any, resolve: Resolver, resumed_config: dict[str, Any] | None
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """``resolve`` on every rank, then one allgather so that all ranks agree.

    A rank whose options are invalid, or ranks given different settings (another
    ``--steps`` on one rank, a different config file), make every rank raise the same
    UsageError, so no rank goes on into a collective that the others never join.
    """
    try:
        alg_cls, opts, hp = resolve(resumed_config)
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


def summary(opts: dict[str, Any], result: RunResult, path: str | None) -> str:
    """The Markdown table printed at the end of a run (rank 0)."""
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
    if "test_accuracy" in last:  # a problem with a held-out split (mlp)
        rows.insert(
            8,
            (
                "held-out accuracy / loss",
                f"{last['test_accuracy']:.4f} / {last.get('test_loss', math.nan):.4g}",
            ),
        )
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


def mpi_library() -> str:
    """The first line of ``MPI_Get_library_version``."""
    from mpi4py import MPI

    return MPI.Get_library_version().strip().splitlines()[0].strip()


def gpu_mpi_attr() -> str:
    """The log's ``gpu_mpi`` attribute: which path device buffers take through MPI."""
    from ._backend import gpu_mpi_status

    st = gpu_mpi_status()
    return f"arrays on the CPU; device buffers would use {st['path']} ({st['source']})"
