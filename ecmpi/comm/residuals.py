"""Error-feedback state of a compressed collective (worker and server residuals).

Each compression inside a collective may carry a residual: the part of its
input that the compressor dropped, added back before the next compression at
the same place. The update is plain error feedback (``alpha = beta = 1``:
``p = g + h``, ``q = C(p)``, ``h' = p - q``), the recursion defined once in
:mod:`ecmpi.compress.feedback` and computed here through its
:class:`~ecmpi.compress.feedback.ErrorFeedback`. A driver with its own
recursion (ECQ-SGD, the error-compensated family) resets the residuals before
each call and reads the worker residual as the compression error ``r = p - q``
(:func:`ecmpi.compress.feedback.residual_from_error`).

Levels (1-bit Adam, Tang et al. 2021; CGX, Markov et al. 2022):

- ``worker``: length d, the first compression of this rank's own vector
  (allgather, sra, ps); in ``ring`` the slice of chunk ``c`` holds the
  residual of the hop at which this rank compresses the partial sum of ``c``.
- ``server``: the second compression by the owner of a reduced chunk
  (sra and ring: the chunk this rank owns; ps: the whole vector, root only).

Residuals are created as zeros on first use, on the backend and in the dtype
of the reduced vector; a later call with another length or dtype raises.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import array_module, to_host
from ..compress.base import Compressor
from ..compress.feedback import ErrorFeedback, FeedbackState
from ..compress.payload import Payload
from ..rng import SeedLike

__all__ = ["CollectiveFeedback", "compensated_encode"]


class CollectiveFeedback:
    """Mutable residuals of one collective call site (pass as ``feedback=``).

    Use one instance per vector that is reduced repeatedly (e.g. the gradient
    in every step), on every rank.
    """

    def __init__(self) -> None:
        self.residuals: dict[str, Any] = {}

    def residual(self, level: str, n: int, like: Any) -> Any:
        """The residual of ``level`` (length ``n``, ``like``'s dtype and backend), zeros at first.

        Raises:
            ValueError: it exists with another length or dtype.
        """
        h = self.residuals.get(level)
        xp = array_module(like)
        if h is None:
            h = xp.zeros(int(n), dtype=like.dtype)
            self.residuals[level] = h
        elif array_module(h) is not xp:  # restored from a checkpoint onto another backend
            h = xp.asarray(h)
            self.residuals[level] = h
        elif h.shape[0] != n or h.dtype != like.dtype:
            raise ValueError(
                f"error-feedback {level} residual has length {h.shape[0]} and dtype {h.dtype}, "
                f"this call needs length {n} and dtype {like.dtype}; use a separate "
                "CollectiveFeedback per vector (or reset() it)"
            )
        return h

    @property
    def worker(self) -> Any:
        """The worker residual (None before the first call)."""
        return self.residuals.get("worker")

    @property
    def server(self) -> Any:
        """The server residual (None before the first call or on ranks without one)."""
        return self.residuals.get("server")

    def reset(self) -> None:
        """Drop all residuals (they restart from zero)."""
        self.residuals.clear()

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of the residuals, for checkpoints."""
        return {k: to_host(v).copy() for k, v in self.residuals.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore residuals saved by :meth:`state_dict` (moved to the vector's backend on use)."""
        self.residuals = {str(k): np.array(v) for k, v in state.items()}

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={v.shape[0]}x{v.dtype}" for k, v in self.residuals.items())
        return f"CollectiveFeedback({parts})"


def compensated_encode(
    c: Compressor, g: Any, h: Any | None, *, seed: SeedLike, rank: int
) -> Payload:
    """Encode ``g`` with plain error feedback (:class:`ecmpi.compress.feedback.ErrorFeedback`).

    Steps 1 to 4 of :mod:`ecmpi.compress.feedback` with ``alpha = beta = 1``,
    ``h`` (a view into a :class:`CollectiveFeedback` residual) updated in place;
    ``h=None`` encodes ``g`` as is.
    """
    if h is None:
        return c.encode(g, seed=seed, rank=rank)
    payload, _, state = ErrorFeedback(c).update(g, FeedbackState(h), seed=seed, rank=rank)
    h[...] = state.residual
    return payload
