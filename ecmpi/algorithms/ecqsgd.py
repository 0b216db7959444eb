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
6. ``w <- w - (lr/P) * sum_p q_p``; every rank holds the same ``w``.     [paper]

Steps 3 and 4 are the error-feedback recursion of
:mod:`ecmpi.compress.feedback`, computed with its functions.

With ``alpha = beta = 1`` this is plain error feedback; ``alpha = 0, beta = 0``
is QSGD. :meth:`ECQSGD.describe` logs the left-hand side of the stability
condition (:func:`ecmpi.compress.feedback.stability`, with the compressor's
``omega``). Tuning: keep ``beta`` at or slightly below ``alpha``; with a
coarse quantizer (large omega) lower ``alpha`` so that ``alpha^2*omega < 1``.

Units of ``h`` (``--ef-scale``): ``grad`` (default, the paper's form above)
accumulates gradient errors; ``step`` quantizes ``lr*g + alpha*h`` and
applies ``w <- w - (1/P) sum q``, the convention of ``ef-sgd``
(``p = lr*g + e``), with which ``alpha = beta = 1`` reproduces ``ef-sgd``
bit for bit. With a constant step both are the same method.

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
from typing import Any, ClassVar

import numpy as np

from ..comm import CollectiveFeedback, CommStats
from ..comm import allgather as _allgather
from ..comm import ps as _ps
from ..compress.entropy import CODERS, coded_bits
from ..compress.feedback import compensate, residual_from_error, stability
from ._validate import finite
from .base import Algorithm, Hyper, RunContext, StepCost
from .sgd import averaged, default_lr, minibatch_gradient

__all__ = ["ECQSGD"]

#: the seed phase each collective uses for a worker's whole-vector encode
_PHASE = {"allgather": _allgather.PHASE, "ps": _ps.PHASE}


class ECQSGD(Algorithm):
    """Error compensated quantized SGD. See the module docstring."""

    name: ClassVar[str] = "ecq-sgd"
    stochastic: ClassVar[bool] = True
    compressed: ClassVar[bool] = True
    hyperparameters: ClassVar[tuple[Hyper, ...]] = (
        Hyper("alpha", float, 1.0, "compensation weight: q = Q(g + alpha*h)"),
        Hyper("beta", float, 1.0, "error decay: h <- beta*h + (g - q)"),
        Hyper(
            "ef_scale",
            str,
            "grad",
            "units of h: grad (paper: w -= lr*mean q) or step (Q(lr*g + alpha*h), as ef-sgd)",
            choices=("grad", "step"),
        ),
        Hyper(
            "coder",
            str,
            "entropy",
            "entropy-coded size logged as entropy_bits_up: entropy, huffman or off",
            choices=(*CODERS, "off"),
        ),
    )

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        p = self.resolve_params(ctx.params)
        self.alpha = finite(p["alpha"], "alpha")
        self.beta = finite(p["beta"], "beta")
        self.ef_scale = p["ef_scale"]
        self.coder = p["coder"]
        if ctx.compressor is None:
            raise ValueError(f"{self.name} needs a compressor (e.g. qsgd:levels=4,norm=l2)")
        self.lr = default_lr(ctx)
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
        if self.ef_scale == "step":
            g = self.lr * g
        p = compensate(g, self.h, self.alpha)
        self.feedback.reset()
        mean = averaged(ctx, p, ctx.compressor, (ctx.seed, t), self.stats, self.feedback)
        r = self.feedback.worker  # p - q_p, from the collective's worker level
        self.h = residual_from_error(r, self.h, alpha=self.alpha, beta=self.beta)
        if self.ef_scale == "step":
            self._w -= mean
        else:
            self._w -= self.lr * mean
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
        omega = self.ctx.compressor.omega(self.ctx.problem.d)
        stab = stability(omega, self.alpha, self.beta)
        return {
            **self.ctx.params,
            "alpha": self.alpha,
            "beta": self.beta,
            "ef_scale": self.ef_scale,
            "coder": self.coder,
            "lr": self.lr,
            "stability": stab if math.isfinite(stab) else None,
        }
