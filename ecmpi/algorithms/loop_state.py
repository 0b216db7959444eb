"""Where a run stands between steps, and how that is written into a checkpoint.

A checkpoint (:func:`ecmpi.log.save_checkpoint`) holds one dict shared by all
ranks and one dict per rank. :class:`LoopState` is the step loop's part of both:

=====================  ========  =====================================================
key                    where     value
=====================  ========  =====================================================
``step``               shared    steps done (int)
``total_bits_up``      shared    bits sent, summed over ranks and steps (exact int)
``total_bits_down``    shared    bits received, summed over ranks and steps (exact int)
``wall_time``          shared    seconds rank 0 spent inside steps (float)
``f0``                 shared    f(x0), the divergence rule's scale (float)
``n_ranks``            shared    the communicator's size (int)
``comm_time``          per rank  this rank's communication seconds so far (float)
``compress_time``      per rank  this rank's encode + decode seconds so far (float)
``extra_cum/<name>``   per rank  running sum of a ``StepCost.extra`` entry named ``*bits*``
``extra_last/<name>``  per rank  the last step's value of any other extra
=====================  ========  =====================================================

The per-rank dict sits under ``"loop"`` of the rank's state, beside ``"alg"``
(the algorithm's ``state_dict()``). The keys are those of every log written so
far, so old logs resume.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoopState"]


@dataclass
class LoopState:
    """The step loop's counters: identical on every rank except the per-rank fields.

    Attributes:
        n_ranks: the communicator's size P.
        step: steps done (including those before a resume).
        total_bits_up: bits sent, summed over ranks and steps (exact).
        total_bits_down: bits received, summed over ranks and steps (exact).
        wall_time: seconds rank 0 spent inside steps.
        f0: f(x0), the loss of the first row (NaN until it is logged).
        skipped: steps undone because of a non-finite iterate (not checkpointed).
        comm_time_before: this rank's communication seconds from before a resume.
        compress_time_before: this rank's encode + decode seconds from before a resume.
        extra_cum: this rank's running sums of extras whose name contains ``bits``.
        extra_last: this rank's last value of every other extra.
    """

    n_ranks: int = 1
    step: int = 0
    total_bits_up: int = 0
    total_bits_down: int = 0
    wall_time: float = 0.0
    f0: float = math.nan
    skipped: int = 0
    comm_time_before: float = 0.0
    compress_time_before: float = 0.0
    extra_cum: dict[str, float] = field(default_factory=dict)
    extra_last: dict[str, float] = field(default_factory=dict)

    @property
    def bits_up(self) -> float:
        """Cumulative bits per worker: ``total_bits_up / P``."""
        return self.total_bits_up / self.n_ranks

    @property
    def bits_down(self) -> float:
        """Cumulative bits per worker: ``total_bits_down / P``."""
        return self.total_bits_down / self.n_ranks

    def record_step(
        self, bits_up: int, bits_down: int, seconds: float, extra: Mapping[str, float]
    ) -> None:
        """Count one step: its bits summed over ranks, rank 0's seconds, this rank's extras.

        An extra whose name contains ``bits`` is summed over steps; any other keeps
        the value of this step.
        """
        self.step += 1
        self.total_bits_up += int(bits_up)
        self.total_bits_down += int(bits_down)
        self.wall_time += seconds
        for name, v in extra.items():
            if "bits" in name:
                self.extra_cum[name] = self.extra_cum.get(name, 0.0) + float(v)
            else:
                self.extra_last[name] = float(v)

    def local_columns(self, comm_seconds: float, compress_seconds: float) -> dict[str, float]:
        """This rank's time and extra columns, before the rank mean.

        Args:
            comm_seconds: the algorithm's ``CommStats.communicate_seconds`` (0 without).
            compress_seconds: its ``encode_seconds + decode_seconds`` (0 without).
        """
        return {
            "comm_time": self.comm_time_before + comm_seconds,
            "compress_time": self.compress_time_before + compress_seconds,
            **self.extra_cum,
            **self.extra_last,
        }

    def to_checkpoint(
        self, comm_seconds: float, compress_seconds: float
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(shared loop dict, this rank's loop dict)`` in the layout of the module docstring.

        Args:
            comm_seconds, compress_seconds: as for :meth:`local_columns`.
        """
        shared = {
            "step": self.step,
            "total_bits_up": self.total_bits_up,
            "total_bits_down": self.total_bits_down,
            "wall_time": self.wall_time,
            "f0": self.f0,
            "n_ranks": self.n_ranks,
        }
        local = {
            "comm_time": self.comm_time_before + comm_seconds,
            "compress_time": self.compress_time_before + compress_seconds,
            "extra_cum": dict(self.extra_cum),
            "extra_last": dict(self.extra_last),
        }
        return shared, local

    @classmethod
    def from_checkpoint(
        cls,
        shared: Mapping[str, Any],
        local: Mapping[str, Any] | None = None,
        *,
        n_ranks: int | None = None,
    ) -> LoopState:
        """The state :meth:`to_checkpoint` wrote (``skipped`` starts again at 0).

        Args:
            shared: the checkpoint's loop dict (``step`` ... ``n_ranks``).
            local: this rank's loop dict; missing entries (an empty extras dict is
                not stored) read as 0 and empty.
            n_ranks: the communicator's size; default ``shared["n_ranks"]``.
        """
        local = local or {}
        return cls(
            n_ranks=int(shared["n_ranks"] if n_ranks is None else n_ranks),
            step=int(shared["step"]),
            total_bits_up=int(shared["total_bits_up"]),
            total_bits_down=int(shared["total_bits_down"]),
            wall_time=float(shared["wall_time"]),
            f0=float(shared["f0"]),
            comm_time_before=float(local.get("comm_time", 0.0)),
            compress_time_before=float(local.get("compress_time", 0.0)),
            extra_cum={k: float(v) for k, v in local.get("extra_cum", {}).items()},
            extra_last={k: float(v) for k, v in local.get("extra_last", {}).items()},
        )
