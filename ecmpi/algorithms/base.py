"""The interface every algorithm implements for the step loop (:func:`ecmpi.algorithms.run`).

An algorithm is a class with a ``step(t)`` method that performs iteration
``t`` (gradients, compression, communication, update); the loop around it
(:mod:`ecmpi.algorithms.loop`) counts its bits, computes the metrics of the
``ecmpi.trajectory/1`` schema, logs them, checks stopping rules and
checkpoints. Algorithms never log, print or time themselves.

Contract (all ranks call everything collectively, in the same order):

- ``loop_context(ctx)`` (a classmethod) gives the context the loop builds
  the algorithm from; ``__init__(ctx)`` takes that :class:`RunContext`;
  hyperparameters the algorithm declares in ``hyperparameters`` arrive
  resolved in ``ctx.params`` (defaults filled in, CLI/TOML overrides applied).
- ``warm_up()`` runs once before the first step, outside the timed loop.
- ``x`` is the current iterate used for the metrics; identical on every
  rank, bit for bit.
- ``stats`` is the :class:`ecmpi.CommStats` every collective of a step is
  passed to (None: the algorithm communicates nothing the loop should count).
  The loop counts a step's bits from it: ``8 * bytes_sent`` (up) and
  ``8 * bytes_received`` (down) added during the step, the real payload sizes
  (:func:`counted_step`), and logs its seconds as ``comm_time`` and
  ``compress_time``.
- ``step(t)`` returns None or a :class:`StepCost`: extra metrics, and bits
  that replace the count from ``stats`` where the wire is not (only) the
  collectives' payloads (e.g. DQ-GD's ``R`` bits per dimension).
- ``state_dict()``/``load_state_dict()`` hold everything needed to resume
  exactly: iterates, this rank's residuals and shifts, snapshot points.
  Random draws come from :mod:`ecmpi.rng` keyed by ``(seed, t, ...)``, so
  the step counter is the only RNG state.
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..compress.base import Compressor

if TYPE_CHECKING:
    from ..comm.stats import CommStats

__all__ = ["Algorithm", "Hyper", "RunContext", "StepCost", "counted_step"]


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
    """What one step reports beyond its :attr:`Algorithm.stats`: bits, extras.

    ``bits_up``/``bits_down``: the bits this worker sent and received in the
    step; None (the default) lets the loop count them from the algorithm's
    ``stats`` (:func:`counted_step`). Set them where the bits on the wire are
    not the collectives' payload bytes (DQ-GD sends ``floor(d*R)`` bits in
    ``ceil(d*R/8)`` bytes).

    ``extra`` holds per-step scalars logged as additional trajectory datasets
    (e.g. ``entropy_bits_up`` for ECQ-SGD, ``saturated`` for DQ-GD). The loop
    logs their rank mean; a name containing ``bits`` is summed over steps
    (cumulative, like ``bits_up``), any other is the last step's value.
    Every rank must report the same names from its first step on (or declare
    them in :attr:`Algorithm.extra_metrics`).
    """

    bits_up: int | None = None
    bits_down: int | None = None
    extra: dict[str, float] = field(default_factory=dict)


class Algorithm(ABC):
    """Base class of every optimizer driver. See the module docstring."""

    name: ClassVar[str]
    #: uses minibatches (``--batch-size``) rather than full local gradients
    stochastic: ClassVar[bool] = False
    #: whether ``--compressor`` is used (False for full-precision baselines)
    compressed: ClassVar[bool] = True
    #: quantizes by itself (e.g. ``--bits-per-dim``) while logging compressor "none": not a
    #: full-precision baseline (the log's root attribute ``self_quantizing``)
    self_quantizing: ClassVar[bool] = False
    hyperparameters: ClassVar[tuple[Hyper, ...]] = ()
    #: names of ``StepCost.extra`` entries, for extras that a first step may not report
    extra_metrics: ClassVar[tuple[str, ...]] = ()
    #: the accounting every collective of a step is passed to; None: nothing to count
    stats: CommStats | None = None

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    @classmethod
    def loop_context(cls, ctx: RunContext) -> RunContext:
        """The context :func:`ecmpi.algorithms.run` builds this algorithm from.

        The default returns ``ctx`` with a copy of its compressor that passes
        NaN/Inf through (``check_finite=False``): a non-finite gradient on one
        rank then reaches the iterate of every rank, where the loop's non-finite
        rule sees it identically, instead of raising on that rank alone.
        ``ctx`` itself is not changed.
        """
        c = ctx.compressor
        if not (isinstance(c, Compressor) and c.check_finite):
            return ctx
        c = copy.copy(c)
        c.check_finite = False
        return dataclasses.replace(ctx, compressor=c)

    def warm_up(self) -> None:
        """Prepare what the first step would otherwise do once (called before the timed loop).

        The default compiles the kernels of ``ctx.compressor`` for arrays like
        :attr:`x` (:meth:`ecmpi.Compressor.warm_up`), so JIT compilation stays
        out of ``wall_time``. It must not communicate.
        """
        c = self.ctx.compressor
        if isinstance(c, Compressor):
            c.warm_up(self.x)

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
    def step(self, t: int) -> StepCost | None:
        """Run iteration ``t`` (0-based); see :class:`StepCost` for what to return."""

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


def counted_step(alg: Algorithm, t: int) -> StepCost:
    """Run ``alg.step(t)`` and return its cost with the bits filled in.

    Bits the step leaves None are ``8 *`` the bytes ``alg.stats`` recorded as
    sent (``bits_up``) and received (``bits_down``) during the step, the
    difference of its totals (0 without ``stats``); bits the step sets are kept.
    """
    st = alg.stats
    sent, received = (st.bytes_sent, st.bytes_received) if st is not None else (0, 0)
    cost = alg.step(t)
    if cost is None:
        cost = StepCost()
    if st is not None:
        sent, received = st.bytes_sent - sent, st.bytes_received - received
    return StepCost(
        bits_up=8 * sent if cost.bits_up is None else cost.bits_up,
        bits_down=8 * received if cost.bits_down is None else cost.bits_down,
        extra=cost.extra,
    )
