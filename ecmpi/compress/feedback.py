"""Error feedback (error compensation) as an optax-style transformation.

ECQ-SGD's accumulated-error form (Wu, Huang, Huang, Zhang, ICML 2018), of
which plain error feedback (Seide et al. 2014; Karimireddy et al. 2019) is the
case ``alpha = beta = 1``:

    1. p  = g + alpha * h          # compensate with the accumulated error
    2. m  = C.encode(p)            # the message sent
    3. q  = C.decode(m)            # what every receiver sees
    4. h' = beta * h + (g - q)     # with alpha = beta = 1: h' = p - q exactly

Summing step 4 over T steps with alpha = beta = 1 telescopes:
``sum_t q_t + h_T = sum_t g_t``: nothing is lost, only delayed.

Stability (as reported for ECQ-SGD): ``alpha^2 * gamma + (beta - alpha)^2 < 1``
where ``gamma`` is the quantizer's relative variance (its ``omega``); see
:meth:`ErrorFeedback.is_stable`. Tuning: ``alpha = beta = 1`` is the safe
default; a coarse quantizer (large ``gamma``) needs ``alpha < 1/sqrt(gamma)``.

A two-level scheme (worker residual, then a server residual on the chunk a
rank owns) uses one :class:`ErrorFeedback` state per level; the server's state
simply has the chunk's length.

Usage::

    ef = ErrorFeedback(ecmpi.compressor("qsgd:levels=1"))
    state = ef.init(x)
    payload, q, state = ef.update(grad, state, seed=(seed, step), rank=rank)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from .._backend import array_module
from ..rng import SeedLike
from .base import Compressor
from .base import compressor as make_compressor
from .payload import Payload

__all__ = ["ErrorFeedback", "FeedbackState"]


class FeedbackState(NamedTuple):
    """The accumulated error ``h`` (same shape, dtype and backend as the gradient)."""

    residual: Any


def _coef(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"ErrorFeedback: {name} must be a number, got {value!r}") from None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"ErrorFeedback: {name} must be finite, got {value}")
    return value


class ErrorFeedback:
    """``init(like) -> state``, ``update(g, state, seed=..., rank=...) -> (payload, q, state)``.

    Args:
        compressor: a :class:`Compressor` or a spec string such as ``"topk:ratio=0.01"``.
        alpha: weight of the accumulated error added before compressing.
        beta: decay of the accumulated error.
    """

    def __init__(self, compressor: Compressor | str, alpha: float = 1.0, beta: float = 1.0):
        self.compressor = make_compressor(compressor)
        self.alpha = _coef("alpha", alpha)
        self.beta = _coef("beta", beta)

    def __repr__(self) -> str:
        return f"ErrorFeedback({self.compressor!r}, alpha={self.alpha}, beta={self.beta})"

    @property
    def is_plain(self) -> bool:
        """True for plain error feedback (``alpha = beta = 1``)."""
        return self.alpha == 1.0 and self.beta == 1.0

    def is_stable(self, gamma: float) -> bool:
        """ECQ-SGD's condition ``alpha^2 * gamma + (beta - alpha)^2 < 1``."""
        return self.alpha**2 * gamma + (self.beta - self.alpha) ** 2 < 1.0

    def init(self, like: Any) -> FeedbackState:
        """A zero residual shaped like ``like`` (NumPy or CuPy, float32 or float64)."""
        xp = array_module(like)
        if getattr(like, "ndim", None) != 1:
            raise ValueError(f"ErrorFeedback.init: expected a 1-D array, got {like!r:.60}")
        return FeedbackState(xp.zeros_like(like))

    def compensate(self, g: Any, state: FeedbackState) -> Any:
        """Step 1: ``p = g + alpha * h``."""
        h = self._residual(g, state)
        return g + h if self.alpha == 1.0 else g + self.alpha * h

    def update(
        self, g: Any, state: FeedbackState, *, seed: SeedLike, rank: int = 0
    ) -> tuple[Payload, Any, FeedbackState]:
        """Compress ``g + alpha*h``; return the payload, its decoded value and the new state."""
        h = self._residual(g, state)
        p = self.compensate(g, state)
        payload = self.compressor.encode(p, seed=seed, rank=rank)
        q = self.compressor.decode(payload)
        if self.is_plain:
            new = p - q
        else:
            new = (h if self.beta == 1.0 else self.beta * h) + (g - q)
        return payload, q, FeedbackState(new)

    @staticmethod
    def _residual(g: Any, state: FeedbackState) -> Any:
        if not isinstance(state, FeedbackState):
            raise TypeError(
                f"ErrorFeedback: state must be a FeedbackState, got {type(state).__name__}"
            )
        h = state.residual
        if h.shape != g.shape or h.dtype != g.dtype:
            raise ValueError(
                f"ErrorFeedback: residual {h.shape} {h.dtype} does not match "
                f"gradient {g.shape} {g.dtype}"
            )
        if type(h) is not type(g):
            raise TypeError("ErrorFeedback: residual and gradient live on different backends")
        return h
