"""Error feedback (error compensation): the one definition of its recursion.

ECQ-SGD's accumulated-error form (Wu, Huang, Huang, Zhang, ICML 2018), of
which plain error feedback (Seide et al. 2014; Karimireddy et al. 2019) is the
case ``alpha = beta = 1``:

    1. p  = g + alpha * h          # compensate with the accumulated error
    2. m  = C.encode(p)            # the message sent
    3. q  = C.decode(m)            # what every receiver sees
    4. h' = beta * h + (g - q)     # with alpha = beta = 1: h' = p - q exactly

Summing step 4 over T steps with alpha = beta = 1 telescopes:
``sum_t q_t + h_T = sum_t g_t``: nothing is lost, only delayed.

Every user of error feedback computes steps 1 and 4 with the functions below,
so each rounds the same float operations in the same order:

- :func:`compensate` is step 1 (``p = g`` when ``alpha = 0``, ``g + h`` when
  ``alpha = 1``);
- :func:`next_residual` is step 4, with an optional ``scale``: the value taken
  as sent is ``v = scale * q`` (a scaled compressor, e.g. an unbiased one used
  as the contraction ``Q/(omega + 1)``), so ``h' = p - v`` when
  ``alpha = beta = 1``;
- :func:`residual_from_error` is step 4 written with the compression error
  ``r = p - q`` that a collective's worker residual holds after one call from
  zero (:class:`ecmpi.CollectiveFeedback`): ``h' = r + (beta - alpha) * h``,
  exactly ``r`` when ``alpha = beta``; with ``scale``: ``v = scale*(p - r)``,
  ``h' = p - v``.

Users: :class:`ErrorFeedback` (below), the collectives' residuals
(:func:`ecmpi.comm.residuals.compensated_encode`), the ECQ-SGD driver
(:mod:`ecmpi.algorithms.ecqsgd`), the error-compensated family's
:class:`ecmpi.algorithms.ec.CompensatedMean` and the GPU's fused
:func:`ecmpi.compress.gpu.ef_encode` (whose CUDA kernel computes steps 1 and 4
op for op, ``kernels/quant.cuh``).

Stability (as reported for ECQ-SGD): ``alpha^2 * gamma + (beta - alpha)^2 < 1``
where ``gamma`` is the quantizer's relative variance (its ``omega``); see
:func:`stability` and :meth:`ErrorFeedback.is_stable`. For an unbiased
compressor, ``alpha = beta = 1`` is stable only when ``omega < 1``; a coarse
quantizer (large ``gamma``) needs ``alpha < 1/sqrt(gamma)``. :func:`auto_alpha`
picks the ``alpha`` that minimises the stability quantity for a given ``beta``.

Plain error feedback needs a contraction (``E||C(x) - x||^2 <= (1 - delta)
||x||^2``); an unbiased compressor with variance factor ``omega`` becomes one
when scaled by ``1/(omega + 1)`` (Stich, Cordonnier, Jaggi 2018; Qian,
Richtárik, Zhang 2021: ``delta = 1/(omega + 1)``). :func:`contraction_scale`
gives that factor (``--ef-scale auto``) for the drivers that use plain error
feedback (``ef-sgd``, the error-compensated family, ``ec-lkatyusha``).

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

__all__ = [
    "EF_SCALE_MODES",
    "ErrorFeedback",
    "FeedbackState",
    "auto_alpha",
    "compensate",
    "contraction_scale",
    "ef_scale_option",
    "next_residual",
    "residual_from_error",
    "stability",
]


def _times(c: float, a: Any) -> Any:
    """``c * a`` with ``c`` rounded to ``a``'s dtype first (NumPy's rule for a Python float)."""
    return a.dtype.type(c) * a


def compensate(g: Any, h: Any, alpha: float = 1.0) -> Any:
    """Step 1: ``p = g + alpha * h`` (``g`` itself when ``alpha = 0``, ``g + h`` when 1)."""
    if alpha == 0.0:
        return g
    return g + h if alpha == 1.0 else g + _times(alpha, h)


def next_residual(
    g: Any, h: Any, p: Any, q: Any, *, alpha: float = 1.0, beta: float = 1.0, scale: float = 1.0
) -> Any:
    """Step 4: ``h' = beta*h + (g - v)``, ``v = scale*q``; ``h' = p - v`` when ``alpha = beta = 1``.

    Args:
        g: the input of step 1.
        h: the residual before the step.
        p: the compensated vector of step 1 (:func:`compensate`).
        q: the decoded message ``C(p)``.
        alpha, beta: the recursion's coefficients.
        scale: factor applied to ``q`` to give the value taken as sent.
    """
    v = q if scale == 1.0 else _times(scale, q)
    if alpha == 1.0 and beta == 1.0:
        return p - v
    return (h if beta == 1.0 else _times(beta, h)) + (g - v)


def residual_from_error(
    r: Any,
    h: Any,
    p: Any = None,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    scale: float = 1.0,
) -> Any:
    """Step 4 from the compression error ``r = p - q`` (a fresh array, never ``r`` itself).

    ``h' = r + (beta - alpha) * h`` (equal to ``beta*h + (g - q)`` since
    ``p = g + alpha*h``), a copy of ``r`` when ``alpha = beta``. With
    ``scale != 1`` (only for ``alpha = beta = 1``; needs ``p``):
    ``v = scale * (p - r)`` and ``h' = p - v`` (:func:`next_residual`).

    Raises:
        ValueError: ``scale != 1`` with other coefficients, or without ``p``.
    """
    if scale == 1.0:
        return r.copy() if alpha == beta else r + _times(beta - alpha, h)
    if p is None or alpha != 1.0 or beta != 1.0:
        raise ValueError("residual_from_error: scale != 1 needs p and alpha = beta = 1")
    return next_residual(None, h, p, p - r, scale=scale)


def stability(omega: float, alpha: float = 1.0, beta: float = 1.0) -> float:
    """ECQ-SGD's stability quantity ``alpha^2 * omega + (beta - alpha)^2`` (stable below 1)."""
    return alpha**2 * omega + (beta - alpha) ** 2


def auto_alpha(omega: float, beta: float = 1.0) -> float:
    """The ``alpha`` minimising :func:`stability` for ``beta``: ``beta / (1 + omega)``.

    The stability quantity is a parabola in ``alpha``, smallest where its
    derivative ``2 alpha omega - 2 (beta - alpha)`` vanishes; the minimum is
    ``stability(omega, beta/(1+omega), beta) = beta^2 omega/(1 + omega)``, so the
    margin below 1 is the largest any alpha leaves, at least ``1/(1 + omega)``
    when ``|beta| <= 1``. A compressor without a finite
    ``omega`` (a biased contraction such as topk or scaled sign) gets
    ``alpha = beta``: plain error feedback, stable for any contraction.

    Raises:
        ValueError: ``omega`` negative or NaN.
    """
    omega = float(omega)
    if not omega >= 0.0:
        raise ValueError(f"omega must be non-negative, got {omega}")
    if math.isinf(omega):
        return float(beta)
    return float(beta) / (1.0 + omega)


#: ``--ef-scale`` keywords; a positive number is also accepted
EF_SCALE_MODES = ("auto", "none")


def ef_scale_option(value: Any) -> str | float:
    """``--ef-scale``'s value: ``auto``, ``none`` or a positive number.

    Raises:
        ValueError: anything else.
    """
    if isinstance(value, str) and value.strip().lower() in EF_SCALE_MODES:
        return value.strip().lower()
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = float("nan")
    if isinstance(value, bool) or not (f > 0 and math.isfinite(f)):
        raise ValueError(f"must be auto, none or a positive number, got {value!r}")
    return f


def contraction_scale(compressor: Compressor, d: int, mode: str | float = "auto") -> float:
    """The factor ``s`` of the value taken as sent, ``v = s * C(p)`` (``--ef-scale``).

    ``auto``: ``1/(omega + 1)`` for an unbiased compressor with a finite
    ``omega(d)`` (then ``s*C`` contracts with ``delta = 1/(omega + 1)``), 1
    for a contraction or the identity; ``none``: 1; a number: itself.
    """
    mode = ef_scale_option(mode)
    if mode == "none":
        return 1.0
    if mode != "auto":
        return float(mode)
    if compressor.is_identity or not compressor.unbiased:
        return 1.0
    om = float(compressor.omega(d))
    return 1.0 / (om + 1.0) if math.isfinite(om) else 1.0


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

    def stability(self, gamma: float) -> float:
        """:func:`stability` with this transformation's coefficients."""
        return stability(gamma, self.alpha, self.beta)

    def is_stable(self, gamma: float) -> bool:
        """ECQ-SGD's stability condition: :meth:`stability` below 1."""
        return self.stability(gamma) < 1.0

    def init(self, like: Any) -> FeedbackState:
        """A zero residual shaped like ``like`` (NumPy or CuPy, float32 or float64)."""
        xp = array_module(like)
        if getattr(like, "ndim", None) != 1:
            raise ValueError(f"ErrorFeedback.init: expected a 1-D array, got {like!r:.60}")
        return FeedbackState(xp.zeros_like(like))

    def compensate(self, g: Any, state: FeedbackState) -> Any:
        """Step 1: ``p = g + alpha * h`` (:func:`compensate`)."""
        return compensate(g, self._residual(g, state), self.alpha)

    def update(
        self, g: Any, state: FeedbackState, *, seed: SeedLike, rank: int = 0
    ) -> tuple[Payload, Any, FeedbackState]:
        """Compress ``g + alpha*h``; return the payload, its decoded value and the new state."""
        h = self._residual(g, state)
        p = compensate(g, h, self.alpha)
        payload = self.compressor.encode(p, seed=seed, rank=rank)
        q = self.compressor.decode(payload)
        new = next_residual(g, h, p, q, alpha=self.alpha, beta=self.beta)
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
