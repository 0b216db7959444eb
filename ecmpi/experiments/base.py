"""What an experiment is: runs of ``ecmpi run``, the figures and the table made from them."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BREAST_CANCER", "Experiment", "FigureSpec", "Run", "Setting", "flags"]


def flags(**opts: Any) -> tuple[str, ...]:
    """``ecmpi run`` options from keywords.

    ``flags(lr=0.5, batch_size=16, bias=True)`` is
    ``("--lr", "0.5", "--batch-size", "16", "--bias")``. None values are left
    out; True gives the bare flag (False leaves it out).
    """
    out: list[str] = []
    for k, v in opts.items():
        if v is None or v is False:
            continue
        out.append("--" + k.replace("_", "-"))
        if v is not True:
            out.append(repr(v) if isinstance(v, float) else str(v))
    return tuple(out)


#: l2-regularized logistic regression on scikit-learn's breast_cancer: 569 x 30
#: standardized features plus a bias column, lambda = 1e-3 * L
BREAST_CANCER = flags(
    problem="logreg", dataset="sklearn:breast_cancer", scale="standard", bias=True, l2_rel=1e-3
)


@dataclass(frozen=True)
class Run:
    """One ``ecmpi run`` of an experiment.

    Attributes:
        name: the log's file stem (``DIR/logs/<name>.h5``), unique in its setting.
        argv: the arguments of ``ecmpi run``, the algorithm first, without ``--out``.
        ranks: a fixed rank count (the paper's), or None for ``reproduce -n P``.
    """

    name: str
    argv: tuple[str, ...]
    ranks: int | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"bad run name {self.name!r}")
        if not self.argv or self.argv[0].startswith("-"):
            raise ValueError(f"run {self.name!r}: argv must start with the algorithm name")
        if "--out" in self.argv:
            raise ValueError(f"run {self.name!r}: reproduce chooses --out itself")
        if self.ranks is not None and self.ranks < 1:
            raise ValueError(f"run {self.name!r}: ranks must be positive, got {self.ranks}")

    @property
    def algorithm(self) -> str:
        return self.argv[0]

    @property
    def options(self) -> dict[str, Any]:
        """``argv`` after the algorithm as keywords of :func:`ecmpi.run` (inverse of :func:`flags`).

        ``Run("r", ("sgd", "--lr", "0.5", "--batch-size", "8", "--bias")).options`` is
        ``{"lr": 0.5, "batch_size": 8, "bias": True}``: a bare flag is True, numbers
        become int or float, except the values of the algorithm's text hyperparameters
        (``--p 0.2`` of ec-lkatyusha stays ``"0.2"``), other values stay text.
        """
        text = _text_hyperparameters(self.algorithm)
        out: dict[str, Any] = {}
        args = self.argv[1:]
        i = 0
        while i < len(args):
            if not args[i].startswith("--"):
                raise ValueError(f"run {self.name!r}: expected an option, got {args[i]!r}")
            key = args[i][2:].replace("-", "_")
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                out[key] = args[i + 1] if key in text else _number(args[i + 1])
                i += 2
            else:
                out[key] = True
                i += 1
        return out

    def with_max_steps(self, max_steps: int | None) -> Run:
        """The same run with ``--steps`` lowered to at most ``max_steps``."""
        if max_steps is None:
            return self
        argv = list(self.argv)
        if "--steps" in argv:
            i = argv.index("--steps") + 1
            argv[i] = str(min(int(float(argv[i])), max_steps))
        else:
            argv += ["--steps", str(max_steps)]
        return Run(self.name, tuple(argv), self.ranks)


def _number(text: str) -> int | float | str:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _text_hyperparameters(algorithm: str) -> frozenset[str]:
    """Names of ``algorithm``'s hyperparameters whose values are text (none if unavailable)."""
    from ..algorithms import get

    try:
        return frozenset(h.name for h in get(algorithm).hyperparameters if h.type is str)
    except (ValueError, ImportError, AttributeError):
        return frozenset()


@dataclass(frozen=True)
class FigureSpec:
    """One figure (``DIR/<name>.png``) drawn by :func:`ecmpi.analyze.plot`.

    Attributes:
        name: file stem.
        x: x axes, one panel each (``rounds``, ``bits``, ``time``).
        group_by: keys of the loaded frame; one curve per group (None: per run).
        runs: names of the runs shown (None: all of the setting's runs).
        title: figure title (None: problem and dataset).
    """

    name: str
    x: tuple[str, ...] = ("rounds", "bits")
    group_by: tuple[str, ...] | None = ("algorithm",)
    runs: tuple[str, ...] | None = None
    title: str | None = None


@dataclass(frozen=True, eq=False)
class Setting:
    """The runs, figures and table of one setting (quick or full) of an experiment.

    Attributes:
        runs: run in this order.
        figures: drawn after the runs.
        eps: suboptimality target for the table and the figures (None: final values).
        eps_relative: ``eps`` is a fraction of each run's ``f(x0) - f*``
            (see :func:`ecmpi.analyze.summary`).
        accuracy: held-out accuracy target for the table and the figures (problems
            without f*, such as mlp; the figures then show accuracy).
        group_by: table rows (None: one per run).
        ranks: rank count when ``reproduce`` gets no ``-n``.
        baseline: the full-precision reference runs of the compression ratio
            (``{key: value}``, see :func:`ecmpi.analyze.summary`; None: the default).
    """

    runs: tuple[Run, ...]
    figures: tuple[FigureSpec, ...]
    eps: float | None = None
    accuracy: float | None = None
    eps_relative: bool = False
    group_by: tuple[str, ...] | None = ("algorithm", "compressor")
    ranks: int = 4
    baseline: dict[str, str] | None = None

    def __post_init__(self) -> None:
        names = [r.name for r in self.runs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"run names must be unique, repeated: {', '.join(dup)}")
        for fig in self.figures:
            missing = sorted(set(fig.runs or ()) - set(names))
            if missing:
                raise ValueError(f"figure {fig.name!r} names unknown runs: {', '.join(missing)}")
        if self.eps is not None and not (self.eps > 0 and math.isfinite(self.eps)):
            raise ValueError(f"eps must be positive, got {self.eps!r}")
        if self.accuracy is not None and not 0 < self.accuracy <= 1:
            raise ValueError(f"accuracy must be in (0, 1], got {self.accuracy!r}")

    def run_all(
        self, out: str | Path, *, comm: Any = None, max_steps: int | None = None
    ) -> list[Path]:
        """Every run in this MPI job, one :func:`ecmpi.run` each; collective over ``comm``.

        The in-process counterpart of ``ecmpi reproduce`` (which starts one
        ``mpiexec`` per run): each run uses the ranks of ``comm`` (default
        ``COMM_WORLD``), a run's fixed ``ranks`` does not apply. Logs go to
        ``out/<run name>.h5`` (replaced); ``max_steps`` caps each run's steps.

        Returns:
            The log paths, in run order.
        """
        from ..session import run

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for r in self.runs:
            r = r.with_max_steps(max_steps)
            paths.append(out / f"{r.name}.h5")
            run(r.algorithm, comm=comm, out=paths[-1], overwrite=True, quiet=True, **r.options)
        return paths


@dataclass(frozen=True)
class Experiment:
    """A paper's experiment: what it shows and its quick and full settings."""

    name: str
    paper: str
    description: str
    quick: Setting
    full: Setting
    notes: tuple[str, ...] = field(default=())

    def setting(self, quick: bool) -> Setting:
        return self.quick if quick else self.full

    def algorithms(self, quick: bool) -> list[str]:
        """The algorithm names the setting runs, in first-use order."""
        return list(dict.fromkeys(r.algorithm for r in self.setting(quick).runs))


def seeds(n: int) -> Iterable[int]:
    """``range(n)``, named for readability in experiment definitions."""
    return range(n)
