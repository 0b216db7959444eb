"""Loopless Katyusha (``lkatyusha``) and error compensated loopless Katyusha (``ec-lkatyusha``).

Qian, Richtárik, Zhang, *Error Compensated Distributed SGD Can Be
Accelerated*, NeurIPS 2021 (arXiv 2010.00091), built on loopless Katyusha
(Kovalev, Horváth, Richtárik, *Don't Jump Through Hoops and Remove Those
Loops*, ALT 2020). Problem [paper]: ``min_x (1/n) sum_tau f_tau(x) + psi(x)``
over n nodes (MPI ranks), each f_tau an average of m smooth terms, f
mu-strongly convex; C any contraction. Marks: [paper] from the paper's
abstract and problem statement, [standard] loopless Katyusha, [reconstructed]
our reading of the distributed error-compensated form (the algorithm box
was not consulted).

All ranks hold the same x, y, z, w; node tau holds e_tau = 0. Per step t:

1. ``x = theta1*z + theta2*w + (1 - theta1 - theta2)*y``                      [standard]
2. ``g_tau = grad f_tau,i(x) - grad f_tau,i(w) + G(w)``, i a minibatch of
   ``--batch-size`` local rows (0: the full local gradient), G(w) the
   snapshot gradient (``snapshot=global``: ``grad f(w)``; ``local``: ``grad
   f_tau(w)``)                                                                  [reconstructed]
3. ``p = e_tau + (eta/L)*g_tau``, ``v_tau = C(p)``, ``e_tau = p - v_tau``;
   only v_tau's payload is sent (:func:`ecmpi.allreduce`)                      [reconstructed]
4. ``delta = (1/n) sum_tau v_tau`` (identical on every rank)                   [reconstructed]
5. ``z' = (eta*sigma_f*x + z - delta) / (1 + eta*sigma_f + eta*l2/L)`` with
   ``sigma_f = mu_f/L`` (mu_f: strong convexity of the smooth part; the l2
   term appears only with ``l2_mode=prox``, as the prox of psi)
   [standard, with delta in place of (eta/L)*mean g]
6. ``y' = x + theta1*(z' - z)``; ``z = z'``                                    [standard]
7. With probability p (one coin from :mod:`ecmpi.rng` keyed by
   ``(seed, t)``, the same on every rank, no message): ``w' = y`` (the y
   before step 6), and G(w') is recomputed (locally, plus one full-precision
   mean of the local gradients with ``snapshot=global``)                       [standard]

With C the identity, e_tau stays 0, v_tau = (eta/L) g_tau and the method is
loopless Katyusha on the distributed estimator: ``lkatyusha`` runs exactly
this arithmetic with the ``none`` compressor (bit for bit the same iterates).

Why the reconstruction fits the paper's claims: error feedback is applied to
the scaled estimator exactly as in EC-SGD, so the compressed steps telescope
(``sum_t delta_t + mean e_T = sum_t (eta/L) mean g_t``) and the "virtual"
iterate ``z - mean e`` follows loopless Katyusha with an exact gradient;
with ``snapshot=global`` the messages ``(eta/L) g_tau + e_tau`` vanish at the
optimum (``g_tau -> grad f(x*) = 0``), so the method converges linearly to x*
for any contraction, while the snapshot refresh costs a d-vector with
probability p per round: the expected bits per round are
``bits(C) + p * bits(d floats)``, which is balanced by p proportional to the
compression ratio, the paper's advice. With ``snapshot=local`` no snapshot
message is sent but ``g_tau -> grad f_tau(x*) != 0`` on heterogeneous data,
and the iterates stall at a floor (measured in docs/algorithms/ec-lkatyusha.md).

Defaults (all overridable): ``L`` = the expected smoothness of the
estimator (:func:`ecmpi.algorithms.ec.batch_smoothness`: the problem's L for
full local gradients); ``sigma = mu/L``; ``p = auto``: C's contraction
factor ``delta(d)`` under compression (K/d for TopK; with ``p = 1/m`` the
compressed run makes no progress), ``1/m`` for ``lkatyusha``, with m =
N/(P b) the minibatches in a local pass (p = 1 for full local gradients), or
``p=ratio``: ``p_scale`` times C's compression ratio;
``theta2 = 1/2``; ``theta1 = min(sqrt(2*sigma/(3p)), 1/2)`` (the standard
``min(sqrt(2*m*sigma/3), 1/2)`` at p = 1/m); ``eta = theta2/((1+theta2)*theta1)``;
``snapshot=auto``: global when C compresses, local for the identity (same mean).
An unbiased compressor with variance factor omega is used as the
contraction ``Q/(omega+1)`` (``--ef-scale auto``, shared with ``ef-sgd`` and
the error-compensated family).

Bits: the bytes this rank sent/received in the step's collectives, times 8, counted by
the loop from ``self.stats``.
The logged iterate is y.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ._validate import positive
from .base import Algorithm, Hyper, RunContext, StepCost
from .ec import (
    _PHASE_EC,
    EF_SCALE_HYPERS,
    L2_MODES,
    SNAPSHOT_HYPERS,
    CompensatedMean,
    Snapshot,
    batch_smoothness,
    ef_scale_factor,
    resolve_p,
    resolve_snapshot,
    shared_coin,
)
from .sgd import finite_or_none, minibatch

__all__ = ["ECLKatyusha", "LKatyusha", "katyusha_parameters"]


def katyusha_parameters(
    L: float,
    mu: float,
    p: float,
    *,
    theta1: float | None = None,
    theta2: float | None = None,
    eta: float | None = None,
) -> dict[str, float]:
    """Loopless Katyusha's parameters [standard] (overrides kept as given).

    ``sigma = mu/L``, ``theta2 = 1/2``, ``theta1 = min(sqrt(2 sigma/(3p)), 1/2)``,
    ``eta = theta2/((1+theta2) theta1)``.

    Raises:
        ValueError: non-positive values, or ``theta1 + theta2 > 1``.
    """
    L, p = positive(L, "L"), positive(p, "p")
    if not (math.isfinite(mu) and mu >= 0):
        raise ValueError(f"mu must be a non-negative finite number, got {mu!r}")
    sigma = mu / L
    t2 = 0.5 if theta2 is None else positive(theta2, "theta2")
    if theta1 is None:
        t1 = min(math.sqrt(2.0 * sigma / (3.0 * p)), 0.5)
        if t1 <= 0:
            raise ValueError("theta1 = 0 because mu = 0: give theta1 (and eta) explicitly")
    else:
        t1 = positive(theta1, "theta1")
    if t1 + t2 > 1.0:
        raise ValueError(f"theta1 + theta2 must be <= 1, got {t1} + {t2}")
    e = t2 / ((1.0 + t2) * t1) if eta is None else positive(eta, "eta")
    return {"L": L, "sigma": sigma, "theta1": t1, "theta2": t2, "eta": e, "p": p}


class ECLKatyusha(Algorithm):
    """Error compensated loopless Katyusha. See the module docstring."""

    name: ClassVar[str] = "ec-lkatyusha"
    stochastic: ClassVar[bool] = True
    compressed: ClassVar[bool] = True
    hyperparameters: ClassVar[tuple[Hyper, ...]] = (
        Hyper("theta1", float, None, "momentum weight of z; default min(sqrt(2 sigma/(3p)), 1/2)"),
        Hyper("theta2", float, None, "weight of the snapshot w; default 1/2"),
        Hyper("eta", float, None, "step factor (z step eta/L); default theta2/((1+theta2) theta1)"),
        Hyper(
            "L",
            float,
            None,
            "smoothness in eta/L and sigma = mu/L; default: the expected "
            "smoothness of the minibatch estimator (L for full local gradients)",
        ),
        *SNAPSHOT_HYPERS,
        Hyper(
            "l2_mode",
            str,
            "smooth",
            "l2 inside f (smooth) or through the prox step (prox)",
            choices=L2_MODES,
        ),
        *EF_SCALE_HYPERS,
    )

    def _compressor(self, ctx: RunContext) -> Any:
        from ..compress import compressor as make_compressor

        if ctx.compressor is None:
            raise ValueError(f"{self.name} needs a compressor (e.g. topk:k=1)")
        return make_compressor(ctx.compressor)

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        from ..comm import CommStats

        prob = ctx.problem
        self.params = prm = self.resolve_params(ctx.params)
        self.C = self._compressor(ctx)
        x0 = self.initial_point()
        self.batch = int(ctx.batch_size)
        if ctx.lr is not None:
            raise ValueError(f"{self.name} takes eta and L instead of --lr")
        L = batch_smoothness(prob, self.batch) if prm["L"] is None else positive(prm["L"], "L")
        p = resolve_p(prm["p"], positive(prm["p_scale"], "p_scale"), prob, self.C, self.batch)
        self.hp = katyusha_parameters(
            L, float(prob.mu), p, theta1=prm["theta1"], theta2=prm["theta2"], eta=prm["eta"]
        )
        self.l2_mode = prm["l2_mode"]
        self.l2 = float(getattr(prob, "l2", 0.0)) if self.l2_mode == "prox" else 0.0
        self.sigma_f = (float(prob.mu) - self.l2) / self.hp["L"]
        self.scale = ef_scale_factor(prm, self.C, prob.d)
        self.stats = CommStats()
        self.ec = CompensatedMean(ctx, self.C, x0, self.stats, scale=self.scale)
        self.snapshot_mode = resolve_snapshot(prm["snapshot"], self.C)
        self.y = x0
        self.z = x0.copy()
        self.snapshot = Snapshot(ctx, x0, self.snapshot_mode, self.stats)

    @property
    def x(self) -> np.ndarray:
        return self.y

    def step(self, t: int) -> StepCost:
        ctx, hp = self.ctx, self.hp
        t1, t2, eta, L = hp["theta1"], hp["theta2"], hp["eta"], hp["L"]
        w = self.snapshot.w
        x = t1 * self.z + t2 * w + (1.0 - t1 - t2) * self.y
        idx = minibatch(ctx, t) if self.batch > 0 else None
        g = self.snapshot.estimator(x, idx)
        if self.l2:
            g = g - self.l2 * x
        delta = self.ec((eta / L) * g, (ctx.seed, t, _PHASE_EC))
        es = eta * self.sigma_f
        z_new = (es * x + self.z - delta) / (1.0 + es + eta * self.l2 / L)
        y_old = self.y
        self.y = x + t1 * (z_new - self.z)
        self.z = z_new
        if shared_coin(ctx.seed, t, hp["p"]):
            self.snapshot.refresh(np.array(y_old, copy=True), t)
        return StepCost()  # bits: the loop counts them from self.stats

    def state_dict(self) -> dict[str, Any]:
        return {
            "y": self.y.copy(),
            "z": self.z.copy(),
            "w": self.snapshot.w.copy(),
            "gw": np.array(self.snapshot.g, copy=True),
            "e": self.ec.e.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dt = self.y.dtype
        self.y = np.array(state["y"], dtype=dt, copy=True)
        self.z = np.array(state["z"], dtype=dt, copy=True)
        self.snapshot.w = np.array(state["w"], dtype=dt, copy=True)
        self.snapshot.g = np.array(state["gw"], dtype=dt, copy=True)
        self.ec.e = np.array(state["e"], dtype=dt, copy=True)

    def describe(self) -> dict[str, Any]:
        d = self.ctx.problem.d
        return {
            **self.params,
            **self.hp,
            "snapshot": self.snapshot_mode,
            "ec_scale": self.scale,
            "omega": finite_or_none(self.C.omega(d)),
            "delta": self.C.delta(d),
            "batch_size": self.batch,
            "compressor": self.C.spec,
        }


class LKatyusha(ECLKatyusha):
    """Uncompressed loopless Katyusha: ``ec-lkatyusha`` with the identity compressor."""

    name: ClassVar[str] = "lkatyusha"
    compressed: ClassVar[bool] = False

    def _compressor(self, ctx: RunContext) -> Any:
        from ..compress import compressor as make_compressor

        return make_compressor("none")
