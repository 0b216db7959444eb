"""``ecmpi reproduce NAME --out DIR [-n P] [--quick]``: a paper's experiment end to end.

Runs every ``ecmpi run`` of the experiment (:mod:`ecmpi.experiments`) one after
another as ``mpiexec -n P <python> -m ecmpi run ...``, writing the logs to
``DIR/logs/``, then draws the figures (``DIR/<figure>.png``) and writes the
table (``DIR/table.md``) with :mod:`ecmpi.analyze`, and prints the table.
``mpiexec`` is the one next to the running Python first (the MPICH wheel's),
then the first on ``PATH``; ``--launcher`` replaces it (``"srun"``,
``"mpiexec --oversubscribe"``). Exit status: 0 done, 1 a run failed (its
stderr is shown; later runs are not started), 2 bad options, an unknown
experiment or an algorithm this installation does not provide.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .errors import ReproduceError
from .experiments import EXPERIMENTS, get_experiment
from .experiments.base import Experiment, Setting

__all__ = ["ReproduceError", "add_arguments", "find_mpiexec", "main", "reproduce"]


def find_mpiexec() -> list[str]:
    """``mpiexec`` beside ``sys.executable``, else on ``PATH``.

    Raises:
        ReproduceError: neither exists.
    """
    here = Path(sys.executable).parent / "mpiexec"
    if here.is_file() and os.access(here, os.X_OK):
        return [str(here)]
    found = shutil.which("mpiexec")
    if found:
        return [found]
    raise ReproduceError(
        f"mpiexec not found next to {sys.executable} or on PATH; install an MPI "
        "(pip install mpich) or pass --launcher",
        code=2,
    )


def _check_algorithms(exp: Experiment, setting: Setting) -> None:
    from .algorithms import ALGORITHMS, get

    missing = []
    for name in dict.fromkeys(r.algorithm for r in setting.runs):
        if name not in ALGORITHMS:
            missing.append(f"{name} (not registered)")
            continue
        try:
            get(name)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{name} ({type(exc).__name__}: {exc})")
    if missing:
        raise ReproduceError(
            f"experiment {exp.name!r} needs algorithm(s) this installation does not provide "
            f"yet: {'; '.join(missing)}",
            code=2,
        )


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def reproduce(
    exp: Experiment,
    out: str | os.PathLike,
    *,
    ranks: int | None = None,
    quick: bool = False,
    max_steps: int | None = None,
    launcher: list[str] | None = None,
    timeout: float | None = None,
) -> str:
    """Run ``exp`` and write logs, figures and ``table.md`` under ``out``.

    Args:
        exp: the experiment.
        out: output directory (created).
        ranks: ``-n`` for runs without a fixed rank count (default: the setting's).
        quick: the quick setting instead of the full one.
        max_steps: cap every run's ``--steps`` (smoke tests).
        launcher: the MPI launcher command (default: :func:`find_mpiexec`).
        timeout: seconds allowed per run.

    Returns:
        The Markdown table (also in ``out/table.md``).

    Raises:
        ReproduceError: a run failed (message with its stderr), no launcher, or
            an algorithm is missing.
    """
    from . import analyze

    setting = exp.setting(quick)
    _check_algorithms(exp, setting)
    if ranks is not None and ranks < 1:
        raise ValueError(f"-n must be a positive rank count, got {ranks}")
    launch = list(launcher) if launcher else find_mpiexec()
    out = Path(out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    runs = [r.with_max_steps(max_steps) for r in setting.runs]
    kind = "quick" if quick else "full"
    _say(f"ecmpi reproduce {exp.name} ({kind}): {len(runs)} runs -> {out}")
    t_all = time.perf_counter()
    paths = {}
    for i, run in enumerate(runs, 1):
        p = run.ranks or ranks or setting.ranks
        path = logs / f"{run.name}.h5"
        cmd = [*launch, "-n", str(p), sys.executable, "-m", "ecmpi", "run", *run.argv]
        cmd += ["--out", str(path), "--overwrite", "--quiet"]
        _say(f"[{i}/{len(runs)}] {run.name} (P={p}): {shlex.join(run.argv)}")
        t0 = time.perf_counter()
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            msg = f"run {run.name} exceeded {timeout} s: {shlex.join(cmd)}"
            raise ReproduceError(msg) from None
        except OSError as exc:
            raise ReproduceError(f"cannot start {launch[0]}: {exc}", code=2) from None
        if res.returncode != 0:
            tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-30:])
            raise ReproduceError(
                f"run {run.name} failed (exit status {res.returncode}): {shlex.join(cmd)}\n{tail}"
            )
        _say(f"        done in {time.perf_counter() - t0:.1f} s")
        paths[run.name] = path

    df = analyze.load([paths[r.name] for r in runs])
    table = analyze.summary(
        df,
        eps=setting.eps,
        group_by=setting.group_by,
        baseline=setting.baseline,
        accuracy=setting.accuracy,
        eps_relative=setting.eps_relative,
    )
    for fig in setting.figures:
        sel = df if fig.runs is None else df[df["file"].isin([str(paths[n]) for n in fig.runs])]
        eps = setting.eps
        if eps is not None and setting.eps_relative:  # the line only where it is one value
            starts = {float(t["suboptimality"][0]) for t in sel["trajectory"] if len(t["step"])}
            eps = eps * starts.pop() if len(starts) == 1 else None
        target = out / f"{fig.name}.png"
        analyze.plot(
            sel,
            x=list(fig.x),
            group_by=fig.group_by,
            eps=eps,
            title=fig.title,
            path=target,
            accuracy=setting.accuracy,
        )
        _say(f"wrote {target}")
    md = f"# {exp.name} ({kind})\n\n{exp.paper}\n\n{exp.description}\n\n" + analyze.format_table(
        table, "md"
    )
    (out / "table.md").write_text(md)
    _say(f"wrote {out / 'table.md'} ({time.perf_counter() - t_all:.0f} s in all)")
    return md


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``ecmpi reproduce`` options to ``parser``."""
    parser.add_argument("name", choices=sorted(EXPERIMENTS), help="the experiment")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument(
        "-n", "--ranks", type=int, metavar="P", help="MPI ranks (default: the experiment's)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="the small setting (minutes on a laptop)"
    )
    parser.add_argument(
        "--max-steps", type=int, metavar="N", help="cap every run's --steps (smoke tests)"
    )
    parser.add_argument(
        "--launcher",
        metavar="CMD",
        help='MPI launcher, e.g. "srun" or "mpiexec --oversubscribe" (default: mpiexec)',
    )
    parser.add_argument("--timeout", type=float, metavar="S", help="seconds allowed per run")


def main(args: argparse.Namespace) -> int:
    """Run ``ecmpi reproduce``; prints the table, returns the exit status."""
    try:
        if args.ranks is not None and args.ranks < 1:
            raise ReproduceError(f"-n must be a positive rank count, got {args.ranks}", code=2)
        if args.max_steps is not None and args.max_steps < 1:
            raise ReproduceError(f"--max-steps must be positive, got {args.max_steps}", code=2)
        md = reproduce(
            get_experiment(args.name),
            args.out,
            ranks=args.ranks,
            quick=args.quick,
            max_steps=args.max_steps,
            launcher=shlex.split(args.launcher) if args.launcher else None,
            timeout=args.timeout,
        )
    except ReproduceError as exc:
        print(f"ecmpi reproduce: error: {exc}", file=sys.stderr)
        return exc.code
    sys.stdout.write(md)
    return 0
