"""The error-compensated family: ``ec-gd``, ``ec-sgd``, ``ec-lsvrg`` and their DIANA variants.

These are the baselines of Qian, Richtárik, Zhang, *Error Compensated
Distributed SGD Can Be Accelerated* (NeurIPS 2021), as defined by Gorbunov,
Kovalev, Makarenko, Richtárik, *Linearly Converging Error Compensated SGD*
(NeurIPS 2020) and by the same group's public code. With P workers, worker
tau's node objective f_tau (:mod:`ecmpi.problems.base`), a contraction C
(``--compressor``), step gamma (``--lr``):

1. Estimator [standard]. ``ec-gd``: ``g_tau = grad f_tau(x)``. ``ec-sgd``: a
   minibatch of ``--batch-size`` local rows (:func:`ecmpi.algorithms.sgd.minibatch`).
   ``ec-lsvrg``: the loopless SVRG estimator (Kovalev, Horváth, Richtárik 2020)
   ``g_tau = grad f_tau,i(x) - grad f_tau,i(w) + G(w)`` with ``G(w)`` the
   snapshot gradient: ``grad f(w)`` (``snapshot=global``: the mean of the local
   full gradients, one full-precision allreduce each time the snapshot moves)
   or ``grad f_tau(w)`` (``snapshot=local``: no message).
2. Error compensation [standard]: ``p = e_tau + gamma*g_tau``, ``v = C(p)``,
   ``e_tau = p - v``, the recursion of :mod:`ecmpi.compress.feedback` with
   ``alpha = beta = 1`` (:class:`CompensatedMean`); only the payload of v
   crosses the network (:func:`ecmpi.allreduce`, any ``--collective``).
3. Update [standard]: ``x <- x - (1/P) sum_tau v_tau``; with ``l2_mode=prox``
   the l2 term is left out of g and applied as ``x <- x / (1 + gamma*l2)``
   (the prox of ``psi = l2/2 ||x||^2``).
4. ``ec-lsvrg`` only: with probability p, ``w <- x`` (the x before step 3); the
   coin is one uniform from :mod:`ecmpi.rng` keyed by ``(seed, COIN_STREAM, t)``,
   so every rank draws the same one without a message; then the snapshot
   gradient at the new w is recomputed locally (and averaged if global).

DIANA variants [standard] (Mishchenko et al. 2019; Gorbunov et al. 2020):
``ec-gd-diana``, ``ec-sgd-diana`` and ``ec-lsvrg-diana`` keep shifts ``h_tau`` (zero at
start) and their mean ``h``, compress ``e_tau + gamma*(g_tau - h_tau + h)``
with C as above, and send a second message ``Delta_tau = Q(g_tau - h_tau)``
with an unbiased compressor Q (``shift_compressor``); then
``h_tau += alpha*Delta_tau`` and ``h += alpha*mean Delta``, with
``alpha = 1/(omega_Q + 1)`` by default (the bound ``alpha <= 1/(omega+1)``).
The shifts learn ``grad f_tau(x*)``, so the compressed vectors vanish at the
optimum even when the workers' data differ.

Heterogeneity: without shifts or a global snapshot, ``ec-gd``/``ec-sgd``
(and ``ec-lsvrg`` with ``snapshot=local``) converge only to a neighbourhood of
x* whose size grows with ``(1/P) sum ||grad f_tau(x*)||^2`` and ``1/delta``;
they converge to x* when every node's gradient vanishes there (e.g. the
``quadratic`` problem, or one worker).

Defaults (all overridable): ``lr`` = 1/L for ``ec-gd`` (the template's step
``1/(L+lambda)``; L includes lambda) and ``1/L_b`` for the stochastic methods,
with ``L_b`` the expected smoothness of a b-row minibatch (:func:`batch_smoothness`);
``p = auto``: under compression C's contraction factor ``delta(d)`` (K/d for
TopK, the paper's "p in proportion to K/d"; ``1/m`` refreshes the snapshot
too rarely for the compressed messages to make progress), ``1/m`` for the
identity, with m = N/(P b) the minibatches in a local pass (1 for full local
gradients); ``p=ratio``: the compression ratio of C, wire bits over raw bits
of a d-vector, times ``p_scale``. C's contraction factor ``delta(d)`` is the
compressor's; an unbiased compressor with variance factor omega (qsgd =
random dithering, unbiased randk) is used as the contraction ``Q/(omega+1)``
(``--ef-scale auto``, :func:`ecmpi.compress.feedback.contraction_scale`, shared
with ``ef-sgd``).

Bits: ``bits_up``/``bits_down`` are the bytes this rank sent/received in all
collectives of the step (compressed vectors, DIANA shifts and, with
``snapshot=global``, the snapshot gradient), times 8.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..compress import feedback as ef
from ..compress.feedback import contraction_scale
from ..rng import derive, uniform
from ._validate import positive
from .base import Algorithm, Hyper, RunContext, StepCost
from .sgd import (
    EF_SCALE_HYPER,
    averaged,
    batch_smoothness,
    default_lr,
    finite_or_none,
    gradient_at,
    local_sample_count,
    minibatch,
)

__all__ = [
    "COIN_STREAM",
    "ECGD",
    "ECLSVRG",
    "ECSGD",
    "EF_SCALE_HYPERS",
    "CompensatedMean",
    "ECGDDiana",
    "ECLSVRGDiana",
    "ECSGDDiana",
    "Snapshot",
    "batch_smoothness",
    "compression_ratio",
    "contraction_scale",
    "ef_scale_factor",
    "resolve_p",
    "shared_coin",
]

#: identifier folded into the snapshot coin's stream (keeps it apart from other draws)
COIN_STREAM = 0x434F494E  # "COIN"
#: seed phases of the collectives within one step
_PHASE_EC, _PHASE_SHIFT, _PHASE_SNAPSHOT = 1, 2, 3
L2_MODES = ("smooth", "prox")
SNAPSHOTS = ("auto", "global", "local")


# -- helpers shared with ecmpi.algorithms.katyusha ----------------------------------------
def shared_coin(seed: int, t: int, p: float) -> bool:
    """The snapshot coin of step t: ``u < p`` with u uniform from ``derive(seed, COIN_STREAM, t)``.

    A pure function of ``(seed, t)``: every rank gets the same answer without a message.
    """
    key, stream = derive(seed, COIN_STREAM, t)
    return bool(uniform(key, stream, 0, 1)[0] < p)


def compression_ratio(compressor: Any, d: int, dtype: Any) -> float:
    """Wire bytes of C for a d-vector over its raw bytes ``d * itemsize`` (headers included)."""
    return compressor.wire_nbytes(d, dtype) / (d * np.dtype(dtype).itemsize)


def ef_scale_factor(params: dict[str, Any], compressor: Any, d: int) -> float:
    """The factor ``s`` of ``v = s*C(p)`` from ``--ef-scale`` (or its former ``ec_scale``).

    :func:`ecmpi.compress.feedback.contraction_scale` of ``params["ef_scale"]``;
    a number given as ``ec_scale`` (the option's former name) takes precedence.
    """
    former = params.get("ec_scale")
    if former is not None:
        return positive(former, "ec_scale")
    return contraction_scale(compressor, d, params["ef_scale"])


def resolve_p(
    value: Any, scale: float, problem: Any, compressor: Any, batch_size: int = 1
) -> float:
    """The snapshot probability: a number in (0, 1], ``auto``, ``1/m``, ``ratio`` or ``delta``.

    ``auto`` (the default): ``delta`` when C compresses, ``1/m`` for the identity.
    ``1/m``: m = (N/P)/b, the minibatches of b rows in a local pass (m = 1, p = 1,
    for full local gradients, ``b <= 0``). ``ratio``: ``scale`` times the
    compression ratio (:func:`compression_ratio`: wire bits over raw bits, headers
    included), capped at 1. ``delta``: ``scale`` times C's contraction factor
    ``delta(d)`` (K/d for TopK: the paper's "p in proportion to K/d"), capped at 1;
    1/m for a compressor that is not a contraction (delta 0).

    Raises:
        ValueError: anything else, or a probability outside (0, 1].
    """
    if value == "auto":
        identity = compressor is None or compressor.is_identity
        return resolve_p("1/m" if identity else "delta", scale, problem, compressor, batch_size)
    if value is None or value == "1/m":
        b = int(batch_size)
        p = 1.0 if b <= 0 else min(1.0, b / local_sample_count(problem))
    elif value in ("ratio", "auto-ratio"):
        p = min(1.0, float(scale) * compression_ratio(compressor, problem.d, problem.dtype))
    elif value == "delta":
        delta = float(compressor.delta(problem.d)) if compressor is not None else 1.0
        if delta > 0:
            p = min(1.0, float(scale) * delta)
        else:
            p = resolve_p("1/m", scale, problem, compressor, batch_size)
    else:
        try:
            p = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"p must be a probability, 'auto', '1/m', 'ratio' or 'delta', got {value!r}"
            ) from None
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must lie in (0, 1], got {p!r} (from {value!r})")
    return p


class CompensatedMean:
    """Error-compensated compressed mean over the ranks (one call site, one residual).

    ``__call__(a, seed)`` computes ``p = a + e``, exchanges C(p) through
    :func:`ecmpi.allreduce` and returns ``(1/P) sum_tau v_tau`` with
    ``v = scale * C(p)``; the residual becomes ``e = p - v`` (the recursion of
    :mod:`ecmpi.compress.feedback` with ``alpha = beta = 1`` and ``scale``).
    The collective's own feedback is reset before every call (``e`` is the
    only compensation), as in :mod:`ecmpi.algorithms.ecqsgd`; ``e`` is computed
    from its worker residual ``r = p - C(p)``
    (:func:`ecmpi.compress.feedback.residual_from_error`).
    ``compensate=False`` sends ``a`` as is (e stays 0).
    """

    def __init__(
        self,
        ctx: RunContext,
        compressor: Any,
        like: np.ndarray,
        stats: Any,
        *,
        scale: float = 1.0,
        compensate: bool = True,
    ):
        from ..comm import CollectiveFeedback

        self.ctx = ctx
        self.compressor = compressor
        self.scale = float(scale)
        self.compensate = bool(compensate)
        self.e = np.zeros_like(like)
        self.feedback = CollectiveFeedback()
        self.stats = stats

    def __call__(self, a: np.ndarray, seed: tuple[int, ...]) -> np.ndarray:
        p = ef.compensate(a, self.e) if self.compensate else a
        self.feedback.reset()
        mean = averaged(self.ctx, p, self.compressor, seed, self.stats, self.feedback)
        if not self.compensate:
            return mean if self.scale == 1.0 else self.scale * mean
        r = self.feedback.worker  # p - C(p)
        self.e = ef.residual_from_error(r, self.e, p, scale=self.scale)
        return mean if self.scale == 1.0 else self.scale * mean


class Snapshot:
    """The snapshot w and its gradient G(w): global ``grad f(w)`` or local ``grad f_tau(w)``."""

    def __init__(self, ctx: RunContext, w: np.ndarray, mode: str, stats: Any):
        self.ctx = ctx
        self.mode = mode
        self.stats = stats
        self.refresh(np.array(w, copy=True), 0)

    def refresh(self, w: np.ndarray, t: int) -> None:
        self.w = w
        g = self.ctx.problem.local_grad(w)
        if self.mode == "global":
            g = averaged(self.ctx, g, "none", (self.ctx.seed, t, _PHASE_SNAPSHOT), self.stats)
        self.g = g

    def estimator(self, x: np.ndarray, idx: Any) -> np.ndarray:
        """``grad f_tau,idx(x) - grad f_tau,idx(w) + G(w)`` (idx None: ``grad f_tau(x) - ...``)."""
        prob = self.ctx.problem
        return gradient_at(prob, x, idx) - gradient_at(prob, self.w, idx) + self.g


def resolve_snapshot(mode: str, compressor: Any) -> str:
    """``auto``: global when the messages are compressed, local for the identity (same mean)."""
    if mode not in SNAPSHOTS:
        raise ValueError(f"snapshot must be one of {', '.join(SNAPSHOTS)}, got {mode!r}")
    if mode == "auto":
        return "local" if compressor.is_identity else "global"
    return mode


#: ``--ef-scale`` and its former name, shared with (EC-)LKatyusha
EF_SCALE_HYPERS = (
    EF_SCALE_HYPER,
    Hyper("ec_scale", float, None, "former name of --ef-scale NUMBER (v = ec_scale*C(p))"),
)
_COMMON = (
    Hyper(
        "l2_mode",
        str,
        "smooth",
        "l2 inside f (smooth) or through the prox step (prox)",
        choices=L2_MODES,
    ),
    *EF_SCALE_HYPERS,
)
#: the loopless snapshot's options, shared with (EC-)LKatyusha
SNAPSHOT_HYPERS = (
    Hyper(
        "p",
        str,
        "auto",
        "snapshot probability: auto = delta under compression, else 1/m. Why: error "
        "feedback passes a gradient through C over about 1/delta rounds, and a snapshot "
        "refreshed more often (p = 1/m = 1 with full local gradients) stops all progress "
        "(docs/algorithms/ec-lkatyusha.md; the paper: p in proportion to K/d). Also: a "
        "number, 1/m (m = N/(P*batch)), ratio (wire/raw bits) or delta (C's contraction "
        "factor, K/d for topk)",
    ),
    Hyper("p_scale", float, 1.0, "p = p_scale * compression ratio (or delta) for p=ratio/delta"),
    Hyper(
        "snapshot",
        str,
        "auto",
        "snapshot gradient: global grad f(w) (full-precision "
        "mean), local grad f_tau(w), auto = global when compressed",
        choices=SNAPSHOTS,
    ),
)
_DIANA = (
    Hyper("alpha", float, None, "shift step; default 1/(omega_Q + 1)"),
    Hyper(
        "shift_compressor",
        str,
        None,
        "unbiased Q of the shift messages; default: "
        "--compressor if unbiased, else qsgd:levels=1,bucket=512",
    ),
)


class _ECBase(Algorithm):
    """Shared body of the family. See the module docstring."""

    name: ClassVar[str] = "ec-gd"
    stochastic: ClassVar[bool] = False
    estimator: ClassVar[str] = "gd"  # gd, sgd or lsvrg
    diana: ClassVar[bool] = False
    hyperparameters: ClassVar[tuple[Hyper, ...]] = _COMMON

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        from ..comm import CommStats
        from ..compress import compressor as make_compressor

        prob = ctx.problem
        self.params = self.resolve_params(ctx.params)
        if ctx.compressor is None:
            raise ValueError(f"{self.name} needs a compressor (e.g. topk:k=1)")
        self.C = make_compressor(ctx.compressor)
        self._x = self.initial_point()
        self.batch = int(ctx.batch_size) if self.estimator != "gd" else 0
        self.lr = default_lr(ctx, self.batch)
        self.l2_mode = self.params["l2_mode"]
        self.l2 = float(getattr(prob, "l2", 0.0)) if self.l2_mode == "prox" else 0.0
        self.scale = ef_scale_factor(self.params, self.C, prob.d)
        self.stats = CommStats()
        self.ec = CompensatedMean(ctx, self.C, self._x, self.stats, scale=self.scale)
        self.snapshot: Snapshot | None = None
        if self.estimator == "lsvrg":
            self.p = resolve_p(
                self.params["p"],
                positive(self.params["p_scale"], "p_scale"),
                prob,
                self.C,
                self.batch,
            )
            self.snapshot_mode = resolve_snapshot(self.params["snapshot"], self.C)
            self.snapshot = Snapshot(ctx, self._x, self.snapshot_mode, self.stats)
        if self.diana:
            self._init_diana()

    def _init_diana(self) -> None:
        from ..compress import compressor as make_compressor

        spec = self.params["shift_compressor"]
        if spec is None:
            om = self.C.omega(self.ctx.problem.d)
            spec = self.C if self.C.unbiased and math.isfinite(om) else "qsgd:levels=1,bucket=512"
        self.Q = make_compressor(spec)
        omega = float(self.Q.omega(self.ctx.problem.d))
        if not (self.Q.unbiased and math.isfinite(omega)):
            raise ValueError(
                f"shift_compressor must be unbiased with a finite omega, got {self.Q.spec!r}"
            )
        a = self.params["alpha"]
        self.alpha = 1.0 / (omega + 1.0) if a is None else positive(a, "alpha")
        self.h_local = np.zeros_like(self._x)
        self.h = np.zeros_like(self._x)
        self.shift = CompensatedMean(self.ctx, self.Q, self._x, self.stats, compensate=False)

    @property
    def x(self) -> np.ndarray:
        return self._x

    def gradient(self, t: int) -> np.ndarray:
        """g_tau at the current x (step 1 of the module docstring), l2 left out in prox mode."""
        idx = minibatch(self.ctx, t) if self.batch > 0 else None
        if self.snapshot is not None:
            g = self.snapshot.estimator(self._x, idx)
        else:
            g = gradient_at(self.ctx.problem, self._x, idx)
        if self.l2:
            g = g - self.l2 * self._x
        return g

    def step(self, t: int) -> StepCost:
        seed = self.ctx.seed
        g = self.gradient(t)
        if self.diana:
            u = g - self.h_local
            msg = self.lr * (u + self.h)
        else:
            msg = self.lr * g
        mean = self.ec(msg, (seed, t, _PHASE_EC))
        if self.diana:
            dmean = self.shift(u, (seed, t, _PHASE_SHIFT))
            own = u - self.shift.feedback.worker  # Q(u) of this worker
            self.h_local = self.h_local + self.alpha * own
            self.h = self.h + self.alpha * dmean
        x_old = self._x
        x = x_old - mean
        if self.l2:
            x = x / (1.0 + self.lr * self.l2)
        self._x = x
        if self.snapshot is not None and shared_coin(seed, t, self.p):
            self.snapshot.refresh(np.array(x_old, copy=True), t)
        return StepCost()  # bits: the loop counts them from self.stats

    def state_dict(self) -> dict[str, Any]:
        s: dict[str, Any] = {"x": self._x.copy(), "e": self.ec.e.copy()}
        if self.snapshot is not None:
            s["w"] = self.snapshot.w.copy()
            s["gw"] = np.array(self.snapshot.g, copy=True)
        if self.diana:
            s["h_local"] = self.h_local.copy()
            s["h"] = self.h.copy()
        return s

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dt = self._x.dtype
        self._x = np.array(state["x"], dtype=dt, copy=True)
        self.ec.e = np.array(state["e"], dtype=dt, copy=True)
        if self.snapshot is not None:
            self.snapshot.w = np.array(state["w"], dtype=dt, copy=True)
            self.snapshot.g = np.array(state["gw"], dtype=dt, copy=True)
        if self.diana:
            self.h_local = np.array(state["h_local"], dtype=dt, copy=True)
            self.h = np.array(state["h"], dtype=dt, copy=True)

    def describe(self) -> dict[str, Any]:
        d = self.ctx.problem.d
        out = {
            **self.params,
            "lr": self.lr,
            "ec_scale": self.scale,
            "omega": finite_or_none(self.C.omega(d)),
            "delta": self.C.delta(d),
            "batch_size": self.batch,
        }
        if self.snapshot is not None:
            out.update(p=self.p, snapshot=self.snapshot_mode)
        if self.diana:
            out.update(
                alpha=self.alpha, shift_compressor=self.Q.spec, omega_shift=float(self.Q.omega(d))
            )
        return out


class ECGD(_ECBase):
    """EC-GD: full local gradients with error compensation. See the module docstring."""

    name: ClassVar[str] = "ec-gd"
    estimator: ClassVar[str] = "gd"
    hyperparameters: ClassVar[tuple[Hyper, ...]] = _COMMON


class ECSGD(_ECBase):
    """EC-SGD: minibatch gradients with error compensation. See the module docstring."""

    name: ClassVar[str] = "ec-sgd"
    stochastic: ClassVar[bool] = True
    estimator: ClassVar[str] = "sgd"
    hyperparameters: ClassVar[tuple[Hyper, ...]] = _COMMON


class ECLSVRG(_ECBase):
    """EC-LSVRG: the loopless SVRG estimator with error compensation. See the module docstring."""

    name: ClassVar[str] = "ec-lsvrg"
    stochastic: ClassVar[bool] = True
    estimator: ClassVar[str] = "lsvrg"
    hyperparameters: ClassVar[tuple[Hyper, ...]] = _COMMON + SNAPSHOT_HYPERS


class ECGDDiana(_ECBase):
    """EC-GD-DIANA: EC-GD with DIANA shifts (full local gradients). See the module docstring."""

    name: ClassVar[str] = "ec-gd-diana"
    estimator: ClassVar[str] = "gd"
    diana: ClassVar[bool] = True
    hyperparameters: ClassVar[tuple[Hyper, ...]] = _COMMON + _DIANA


class ECSGDDiana(_ECBase):
    """EC-SGD-DIANA: EC-SGD with DIANA shifts. See the module docstring."""

    name: ClassVar[str] = "ec-sgd-diana"
    stochastic: ClassVar[bool] = True
    estimator: ClassVar[str] = "sgd"
    diana: ClassVar[bool] = True
    hyperparameters: ClassVar[tuple[Hyper, ...]] = _COMMON + _DIANA


_LSVRG_LOCAL = tuple(
    Hyper(h.name, h.type, "local", h.help, h.choices) if h.name == "snapshot" else h
    for h in SNAPSHOT_HYPERS
)


class ECLSVRGDiana(_ECBase):
    """EC-LSVRG-DIANA: EC-LSVRG with DIANA shifts (local snapshot by default)."""

    name: ClassVar[str] = "ec-lsvrg-diana"
    stochastic: ClassVar[bool] = True
    estimator: ClassVar[str] = "lsvrg"
    diana: ClassVar[bool] = True
    hyperparameters: ClassVar[tuple[Hyper, ...]] = _COMMON + _LSVRG_LOCAL + _DIANA
