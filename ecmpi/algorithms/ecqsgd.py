"""ECQ-SGD: error compensated quantized SGD (Wu, Huang, Huang, Zhang, ICML 2018).

Every worker keeps an accumulated quantization error ``h`` and folds a
fraction of it into the next message, so that the quantization errors of
successive steps cancel instead of adding up:

1. ``h_p = 0`` on every worker ``p``.                                   [paper]
2. ``g_p`` = minibatch gradient of worker p's shard at ``w``.            [paper]
3. ``q_p = Q(g_p + alpha*h_p)`` with a bucketed stochastic quantizer
   (``--compressor qsgd:levels=s,bucket=b,norm=l2|linf``).               [paper]
4. ``h_p <- beta*h_p + (g_p - q_p)``.                                    [paper]
5. Exchange the packed ``q_p`` (``--collective allgather`` by default).  [paper]
6. ``w <- w - (eta_t/P) * sum_p q_p``; every rank holds the same ``w``.  [paper]

The step ``eta_t`` follows ``--schedule`` (``constant``: ``lr``; ``1/t``:
``lr / (1 + t/t0)``; ``stagewise``), the schedules of ``sgd``
(:func:`ecmpi.algorithms.sgd.step_size`). At a constant step the compensated
quantization noise leaves an ``O(lr^2)`` excess over SGD's ``O(lr)`` floor
(docs/algorithms/ecq-sgd.md); a decaying step shrinks it faster than the floor.

Steps 3 and 4 are the error-feedback recursion of
:mod:`ecmpi.compress.feedback`, computed with its functions.

With ``alpha = beta = 1`` this is plain error feedback; ``alpha = 0, beta = 0``
is QSGD. Stability: ``alpha^2*omega + (beta - alpha)^2 < 1``
(:func:`ecmpi.compress.feedback.stability`, with the compressor's
``omega(d)``); plain error feedback is unstable once ``omega >= 1`` (e.g. one
l2 bucket of 256 entries at 4 levels: omega = 4). ``--alpha auto`` (the
default) takes the alpha that minimises the stability quantity for the given
``beta`` (:func:`ecmpi.compress.feedback.auto_alpha`: ``beta/(1 + omega)``,
``alpha = beta`` for a biased contraction); a user-set alpha that violates the
condition gets a warning on rank 0 naming the bound. :meth:`ECQSGD.describe`
logs the chosen alpha, omega and the stability quantity. Tuning: keep
``beta`` at most 1 (then ``alpha = auto`` is always stable).

Units of ``h`` (``--residual-units``): ``grad`` (default, the paper's form
above) accumulates gradient errors; ``step`` quantizes ``eta_t*g + alpha*h`` and
applies ``w <- w - (1/P) sum q``, the convention of ``ef-sgd``
(``p = lr*g + e``), with which ``alpha = beta = 1`` and ``ef-sgd --ef-scale
none`` agree bit for bit. With a constant step both are the same method.
(``--ef-scale grad|step`` is this option's former name, still accepted; it
is unrelated to ``ef-sgd``'s ``--ef-scale auto|none``.)

Exchange: ``(1/P) sum_p q_p`` goes through :func:`ecmpi.allreduce` with any
``--collective``, which reports the worker-level quantization error
``r_p = (g_p + alpha*h_p) - q_p`` through a :class:`ecmpi.CollectiveFeedback`
that is reset before every call, so the collective's own error feedback is
off and ``h`` is the only compensation. Step 4 is computed from ``r_p``
(:func:`ecmpi.compress.feedback.residual_from_error`). With ``allgather``
and ``ps``, ``q_p`` is this worker's whole quantized vector; with ``sra`` and
``ring`` it is what this rank quantized inside the collective (its chunks,
resp. its hops' partial sums), and the collective re-compresses the partial
sums without compensation.

Bits: ``bits_up``/``bits_down`` are the bytes this rank sent/received in the
collective (``CommStats.last``), times 8, as for ``qsgd`` and ``ef-sgd``.
``entropy_bits_up`` (``--coder entropy|huffman|off``) is ``bits_up`` scaled by
the ratio of the entropy-coded to the fixed-width size
(:mod:`ecmpi.compress.entropy`) of this worker's quantized vector; with
``allgather`` and ``ps`` that vector is re-encoded with the collective's own
seed, i.e. it is exactly the payload sent; with ``sra``/``ring`` it is an
independent draw of the same quantizer on the same vector.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import numpy as np

from ..comm import CollectiveFeedback, CommStats
from ..comm import allgather as _allgather
from ..comm import ps as _ps
from ..compress.entropy import CODERS, coded_bits
from ..compress.feedback import (
    auto_alpha,
    compensate,
    residual_from_error,
    stability,
)
from ._validate import finite
from .base import Algorithm, Hyper, RunContext, StepCost
from .sgd import (
    SCHEDULE_HYPERS,
    averaged,
    check_schedule,
    default_lr,
    finite_or_none,
    minibatch_gradient,
    step_size,
)

__all__ = ["ECQSGD", "alpha_option", "resolve_alpha"]

RESIDUAL_UNITS = ("grad", "step")


def alpha_option(value: Any) -> str | float:
    """``--alpha``'s value: ``auto`` or a finite number."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    return finite(value, "alpha")


def resolve_alpha(value: str | float, omega: float, beta: float) -> tuple[float, str | None]:
    """``(alpha, warning)``: ``auto`` -> :func:`ecmpi.compress.feedback.auto_alpha`.

    The warning (None when there is nothing to say) names the bound
    ``alpha^2*omega + (beta - alpha)^2 < 1`` when a user-set alpha violates it,
    or when no alpha satisfies it (``beta^2 >= (1 + omega)/omega``).
    """
    auto = value == "auto"
    alpha = auto_alpha(omega, beta) if auto else float(value)
    stab = stability(omega, alpha, beta)
    if not (math.isfinite(stab) and stab >= 1.0):
        return alpha, None
    bound = "alpha^2*omega + (beta - alpha)^2 < 1"
    if auto:
        return alpha, (
            f"ecq-sgd: no alpha satisfies the stability condition {bound} for beta={beta} "
            f"and omega={omega:.4g}: the best, alpha={alpha:.4g}, gives {stab:.4g}; "
            "lower beta (beta^2 < (1 + omega)/omega)"
        )
    return alpha, (
        f"ecq-sgd: alpha={alpha:g}, beta={beta:g} violate the stability condition {bound}: "
        f"{stab:.4g} >= 1 with omega={omega:.4g}; error feedback may diverge "
        f"(--alpha auto picks {auto_alpha(omega, beta):.4g})"
    )


#: the seed phase each collective uses for a worker's whole-vector encode
_PHASE = {"allgather": _allgather.PHASE, "ps": _ps.PHASE}


class ECQSGD(Algorithm):
    """Error compensated quantized SGD. See the module docstring."""

    name: ClassVar[str] = "ecq-sgd"
    stochastic: ClassVar[bool] = True
    compressed: ClassVar[bool] = True
    hyperparameters: ClassVar[tuple[Hyper, ...]] = (
        Hyper(
            "alpha",
            alpha_option,
            "auto",
            "compensation weight: q = Q(g + alpha*h); auto = beta/(1 + omega), the minimiser of "
            "the stability quantity alpha^2*omega + (beta - alpha)^2 (alpha = beta for a biased "
            "contraction)",
        ),
        Hyper("beta", float, 1.0, "error decay: h <- beta*h + (g - q)"),
        Hyper(
            "residual_units",
            str,
            "grad",
            "units of h: grad (paper: w -= lr*mean q) or step (Q(lr*g + alpha*h), as ef-sgd)",
            choices=RESIDUAL_UNITS,
        ),
        Hyper("ef_scale", str, None, "former name of --residual-units (grad or step)"),
        Hyper(
            "coder",
            str,
            "entropy",
            "entropy-coded size logged as entropy_bits_up: entropy, huffman or off",
            choices=(*CODERS, "off"),
        ),
        *SCHEDULE_HYPERS,
    )

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        p = self.resolve_params(ctx.params)
        if ctx.compressor is None:
            raise ValueError(f"{self.name} needs a compressor (e.g. qsgd:levels=4,norm=l2)")
        self.beta = finite(p["beta"], "beta")
        self.omega = float(ctx.compressor.omega(ctx.problem.d))
        self.alpha_option = alpha_option(p["alpha"])
        self.alpha, warning = resolve_alpha(self.alpha_option, self.omega, self.beta)
        if warning is not None and ctx.comm.Get_rank() == 0:
            warnings.warn(warning, RuntimeWarning, stacklevel=2)
        self.residual_units = _residual_units(p["residual_units"], p["ef_scale"])
        self.coder = p["coder"]
        self.lr = default_lr(ctx, ctx.batch_size)
        self.params = p
        check_schedule(self.lr, p)
        self._w = self.initial_point()
        self.h = np.zeros_like(self._w)
        self.rank = ctx.comm.Get_rank()
        self.feedback = CollectiveFeedback()
        self.stats = CommStats()

    @property
    def x(self) -> np.ndarray:
        return self._w

    def step(self, t: int) -> StepCost:
        ctx = self.ctx
        g = minibatch_gradient(ctx, self._w, t)
        eta = step_size(self.lr, t, self.params["schedule"], self.params)
        if self.residual_units == "step":
            g = eta * g
        p = compensate(g, self.h, self.alpha)
        self.feedback.reset()
        mean = averaged(ctx, p, ctx.compressor, (ctx.seed, t), self.stats, self.feedback)
        r = self.feedback.worker  # p - q_p, from the collective's worker level
        self.h = residual_from_error(r, self.h, alpha=self.alpha, beta=self.beta)
        if self.residual_units == "step":
            self._w -= mean
        else:
            self._w -= eta * mean
        cost = StepCost()  # bits: the loop counts them from self.stats
        if self.coder != "off":
            phase = _PHASE.get(ctx.collective, _allgather.PHASE)
            pl = ctx.compressor.encode(p, seed=(ctx.seed, t, phase, 0), rank=self.rank)
            cost.extra["entropy_bits_up"] = (
                8 * self.stats.last.bytes_sent * coded_bits(pl, self.coder) / (8 * pl.nbytes)
            )
        return cost

    def state_dict(self) -> dict[str, Any]:
        return {"w": self._w.copy(), "h": self.h.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._w = np.array(state["w"], dtype=self._w.dtype, copy=True)
        self.h = np.array(state["h"], dtype=self._w.dtype, copy=True)

    def describe(self) -> dict[str, Any]:
        stab = stability(self.omega, self.alpha, self.beta)
        out = {k: v for k, v in self.ctx.params.items() if k != "ef_scale"}
        return {
            **out,
            "alpha": self.alpha,
            "alpha_option": self.alpha_option,
            "beta": self.beta,
            "residual_units": self.residual_units,
            "coder": self.coder,
            "lr": self.lr,
            "omega": finite_or_none(self.omega),
            "stability": finite_or_none(stab),
            "stability_margin": finite_or_none(1.0 - stab),
        }


def _residual_units(units: str, former: str | None) -> str:
    """``--residual-units``, or its former name ``--ef-scale`` (grad or step) when given."""
    if former is None:
        return units
    if former not in RESIDUAL_UNITS:
        raise ValueError(
            f"ecq-sgd: --ef-scale (the former name of --residual-units) must be grad or step, "
            f"got {former!r}"
        )
    return former
