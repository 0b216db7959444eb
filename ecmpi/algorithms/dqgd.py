"""DQ-GD, DQ-HB, DQ-NAG and naive quantized GD (Lin, Kostina, Hassibi, arXiv 2002.02508).

Differentially quantized gradient descent sends ``R`` bits per dimension per
iteration and still converges linearly at ``max(sigma, rho*2^-R)``, where
``sigma = (kappa-1)/(kappa+1)`` is the rate of exact GD with step
``2/(L+mu)`` and ``rho`` the covering efficiency of the quantizer; the paper
shows no method of this class beats ``max(sigma, 2^-R)``. Naive quantized GD
only reaches ``sigma + rho*2^-R``.

DQ-GD, worker ``p`` of ``P`` (``x_hat = x0``, ``e_p = 0`` known to all):

1. ``z_p = x_hat + eta*e_p``; for ``P = 1`` this is exactly the GD iterate
   from ``x0`` (``z_{t+1} = z_t - eta*grad f(z_t)``).                     [paper]
2. ``u_p = grad f_p(z_p) - e_p``.                                         [paper]
3. ``r_t = L*D*sigma^t + G + eps*r_{t-1}`` (``r_{-1} = 0``): a range fixed in
   advance, so nothing but the codes is sent.                              [paper]
4. ``q_p = Q_{R, r_t}(u_p)``, the uniform quantizer of
   :mod:`ecmpi.compress.uniform`; ``e_p = q_p - u_p``.                     [paper]
5. Exchange the packed codes (allgather of ``ceil(d*R/8)`` bytes, no header:
   the range, widths and length are known to every rank).                  [standard]
6. ``x_hat = x_hat - eta * (1/P) sum_p q_p`` (every rank decodes every
   worker's codes in rank order, so ``x_hat`` is identical bit for bit).  [paper]

Naive ``qgd``: ``q_p = Q_{R, r_t}(grad f_p(x_hat))`` with
``r_t = L*D*a^t + G``, ``x_hat = x_hat - eta*(1/P) sum_p q_p``.            [paper]
Three more honest forms of the naive baseline: ``--qgd-range fixed``, the
range ``r = L*D + G`` fixed from the theory for every step (no schedule),
and ``--send-scale``, which sends ``float32(||g||_inf)`` (32 bits) per step.

**Why this range covers the worst case** (``P = 1``, ``G = 0``). With
``||z_t - x*|| <= D*sigma^t``: ``||grad f(z_t)||_2 <= L*D*sigma^t``, and the
previous error obeys ``||e_t||_2 <= eps*r_{t-1}`` with
``eps = sqrt(sum_i 4^-b_i)`` (= ``rho*2^-R``, ``rho = sqrt(d)``: the cube
``[-r, r]^d`` covers the l2 ball of radius ``r`` with per-coordinate error
``r*2^-R``). So ``||u_t||_inf <= ||u_t||_2 <= r_t`` and by induction no
coordinate ever saturates; ``r_t = O(max(sigma, eps)^t)`` (times ``t`` when
equal) and ``||x_hat_t - x*|| <= D*sigma^t + eta*eps*r_{t-1}``.
``--range-norm linf`` [reconstructed] runs the same induction per coordinate:
``|u_{t,i}| <= L*D*sigma^t + G + 2^-b_i * r_{t-1,i}``, so the range decays at
``max(sigma, 2^-R)``, the rate function itself (``rho`` only multiplies the
constant).

Naive ``qgd``: ``||x_{t+1} - x*|| <= sigma*||x_t - x*|| + eta*eps*r_t`` with
``r_t >= L*||x_t - x*||``, so the induction needs ``a >= sigma + eta*L*eps``
(``eta*L = 1 + sigma`` at the default step). ``--qgd-range paper`` uses
``a = sigma + eps`` (the paper's rate, ALGORITHMS.md), ``safe`` uses
``a = sigma + eta*L*eps``. With the paper's range saturation is possible in
the worst case; it is counted and logged. Both schedules force the range,
and so the rate, to shrink as the theory says.

``fixed`` keeps ``r = L*D`` (``+ G``) at every step, the range a quantizer
without side information must cover from the start. If
``sigma + eta*L*eps <= 1`` then ``||x_t - x*|| <= D`` for all ``t`` by
induction, so nothing saturates, and
``||x_t - x*|| <= sigma^t*D + eta*eps*r*(1 - sigma^t)/(1 - sigma)``: linear
at ``sigma`` down to a floor ``eta*eps*L*D/(1 - sigma)``, no convergence
below it (``floor`` in :meth:`describe`).

**P workers.** Each worker quantizes its own local gradient with its own
error ``e_p``. ``G = max_p ||grad f_p(x*)||_2`` (computed once from the
problem; 0 for one worker or identical shards) keeps the range valid when
local gradients do not vanish at ``x*``; then the range, and the error,
converge to a floor ``~G/(1-eps)`` and the method to a neighbourhood of
``x*`` of radius ``O(eta*eps*G/(1-sigma))``. The worst-case guarantee above
is for ``P = 1`` (and identical shards); for ``P > 1`` saturation is counted.

**DQ-HB / DQ-NAG** (``dqhb``, ``dqnag``, the journal version's momentum
methods) [reconstructed]: the decoder runs heavy ball or Nesterov on
``x_hat``; the worker quantizes ``u = grad f_p(point) - (1+beta) e_{t-1} +
beta e_{t-2}``, which keeps ``x_hat - z = -eta*e`` with ``z`` the exact
iterate (see :class:`DQHB`, :class:`DQNAG`).

Bits: ``bits_up = floor(d*R)`` per worker per step (``+ 32`` with
``--send-scale``, which sends ``float32(||u||_inf)`` instead of the recursion);
MPI moves ``ceil(bits_up/8)`` bytes, at most 7 bits of padding.
``bits_down`` is what the allgather delivers, ``(P-1)*bits_up``.
Extra trajectory datasets: ``saturated`` (coordinates out of range, summed
over workers; a scalar allreduce for monitoring, not counted in the bits)
and ``range`` (``max_i r_{t,i}``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..compress.uniform import (
    bit_widths,
    dequantize,
    l2_error_factor,
    linf_scale,
    pack_codes,
    quantize,
    total_bits,
    unpack_codes,
)
from .base import Algorithm, Hyper, RunContext, StepCost

__all__ = [
    "DQGD",
    "DQHB",
    "DQNAG",
    "QGD",
    "gd_contraction",
    "momentum_defaults",
    "momentum_envelope",
    "momentum_rate",
    "rate_dqgd",
    "rate_qgd",
]


def gd_contraction(L: float, mu: float, eta: float | None = None) -> float:
    """``sigma = max(|1 - eta*L|, |1 - eta*mu|)``; ``(kappa-1)/(kappa+1)`` at ``eta = 2/(L+mu)``."""
    if not (L > 0 and mu > 0 and L >= mu):
        raise ValueError(f"need L >= mu > 0, got L={L}, mu={mu}")
    if eta is None:
        return (L - mu) / (L + mu)
    if not eta > 0:
        raise ValueError(f"step size must be positive, got {eta}")
    return max(abs(1.0 - eta * L), abs(1.0 - eta * mu))


def rate_dqgd(sigma: float, eps: float) -> float:
    """DQ-GD's rate ``max(sigma, eps)`` with ``eps = rho*2^-R``."""
    return max(sigma, eps)


def rate_qgd(sigma: float, eps: float) -> float:
    """Naive quantized GD's rate ``sigma + eps`` with ``eps = rho*2^-R``."""
    return sigma + eps


_COMMON: tuple[Hyper, ...] = (
    Hyper("bits_per_dim", float, 4.0, "R, bits per dimension per iteration (fractional allowed)"),
    Hyper("L_bound", float, None, "smoothness for the range (default: the problem's L)"),
    Hyper("mu_bound", float, None, "strong convexity (default: the problem's mu)"),
    Hyper("D_bound", float, None, "bound on ||x0 - x*|| (default: the exact distance)"),
    Hyper(
        "grad_star",
        float,
        None,
        "G, bound on the local gradients at x* (default: max_p ||grad f_p(x*)||)",
    ),
    Hyper("rho", float, None, "covering efficiency (default: exact, sqrt(d) for integer R)"),
    Hyper("send_scale", bool, False, "send float32 ||u||_inf (32 bits) instead of the fixed range"),
)


class _QuantizedGD(Algorithm):
    """Shared set-up: constants, widths, the exchange of packed codes."""

    compressed: ClassVar[bool] = False
    self_quantizing: ClassVar[bool] = True

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        prob, comm = ctx.problem, ctx.comm
        self.params = hp = self.resolve_params(ctx.params)
        self.comm = comm
        self.P = comm.Get_size()
        self.d = int(prob.d)
        self.dtype = np.dtype(getattr(prob, "dtype", np.float64))
        self.R = float(hp["bits_per_dim"])
        self.widths = bit_widths(self.d, self.R)
        self.code_bits = total_bits(self.d, self.R)
        self.scale = bool(hp["send_scale"])
        x_star = np.asarray(prob.x_star, dtype=np.float64)
        x0 = self.initial_point(self.dtype)
        self.L = float(hp["L_bound"] if hp["L_bound"] is not None else prob.L)
        self.mu = float(hp["mu_bound"] if hp["mu_bound"] is not None else prob.mu)
        self.eta = float(ctx.lr) if ctx.lr is not None else 2.0 / (self.L + self.mu)
        self.sigma = gd_contraction(self.L, self.mu, self.eta)
        d0 = float(np.linalg.norm(x0.astype(np.float64) - x_star))
        self.D = float(hp["D_bound"]) if hp["D_bound"] is not None else d0
        # local gradients: their smoothness and their size at x*, agreed by every rank
        if self.P > 1:
            from mpi4py import MPI

            L_loc = float(prob.L_local) if hp["L_bound"] is None else self.L
            self.L_range = comm.allreduce(max(L_loc, self.L), op=MPI.MAX)
        else:
            self.L_range = self.L
        if hp["grad_star"] is not None:
            self.G = float(hp["grad_star"])
        else:
            g_loc = float(np.linalg.norm(np.asarray(prob.local_grad(x_star.astype(self.dtype)))))
            self.G = comm.allreduce(g_loc, op=_max_op()) if self.P > 1 else g_loc
        exact_eps = l2_error_factor(self.widths)
        self.eps = exact_eps if hp["rho"] is None else float(hp["rho"]) * 2.0**-self.R
        self.rho = self.eps * 2.0**self.R
        for name in ("D", "G", "eps"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{self.name}: {name} must be finite and >= 0")
        self.x_hat = x0
        self.t = 0
        self.nbytes = (self.code_bits + 7) // 8 + (4 if self.scale else 0)

    # -- what subclasses share ---------------------------------------------------
    @property
    def x(self) -> np.ndarray:
        return self.x_hat

    def _exchange(self, codes: np.ndarray, r_sent: float | None) -> np.ndarray:
        """Allgather every worker's packed codes (and scale); return their decoded mean."""
        send = np.empty(self.nbytes, dtype=np.uint8)
        off = 0
        if self.scale:
            send[:4] = np.frombuffer(np.float32(r_sent).tobytes(), dtype=np.uint8)
            off = 4
        send[off:] = pack_codes(codes, self.widths)
        recv = np.empty((self.P, self.nbytes), dtype=np.uint8)
        if self.P > 1:
            self.comm.Allgather(send, recv)
        else:
            recv[0] = send
        acc = np.zeros(self.d, dtype=np.float64)
        for p in range(self.P):
            r_p = float(recv[p, :4].view(np.float32)[0]) if self.scale else self._r
            acc += dequantize(unpack_codes(recv[p, off:], self.widths), r_p, self.widths)
        return acc / self.P

    def _quantize(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, float | None, int]:
        """Codes, the decoded q, the sent scale (or None) and the saturated count."""
        if not np.all(np.isfinite(self._r)):
            raise FloatingPointError(
                f"{self.name}: the range r_t overflowed at step {self.t}: with R = {self.R:g} "
                f"the theory rate is {self.theory_rate:.4g} >= 1 (diverges); use more bits"
            )
        r = linf_scale(u) if self.scale else self._r
        codes, sat = quantize(u, r, self.widths)
        return codes, dequantize(codes, r, self.widths), (r if self.scale else None), sat

    def _cost(self, sat: int, r: Any) -> StepCost:
        bits = self.code_bits + (32 if self.scale else 0)
        total_sat = self.comm.allreduce(sat) if self.P > 1 else sat
        # the wire carries floor(d*R) bits in whole bytes: report the bits, not the bytes
        return StepCost(
            bits_up=bits,
            bits_down=(self.P - 1) * bits,
            extra={"saturated": float(total_sat), "range": float(np.max(r))},
        )

    def describe(self) -> dict[str, Any]:
        out = dict(self.ctx.params or {})
        out.update(
            bits_per_dim=self.R,
            code_bits=self.code_bits,
            L=self.L,
            mu=self.mu,
            D=self.D,
            grad_star=self.G,
            eta=self.eta,
            sigma=self.sigma,
            rho=self.rho,
            eps=self.eps,
            scale=self.scale,
            theory_rate=self.theory_rate,
        )
        return out

    @property
    def theory_rate(self) -> float:
        raise NotImplementedError


def _max_op() -> Any:
    from mpi4py import MPI

    return MPI.MAX


class DQGD(_QuantizedGD):
    """Differentially quantized GD. See the module docstring for the steps and the proof."""

    name: ClassVar[str] = "dqgd"
    hyperparameters: ClassVar[tuple[Hyper, ...]] = (
        *_COMMON,
        Hyper(
            "range_norm",
            str,
            "l2",
            "range recursion: l2 (rho*2^-R feedback) or linf (2^-b_i per coordinate)",
            choices=("l2", "linf"),
        ),
    )

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        self.range_norm = norm = self.params["range_norm"]
        self.e = np.zeros(self.d, dtype=np.float64)
        # the range state r_{t-1}: scalar (l2) or per coordinate (linf)
        self.r_prev = np.zeros(self.d) if norm == "linf" else np.zeros(())
        self._fb = np.exp2(-self.widths.astype(np.float64)) if norm == "linf" else self.eps

    @property
    def theory_rate(self) -> float:
        eps = float(np.max(self._fb)) if self.range_norm == "linf" else self.eps
        return rate_dqgd(self.sigma, eps)

    @property
    def z(self) -> np.ndarray:
        """``x_hat + eta*e``: this worker's gradient point (exact GD for one worker)."""
        return self.x_hat + self.eta * self.e

    def next_range(self, t: int) -> Any:
        """``r_t = L*D*sigma^t + G + eps*r_{t-1}`` (per coordinate for linf)."""
        return self.L_range * self.D * self.sigma**t + self.G + self._fb * self.r_prev

    def step(self, t: int) -> StepCost:
        prob = self.ctx.problem
        z = self.z
        g = np.asarray(prob.local_grad(z.astype(self.dtype)), dtype=np.float64)
        u = g - self.e
        self._r = self.next_range(t)
        codes, q, r_sent, sat = self._quantize(u)
        self.e = q - u
        mean_q = self._exchange(codes, r_sent)
        self.x_hat = (self.x_hat - self.eta * mean_q).astype(self.dtype)
        r_used = self._r if not self.scale else r_sent
        self.r_prev = np.asarray(self._r, dtype=np.float64)
        self.t = t + 1
        return self._cost(sat, r_used)

    def state_dict(self) -> dict[str, Any]:
        return {"x_hat": self.x_hat.copy(), "e": self.e.copy(), "r_prev": self.r_prev.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x_hat = np.array(state["x_hat"], dtype=self.dtype)
        self.e = np.array(state["e"], dtype=np.float64)
        self.r_prev = np.array(state["r_prev"], dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["range_norm"] = self.range_norm
        return out


class QGD(_QuantizedGD):
    """Naive quantized GD: ``q_p = Q(grad f_p(x_hat))`` on ``[-r_t, r_t]``, ``r_t = L*D*a^t+G``."""

    name: ClassVar[str] = "qgd"
    hyperparameters: ClassVar[tuple[Hyper, ...]] = (
        *_COMMON,
        Hyper(
            "qgd_range",
            str,
            "paper",
            "range: decays at a = sigma + rho*2^-R (paper) or sigma + eta*L*rho*2^-R (safe), "
            "or stays L*D + G (fixed, no schedule)",
            choices=("paper", "safe", "fixed"),
        ),
    )

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        self.qgd_range = mode = self.params["qgd_range"]
        if mode == "fixed":
            self.a = 1.0
        else:
            self.a = self.sigma + (self.eta * self.L if mode == "safe" else 1.0) * self.eps
        #: fixed range: the distance floor eta*eps*r/(1 - sigma) (0 for the schedules)
        self.floor = (
            self.eta * self.eps * self.next_range(0) / (1.0 - self.sigma)
            if mode == "fixed"
            else 0.0
        )

    @property
    def theory_rate(self) -> float:
        """``a`` for the schedules; ``sigma`` (down to :attr:`floor`) for the fixed range."""
        return self.sigma if self.qgd_range == "fixed" else self.a

    def next_range(self, t: int) -> float:
        """``r_t = L*D*a^t + G`` (``a = 1``: the fixed range)."""
        return self.L_range * self.D * self.a**t + self.G

    def step(self, t: int) -> StepCost:
        prob = self.ctx.problem
        g = np.asarray(prob.local_grad(self.x_hat), dtype=np.float64)
        self._r = self.next_range(t)
        codes, _q, r_sent, sat = self._quantize(g)
        mean_q = self._exchange(codes, r_sent)
        self.x_hat = (self.x_hat - self.eta * mean_q).astype(self.dtype)
        self.t = t + 1
        return self._cost(sat, self._r if not self.scale else r_sent)

    def state_dict(self) -> dict[str, Any]:
        return {"x_hat": self.x_hat.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x_hat = np.array(state["x_hat"], dtype=self.dtype)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(qgd_range=self.qgd_range, a=self.a, floor=self.floor)
        return out


def momentum_defaults(kind: str, L: float, mu: float) -> tuple[float, float]:
    """The standard tuning ``(eta, beta)`` of heavy ball or Nesterov for ``kappa = L/mu``.

    Heavy ball (Polyak): ``eta = 4/(sqrt(L) + sqrt(mu))^2``,
    ``beta = ((sqrt(kappa) - 1)/(sqrt(kappa) + 1))^2``, rate ``sqrt(beta)``.
    Nesterov: ``eta = 1/L``, ``beta = (sqrt(kappa) - 1)/(sqrt(kappa) + 1)``,
    rate ``1 - 1/sqrt(kappa)`` on quadratics.
    """
    q = (math.sqrt(L / mu) - 1.0) / (math.sqrt(L / mu) + 1.0)
    if kind == "hb":
        return 4.0 / (math.sqrt(L) + math.sqrt(mu)) ** 2, q * q
    return 1.0 / L, q


def momentum_envelope(
    kind: str, eta: float, beta: float, L: float, mu: float, T: int
) -> np.ndarray:
    """``m_t = max_{lambda in [mu, L]} |p_t(lambda)|`` for ``t = 0..T``.

    ``p_t`` is the polynomial with ``(gradient point)_t - x* = p_t(H)(x_0 - x*)`` on a
    quadratic with Hessian ``H`` (spectrum in ``[mu, L]``, ``x_{-1} = x_0``): the heavy-ball
    iterate, or Nesterov's extrapolated point ``y_t``. The maximum is taken on 2001
    points of ``[mu, L]`` (the end points included), so it is a numerical bound.
    """
    lam = np.linspace(mu, L, 2001)
    prev, cur = np.ones_like(lam), np.ones_like(lam)
    out = np.empty(T + 1)
    for t in range(T + 1):
        point = cur if kind == "hb" else (1.0 + beta) * cur - beta * prev
        out[t] = float(np.max(np.abs(point)))
        if kind == "hb":
            nxt = (1.0 + beta - eta * lam) * cur - beta * prev
        else:
            nxt = (1.0 - eta * lam) * point
        prev, cur = cur, nxt
    return out


def momentum_rate(kind: str, eta: float, beta: float, L: float, mu: float) -> float:
    """The unquantized method's rate on quadratics: the largest root modulus over ``[mu, L]``.

    Per eigenvalue ``lambda`` the error obeys ``r^2 - a r + c = 0`` with
    ``a = 1 + beta - eta*lambda``, ``c = beta`` (heavy ball) or
    ``a = (1 + beta)(1 - eta*lambda)``, ``c = beta (1 - eta*lambda)`` (Nesterov); taken on
    the grid of :func:`momentum_envelope`. At the default tuning: ``sqrt(beta)`` and
    ``1 - 1/sqrt(kappa)``.
    """
    lam = np.linspace(mu, L, 2001)
    if kind == "hb":
        a, c = 1.0 + beta - eta * lam, np.full_like(lam, beta)
    else:
        a, c = (1.0 + beta) * (1.0 - eta * lam), beta * (1.0 - eta * lam)
    disc = a * a - 4.0 * c
    root = np.sqrt(np.abs(disc))
    real = np.maximum(np.abs(a + root), np.abs(a - root)) / 2.0
    return float(np.max(np.where(disc >= 0, real, np.sqrt(np.abs(c)))))


class _DQMomentum(DQGD):
    """Differential quantization of heavy ball / Nesterov (the journal version's DQ-HB, DQ-NAG).

    See the module docstring of the class names for the steps; beta = 0 is DQ-GD.
    """

    kind: ClassVar[str] = "hb"
    hyperparameters: ClassVar[tuple[Hyper, ...]] = (
        *DQGD.hyperparameters,
        Hyper("momentum", float, None, "beta (default: the standard tuning for L/mu)"),
    )
    #: steps of the precomputed envelope; beyond it the last value decays at the rate
    _HORIZON: ClassVar[int] = 4096

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        eta0, beta0 = momentum_defaults(self.kind, self.L, self.mu)
        self.eta = float(ctx.lr) if ctx.lr is not None else eta0
        beta = self.params["momentum"]
        self.beta = float(beta0 if beta is None else beta)
        if not 0.0 <= self.beta < 1.0:
            raise ValueError(f"{self.name}: momentum must be in [0, 1), got {self.beta}")
        env = momentum_envelope(self.kind, self.eta, self.beta, self.L, self.mu, self._HORIZON)
        self.envelope = env
        self.sigma = momentum_rate(self.kind, self.eta, self.beta, self.L, self.mu)
        self.e_prev = np.zeros(self.d, dtype=np.float64)  # e_{t-2}
        self.x_prev = self.x_hat.copy()  # x_hat_{t-1}
        self.r_prev2 = np.zeros_like(self.r_prev)

    def next_range(self, t: int) -> Any:
        """``r_t = L*D*m_t + G + (1+beta)*eps*r_{t-1} + beta*eps*r_{t-2}``."""
        h = self._HORIZON
        m = self.envelope[t] if t <= h else self.envelope[h] * self.sigma ** (t - h)
        fb = self._fb
        return (
            self.L_range * self.D * m
            + self.G
            + fb * ((1 + self.beta) * self.r_prev + self.beta * self.r_prev2)
        )

    @property
    def z(self) -> np.ndarray:
        """The unquantized method's iterate ``x_hat + eta*e`` (one worker: exact HB / NAG)."""
        return self.x_hat + self.eta * self.e

    def _point(self) -> np.ndarray:
        z = self.z
        if self.kind == "hb":
            return z
        z_prev = self.x_prev + self.eta * self.e_prev
        return z + self.beta * (z - z_prev)

    def step(self, t: int) -> StepCost:
        prob = self.ctx.problem
        g = np.asarray(prob.local_grad(self._point().astype(self.dtype)), dtype=np.float64)
        u = g - (1.0 + self.beta) * self.e + self.beta * self.e_prev
        self._r = self.next_range(t)
        codes, q, r_sent, sat = self._quantize(u)
        self.e_prev, self.e = self.e, q - u
        mean_q = self._exchange(codes, r_sent)
        x = self.x_hat.astype(np.float64)
        shift = self.beta * (x - self.x_prev)
        self.x_prev = x
        self.x_hat = (x + shift - self.eta * mean_q).astype(self.dtype)
        self.r_prev2 = self.r_prev
        self.r_prev = np.asarray(self._r, dtype=np.float64)
        self.t = t + 1
        return self._cost(sat, self._r if not self.scale else r_sent)

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        out.update(
            e_prev=self.e_prev.copy(), x_prev=self.x_prev.copy(), r_prev2=self.r_prev2.copy()
        )
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.e_prev = np.array(state["e_prev"], dtype=np.float64)
        self.x_prev = np.array(state["x_prev"], dtype=np.float64)
        self.r_prev2 = np.array(state["r_prev2"], dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(momentum=self.beta, eta=self.eta, sigma=self.sigma)
        return out


class DQHB(_DQMomentum):
    """DQ-HB: ``x_hat' = x_hat - eta*mean_p q_p + beta*(x_hat - x_hat_prev)``.

    Worker ``p``: ``z = x_hat + eta*e_{t-1}`` (one worker: the exact heavy-ball iterate),
    ``u = grad f_p(z) - (1+beta)*e_{t-1} + beta*e_{t-2}``, ``q = Q_{R,r_t}(u)``,
    ``e_t = q - u``; then ``x_hat - z = -eta*e_{t-1}`` at every step.          [reconstructed]
    """

    name: ClassVar[str] = "dqhb"
    kind: ClassVar[str] = "hb"


class DQNAG(_DQMomentum):
    """DQ-NAG: ``y_hat = x_hat + beta*(x_hat - x_hat_prev)``, ``x_hat' = y_hat - eta*mean_p q_p``.

    Worker ``p``: the gradient at Nesterov's ``y = z + beta*(z - z_prev)`` with
    ``z = x_hat + eta*e_{t-1}``, the same ``u``, ``q`` and ``e`` as :class:`DQHB`.  [reconstructed]
    """

    name: ClassVar[str] = "dqnag"
    kind: ClassVar[str] = "nag"
