"""Epoch-SGD's stagewise step-size schedule (Hazan and Kale, COLT 2011 / JMLR 2014).

Stage ``k = 0, 1, ...`` runs ``T_k`` steps with the step ``eta_k = lr * decay^k``:

- ``T_0`` is given (``length``);
- ``T_k = max(1, round(T_0 * growth^k))`` (the closed form, QESGD and
  ``epoch-sgd``), or, with ``compound=True``,
  ``T_{k+1} = max(1, round(T_k * growth))`` (each stage rounded from the
  previous one: ``--schedule stagewise`` of ``sgd``, ``qsgd`` and ``ef-sgd``).
  The two agree for an integer ``growth`` (the default 2).

The drivers keep their own option names (they are in the logs' configs):
``--stage-length``, ``--stage-growth``, ``--lr-decay`` for ``epoch-sgd`` and
``qesgd``; ``--stage-steps``, ``--stage-growth``, ``--decay`` for the
``stagewise`` schedule of :mod:`ecmpi.algorithms.sgd`. ``names`` gives the
error messages the caller's names.

Tuning: Epoch-SGD halves the step and doubles the stage (``decay = 0.5``,
``growth = 2``); choose ``T_0`` about the number of steps the first step size
needs to reach its noise floor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

__all__ = ["STAGE_NAMES", "StageSchedule"]

#: option names used in error messages (length, decay, growth): QESGD's and epoch-sgd's
STAGE_NAMES = ("stage_length", "lr_decay", "stage_growth")


class StageSchedule:
    """Epoch-SGD stages: ``eta_k = lr * decay^k``, ``T_k = max(1, round(T_0 * growth^k))``.

    Args:
        lr: the first stage's step ``eta_0`` (positive, finite).
        length: ``T_0``, a positive integer.
        decay: step factor per stage, in (0, 1].
        growth: stage length factor per stage, at least 1.
        compound: round each stage's length from the previous one's (see the module docstring).
        names: the caller's option names for length, decay and growth, for error messages.

    Raises:
        ValueError: an argument outside its range.
    """

    def __init__(
        self,
        lr: float,
        length: int,
        decay: float = 0.5,
        growth: float = 2.0,
        *,
        compound: bool = False,
        names: tuple[str, str, str] = STAGE_NAMES,
    ):
        n_length, n_decay, n_growth = names
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be positive and finite, got {lr!r}")
        if int(length) != length or length < 1:
            raise ValueError(f"{n_length} must be a positive integer, got {length!r}")
        if not (0 < decay <= 1):
            raise ValueError(f"{n_decay} must be in (0, 1], got {decay!r}")
        if not (math.isfinite(growth) and growth >= 1):
            raise ValueError(f"{n_growth} must be >= 1, got {growth!r}")
        self.lr, self.length = float(lr), int(length)
        self.decay, self.growth = float(decay), float(growth)
        self.compound = bool(compound)

    def __repr__(self) -> str:
        return (
            f"StageSchedule(lr={self.lr}, length={self.length}, decay={self.decay}, "
            f"growth={self.growth}, compound={self.compound})"
        )

    def lengths(self) -> Iterator[int]:
        """``T_0, T_1, ...`` (endless)."""
        n, k = self.length, 0
        while True:
            yield n
            k += 1
            if self.compound:
                n = max(1, round(n * self.growth))
            else:
                n = max(1, round(self.length * self.growth**k))

    def stage_length(self, k: int) -> int:
        """``T_k``."""
        if k < 0:
            raise ValueError(f"stage must be >= 0, got {k}")
        for i, n in enumerate(self.lengths()):
            if i == k:
                return n
        raise AssertionError("unreachable")  # pragma: no cover

    def locate(self, t: int) -> tuple[int, int]:
        """``(k, j)``: step ``t`` is step ``j`` of stage ``k``."""
        if t < 0:
            raise ValueError(f"step must be >= 0, got {t}")
        for k, n in enumerate(self.lengths()):
            if t < n:
                return k, t
            t -= n
        raise AssertionError("unreachable")  # pragma: no cover

    def eta(self, k: int) -> float:
        """``eta_k``."""
        return self.lr * self.decay**k

    def step_size(self, t: int) -> float:
        """The step at iteration ``t``: ``eta_k`` of the stage ``k`` holding ``t``."""
        return self.eta(self.locate(t)[0])
