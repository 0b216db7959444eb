"""When the step loop logs a row and when it stops: pure functions of agreed values.

Every input is identical on every rank (the loop's counters, the flags summed
by its per-step ``Allreduce``, a metrics row computed collectively), so every
rank takes the same decision. Rules, checked after each step in this order:

1. the iterate is non-finite on some rank and ``on_nonfinite="error"``:
   ``failed``/``nonfinite`` (``"skip"``: the loop undoes the step, no stop);
2. at a logged row, the loss is non-finite or
   ``f - f_ref > diverge_factor * (f(x0) - f_ref)`` (``f_ref = f*`` if known,
   else 0): ``diverged``/``diverged``;
3. at a logged row, ``f - f* <= target``: ``completed``/``target``;
4. some rank received SIGTERM/SIGUSR1: ``interrupted``/``signal``;
5. ``bits_up`` per worker reached ``max_bits``: ``completed``/``max_bits``;
6. ``steps`` done: ``completed``/``steps``.

Rules 1-3 end the run at once; after 4-6 the loop still finishes the step's
bookkeeping (progress line, periodic checkpoint; a checkpoint for a signal).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from .loop_state import LoopState

__all__ = ["ON_NONFINITE", "StepFlags", "Stop", "StopRules", "decide_stop", "diverged", "row_due"]

ON_NONFINITE = ("error", "skip")

#: reasons that end the run before the step's progress line and periodic checkpoint
_AT_ONCE = ("nonfinite", "diverged", "target")


class StepFlags(NamedTuple):
    """The per-step flags every rank agrees on (OR over ranks)."""

    signal: bool = False
    nonfinite: bool = False


class Stop(NamedTuple):
    """Why a run ends: ``status`` (the log's) and ``reason`` (its ``stop_reason``)."""

    status: str
    reason: str

    @property
    def at_once(self) -> bool:
        """True when the step's progress line and periodic checkpoint are skipped."""
        return self.reason in _AT_ONCE


#: the stop before any step when the budget is already spent (e.g. a finished resume)
STEPS_DONE = Stop("completed", "steps")


@dataclass(frozen=True)
class StopRules:
    """The stopping options of :func:`ecmpi.algorithms.run`, checked when built.

    Attributes:
        steps: the step budget (total, including steps before a resume).
        target: stop once f - f* <= target at a logged row (None: never).
        max_bits: stop once the per-worker ``bits_up`` reaches it (None: never).
        log_every: steps between logged rows.
        on_nonfinite: ``error`` or ``skip``.
        diverge_factor: the divergence threshold factor.
        f_star: the optimal value, NaN where unknown.

    Raises:
        ValueError: an option out of range.
    """

    steps: int
    target: float | None = None
    max_bits: float | None = None
    log_every: int = 1
    on_nonfinite: str = "error"
    diverge_factor: float = 1e6
    f_star: float = math.nan

    def __post_init__(self) -> None:
        steps, log_every = self.steps, self.log_every
        if int(steps) != steps or steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        if int(log_every) != log_every or log_every < 1:
            raise ValueError(f"log_every must be a positive integer, got {log_every!r}")
        if self.on_nonfinite not in ON_NONFINITE:
            raise ValueError(
                f"on_nonfinite must be one of {ON_NONFINITE}, got {self.on_nonfinite!r}"
            )
        if self.target is not None and not self.target >= 0:
            raise ValueError(f"target must be non-negative, got {self.target!r}")
        if self.max_bits is not None and not self.max_bits > 0:
            raise ValueError(f"max_bits must be positive, got {self.max_bits!r}")
        if not self.diverge_factor > 0:
            raise ValueError(f"diverge_factor must be positive, got {self.diverge_factor!r}")


def _budget_spent(state: LoopState, rules: StopRules) -> bool:
    return rules.max_bits is not None and state.bits_up >= rules.max_bits


def row_due(state: LoopState, flags: StepFlags, rules: StopRules) -> bool:
    """Whether the step just done gets a trajectory row.

    Every ``log_every`` steps, at the last step, and before a stop for a signal
    or the bit budget; never for a step whose non-finite iterate fails the run.
    """
    if flags.nonfinite and rules.on_nonfinite == "error":
        return False
    t = state.step
    return (
        t % rules.log_every == 0 or t >= rules.steps or flags.signal or _budget_spent(state, rules)
    )


def diverged(loss: float, f0: float, rules: StopRules) -> bool:
    """``loss`` non-finite or ``loss - f_ref > diverge_factor * (f0 - f_ref)``.

    ``f_ref = f*`` if known, else 0; the scale ``f0 - f_ref`` is at least
    ``1e-12 * max(1, |f_ref|)``.
    """
    if not math.isfinite(loss):
        return True
    f_ref = rules.f_star if math.isfinite(rules.f_star) else 0.0
    scale = max(f0 - f_ref, 1e-12 * max(1.0, abs(f_ref)))
    return loss - f_ref > rules.diverge_factor * scale


def decide_stop(
    state: LoopState,
    flags: StepFlags,
    row: Mapping[str, float] | None,
    rules: StopRules,
) -> Stop | None:
    """Whether the run stops after the step just counted in ``state`` (module docstring).

    Args:
        state: the loop's counters after the step (``state.step`` steps done).
        flags: the flags agreed for the step.
        row: the step's metrics row (``loss``, ``suboptimality``), None when no
            row was logged at this step.
        rules: the stopping options.

    Returns:
        The :class:`Stop`, or None to go on.
    """
    if flags.nonfinite and rules.on_nonfinite == "error":
        return Stop("failed", "nonfinite")
    if row is not None:
        if diverged(row["loss"], state.f0, rules):
            return Stop("diverged", "diverged")
        if rules.target is not None and row["suboptimality"] <= rules.target:
            return Stop("completed", "target")
    if flags.signal:
        return Stop("interrupted", "signal")
    if _budget_spent(state, rules):
        return Stop("completed", "max_bits")
    if state.step >= rules.steps:
        return STEPS_DONE
    return None
