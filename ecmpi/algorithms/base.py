"""The one step loop every algorithm runs in, and the interface algorithms implement.

An algorithm is a class with a ``step(t)`` method that performs iteration
``t`` (gradients, compression, communication, update) and returns what it
put on the wire; the loop around it (:func:`run`) computes the metrics of
the ``ecmpi.trajectory/1`` schema, logs them, checks stopping rules and
checkpoints. Algorithms never log, print or time themselves.

Contract (all ranks call everything collectively, in the same order):

- ``__init__(ctx)`` takes a :class:`RunContext`; hyperparameters the
  algorithm declares in ``hyperparameters`` arrive resolved in
  ``ctx.params`` (defaults filled in, CLI/TOML overrides applied).
- ``x`` is the current iterate used for the metrics; identical on every
  rank, bit for bit.
- ``step(t)`` returns a :class:`StepCost`: bits this worker sent (up) and
  received (down) in that step, counted from the real payload sizes.
- ``state_dict()``/``load_state_dict()`` hold everything needed to resume
  exactly: iterates, this rank's residuals and shifts, snapshot points.
  Random draws come from :mod:`ecmpi.rng` keyed by ``(seed, t, ...)``, so
  the step counter is the only RNG state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = ["Algorithm", "Hyper", "RunContext", "StepCost"]


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter an algorithm exposes on the command line (``--name``).

    ``default=None`` means "derived from the problem" (documented in ``help``).
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None


@dataclass
class RunContext:
    """Everything an algorithm needs; built by the run loop.

    Attributes:
        problem: the sharded objective (:class:`ecmpi.problems.base.Problem`).
        comm: a communicator owned by ecmpi (duplicate of the user's).
        compressor: the compressor chosen with ``--compressor``.
        collective: ``allgather``, ``sra``, ``ring`` or ``ps``.
        seed: the run's seed; every random draw is keyed by it.
        lr: step size from ``--lr`` (None: the algorithm's default from L, mu).
        batch_size: minibatch rows per worker for stochastic methods.
        x0: the starting point (identical on all ranks).
        params: the algorithm's own hyperparameters, resolved.
    """

    problem: Any
    comm: Any
    compressor: Any
    collective: str = "allgather"
    seed: int = 0
    lr: float | None = None
    batch_size: int = 1
    x0: Any = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepCost:
    """What one step put on the wire for this worker (bits), plus optional extras.

    ``extra`` holds per-step scalars logged as additional trajectory datasets
    (e.g. ``entropy_bits_up`` for ECQ-SGD, ``saturated`` for DQ-GD). The loop
    logs their rank mean; a name containing ``bits`` is summed over steps
    (cumulative, like ``bits_up``), any other is the last step's value.
    Every rank must report the same names from its first step on (or declare
    them in :attr:`Algorithm.extra_metrics`).
    """

    bits_up: int = 0
    bits_down: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class Algorithm(ABC):
    """Base class of every optimizer driver. See the module docstring."""

    name: ClassVar[str]
    #: uses minibatches (``--batch-size``) rather than full local gradients
    stochastic: ClassVar[bool] = False
    #: whether ``--compressor`` is used (False for full-precision baselines)
    compressed: ClassVar[bool] = True
    hyperparameters: ClassVar[tuple[Hyper, ...]] = ()
    #: names of ``StepCost.extra`` entries, for extras that a first step may not report
    extra_metrics: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def resolve_params(self, given: dict[str, Any] | None) -> dict[str, Any]:
        """``given`` with the defaults of :attr:`hyperparameters` filled in.

        Raises:
            ValueError: a name not in :attr:`hyperparameters`, or a value outside
                its ``choices``.
        """
        hypers = {h.name: h for h in self.hyperparameters}
        given = given or {}
        unknown = sorted(set(given) - set(hypers))
        if unknown:
            raise ValueError(
                f"{self.name}: unknown hyperparameter(s) {unknown}; "
                f"known: {', '.join(sorted(hypers))}"
            )
        out = {k: given.get(k, h.default) for k, h in hypers.items()}
        for k, h in hypers.items():
            if h.choices is not None and out[k] not in h.choices:
                raise ValueError(
                    f"{k} must be one of {', '.join(map(str, h.choices))}, got {out[k]!r}"
                )
        return out

    def initial_point(self, dtype: Any = None) -> Any:
        """A fresh copy of ``ctx.x0`` (zeros when None) as a ``(d,)`` array of ``dtype``.

        ``dtype`` defaults to the problem's.

        Raises:
            ValueError: ``x0`` of another shape.
        """
        prob = self.ctx.problem
        dt = prob.dtype if dtype is None else dtype
        x0 = self.ctx.x0 if self.ctx.x0 is not None else np.zeros(prob.d, dtype=dt)
        x = np.array(x0, dtype=dt, copy=True)
        if x.shape != (prob.d,):
            raise ValueError(f"{self.name}: x0 must have shape ({prob.d},), got {x.shape}")
        return x

    @property
    @abstractmethod
    def x(self) -> Any:
        """The current iterate (identical on every rank)."""

    @abstractmethod
    def step(self, t: int) -> StepCost:
        """Run iteration ``t`` (0-based)."""

    def state_dict(self) -> dict[str, Any]:
        """This rank's complete state (arrays and scalars) for a checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`state_dict` returned."""

    def describe(self) -> dict[str, Any]:
        """Resolved hyperparameters (derived defaults included) for the log's ``config``.

        Called on rank 0 only, when the log is created: it must not communicate.
        """
        return dict(self.ctx.params)
