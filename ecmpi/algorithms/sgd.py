"""The baselines: ``gd``, ``sgd``, ``qsgd`` (quantized, no feedback) and ``ef-sgd``.

All four average the workers' gradients with :func:`ecmpi.allreduce`, so every
byte on the wire is counted from the real payloads, and every rank holds the
same iterate bit for bit. With P workers, worker p's node objective f_p
(:mod:`ecmpi.problems.base`) and step size eta_t:

- ``gd`` [standard]: ``x <- x - eta * (1/P) sum_p grad f_p(x)``, full
  precision (compressor ``none``; ``--compressor`` is ignored).
- ``sgd`` [standard]: the same with minibatch gradients g_p of ``--batch-size``
  rows of worker p's shard, drawn with replacement from :mod:`ecmpi.rng`
  keyed by ``(seed, t, rank)`` (``--batch-size 0``: the full local gradient).
- ``qsgd`` [standard] (Alistarh et al., NeurIPS 2017): ``x <- x - eta * (1/P)
  sum_p C(g_p)`` with the chosen compressor and collective, no error feedback.
- ``ef-sgd`` [standard] (Seide et al. 2014; Karimireddy et al., ICML 2019):
  each worker keeps ``e_p = 0``; per step ``p = eta*g_p + e_p``, ``v = C(p)``,
  ``e_p = p - v`` (the recursion of :mod:`ecmpi.compress.feedback`), send v,
  ``x <- x - (1/P) sum_p v``. Error feedback needs a contraction: an
  unbiased C with variance factor omega is used as ``v = C(p)/(omega + 1)``
  (``--ef-scale auto``, the default; :func:`ecmpi.compress.feedback.contraction_scale`,
  shared with the error-compensated family), ``--ef-scale none`` sends
  ``v = C(p)`` as is. Unscaled (a contraction, or ``none``), the residuals
  live in a :class:`ecmpi.CollectiveFeedback`, so every compression inside
  the collective is compensated (with ``sra``/``ring`` also the second,
  server level one); scaled, the worker residual ``e_p = p - v`` is kept by
  :class:`ecmpi.algorithms.ec.CompensatedMean`, as in the error-compensated
  family (the collective's own feedback is then off, so with ``sra``/``ring``
  the server-level re-compression is not compensated).

Step sizes (``--lr``; default ``1/L`` for ``gd``, ``1/L_b`` for the stochastic
ones, the expected smoothness of a b-row minibatch, :func:`batch_smoothness`,
which is ``L`` for full local gradients; ``--schedule`` for the stochastic ones):
``constant``: eta; ``1/t``: ``eta / (1 + t/t0)``; ``stagewise``: Epoch-SGD's
stages (:class:`ecmpi.algorithms.schedules.StageSchedule`, the schedule of
``epoch-sgd`` and ``qesgd``): stage k has step ``eta * decay^k`` and lasts
``stage_steps`` steps for k = 0, then ``round(stage_growth * T_{k-1})``.

Bits: ``bits_up``/``bits_down`` are the bytes this rank sent/received in the
collective (``CommStats.last``), times 8.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..compress import compressor
from ..compress.feedback import contraction_scale, ef_scale_option
from ..rng import derive, random_u32
from ._validate import positive
from .base import Algorithm, Hyper, RunContext, StepCost
from .schedules import StageSchedule

__all__ = [
    "EFSGD",
    "EF_SCALE_HYPER",
    "GD",
    "QSGD",
    "SCHEDULE_HYPERS",
    "SGD",
    "averaged",
    "batch_smoothness",
    "check_schedule",
    "default_lr",
    "finite_or_none",
    "gradient_at",
    "local_sample_count",
    "minibatch",
    "minibatch_gradient",
    "stages",
    "step_size",
]

#: identifier folded into the minibatch stream (keeps it apart from compressor draws)
MINIBATCH_STREAM = 0x4D42  # "MB"
SCHEDULES = ("constant", "1/t", "stagewise")
#: the option names of the stagewise schedule's length, decay and growth
_STAGE_NAMES = ("stage_steps", "decay", "stage_growth")


def default_lr(ctx: RunContext, batch_size: int | None = None) -> float:
    """``ctx.lr`` if given, else ``1/L_b`` (:func:`batch_smoothness`; collective on first use).

    ``batch_size`` None or ``<= 0`` (full local gradients): ``1/L`` of the problem.
    """
    if ctx.lr is not None:
        return positive(ctx.lr, "lr")
    return 1.0 / batch_smoothness(ctx.problem, 0 if batch_size is None else batch_size)


def local_sample_count(problem: Any) -> float:
    """m = N/P, the mean local sample count (identical on every rank)."""
    return max(1.0, float(problem.n_global) / float(problem.comm.size))


def batch_smoothness(problem: Any, batch_size: int) -> float:
    """Expected smoothness of a b-row minibatch estimator of grad f_tau [standard].

    Gower et al., *SGD: general analysis and improved rates* (ICML 2019), b-nice
    sampling of m rows: ``L_b = m(b-1)/(b(m-1)) * L_node + (m-b)/(b(m-1)) * L_max``
    with ``L_node = L_local_max`` (max over ranks of f_tau's smoothness) and
    ``L_max`` the largest row smoothness. ``b <= 0`` (full local gradients): L.
    """
    b = int(batch_size)
    if b <= 0:
        return float(problem.L)
    m = local_sample_count(problem)
    if m <= 1 or b >= m:
        return float(problem.L_local_max)
    node, row = float(problem.L_local_max), float(problem.L_max)
    return m * (b - 1) / (b * (m - 1)) * node + (m - b) / (b * (m - 1)) * row


def minibatch(ctx: RunContext, t: int) -> np.ndarray | None:
    """Rows of this rank's shard for step ``t``: ``batch_size`` draws with replacement.

    Row ``j`` of the batch is ``floor(u_j * n_local / 2^32)`` with ``u_j`` the
    j-th 32-bit word of the stream ``derive(seed, MINIBATCH_STREAM, t, rank)``.
    Returns None for ``batch_size <= 0`` (use the full local gradient).
    """
    b = int(ctx.batch_size)
    if b <= 0:
        return None
    n = int(ctx.problem.n_local)
    key, stream = derive(ctx.seed, MINIBATCH_STREAM, t, ctx.comm.Get_rank())
    u = random_u32(key, stream, 0, b).astype(np.uint64)
    return ((u * np.uint64(n)) >> np.uint64(32)).astype(np.int64)


def gradient_at(problem: Any, x: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    """``grad f_p(x)`` for ``idx`` None, else the minibatch gradient over rows ``idx``."""
    return problem.local_grad(x) if idx is None else problem.batch_grad(x, idx)


def minibatch_gradient(ctx: RunContext, x: np.ndarray, t: int) -> np.ndarray:
    """This rank's gradient at ``x`` over the minibatch of step ``t`` (:func:`minibatch`)."""
    return gradient_at(ctx.problem, x, minibatch(ctx, t))


def averaged(
    ctx: RunContext,
    v: np.ndarray,
    compressor: Any,
    seed: Any,
    stats: Any,
    feedback: Any = None,
) -> np.ndarray:
    """``(1/P) sum_p C(v_p)`` through :func:`ecmpi.allreduce` on ``ctx``'s comm and collective."""
    from ..comm import allreduce

    return allreduce(
        v,
        compressor,
        comm=ctx.comm,
        collective=ctx.collective,
        average=True,
        seed=seed,
        feedback=feedback,
        stats=stats,
    )


def stages(lr: float, params: dict[str, Any]) -> StageSchedule:
    """The ``stagewise`` schedule from ``stage_steps``, ``decay`` and ``stage_growth``.

    Each stage's length is rounded from the previous one's (``compound``).

    Raises:
        ValueError: a parameter outside the schedule's range.
    """
    return StageSchedule(
        lr,
        int(params["stage_steps"]),
        float(params["decay"]),
        float(params["stage_growth"]),
        compound=True,
        names=_STAGE_NAMES,
    )


def step_size(lr: float, t: int, schedule: str, params: dict[str, Any]) -> float:
    """The step at iteration ``t`` under ``schedule`` (see the module docstring)."""
    if schedule == "constant":
        return lr
    if schedule == "1/t":
        return lr / (1.0 + t / float(params["t0"]))
    if schedule == "stagewise":
        return stages(lr, params).step_size(t)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def check_schedule(lr: float, params: dict[str, Any]) -> None:
    """Refuse a bad ``--schedule`` and its parameters before the first step.

    Raises:
        ValueError: a non-positive ``t0``/``stage_steps``/``stage_growth``/``decay``, or a
            stagewise schedule outside :class:`StageSchedule`'s range.
    """
    for k in ("t0", "stage_steps", "stage_growth", "decay"):
        positive(params[k], k)
    if params["schedule"] == "stagewise":
        stages(lr, params)


#: ``--schedule`` and its parameters, for every driver whose step follows :func:`step_size`
SCHEDULE_HYPERS = (
    Hyper("schedule", str, "constant", "step-size schedule", choices=SCHEDULES),
    Hyper("t0", float, 100.0, "1/t schedule: lr / (1 + t/t0)"),
    Hyper("stage_steps", int, 100, "stagewise: length of the first stage"),
    Hyper("stage_growth", float, 2.0, "stagewise: stage length factor per stage"),
    Hyper("decay", float, 0.5, "stagewise: step factor per stage"),
)


#: ``--ef-scale`` of every driver that uses plain error feedback (ef-sgd, ec-*, ec-lkatyusha)
EF_SCALE_HYPER = Hyper(
    "ef_scale",
    ef_scale_option,
    "auto",
    "v = s*C(p) taken as sent: auto = 1/(omega + 1) for an unbiased C (makes it a "
    "contraction, which error feedback needs), 1 for a contraction; none = 1; or a number",
)


class _AveragedGradient(Algorithm):
    """Shared body: x <- x - eta_t * mean_p(message_p) through ecmpi.allreduce."""

    name: ClassVar[str] = "gd"
    use_compressor: ClassVar[bool] = False
    #: residuals of the collective (error feedback); None: no feedback
    feedback: Any = None

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        from ..comm import CommStats

        self.lr = default_lr(ctx, ctx.batch_size if self.stochastic else None)
        self.params = self.resolve_params(ctx.params)
        if "schedule" in self.params:
            check_schedule(self.lr, self.params)
        self._x = self.initial_point()
        # the loop owns non-finite handling (--on-nonfinite), so the full-precision path
        # must pass NaN/Inf through like the loop's copy of the user's compressor does
        self.compressor = (
            ctx.compressor if self.use_compressor else compressor("none", check_finite=False)
        )
        if self.use_compressor and ctx.compressor is None:
            raise ValueError(f"{self.name} needs a compressor")
        self.stats = CommStats()

    @property
    def x(self) -> np.ndarray:
        return self._x

    def gradient(self, t: int) -> np.ndarray:
        return self.ctx.problem.local_grad(self._x)

    def eta(self, t: int) -> float:
        return step_size(self.lr, t, self.params.get("schedule", "constant"), self.params)

    def message(self, t: int) -> tuple[np.ndarray, float]:
        """(vector to reduce, factor applied to the mean before the update)."""
        return self.gradient(t), self.eta(t)

    def reduce(self, v: np.ndarray, t: int) -> np.ndarray:
        seed = (self.ctx.seed, t)
        return averaged(self.ctx, v, self.compressor, seed, self.stats, self.feedback)

    def step(self, t: int) -> StepCost:
        v, factor = self.message(t)
        mean = self.reduce(v, t)
        if factor == 1.0:
            self._x -= mean
        else:
            self._x -= factor * mean
        return StepCost()  # bits: the loop counts them from self.stats

    def state_dict(self) -> dict[str, Any]:
        return {"x": self._x.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._x = np.array(state["x"], dtype=self._x.dtype, copy=True)

    def describe(self) -> dict[str, Any]:
        return {**self.params, "lr": self.lr}


class GD(_AveragedGradient):
    """Full-precision distributed gradient descent. See the module docstring."""

    name: ClassVar[str] = "gd"
    compressed: ClassVar[bool] = False


class SGD(_AveragedGradient):
    """Full-precision minibatch SGD. See the module docstring."""

    name: ClassVar[str] = "sgd"
    stochastic: ClassVar[bool] = True
    compressed: ClassVar[bool] = False
    hyperparameters: ClassVar[tuple[Hyper, ...]] = SCHEDULE_HYPERS

    def gradient(self, t: int) -> np.ndarray:
        return minibatch_gradient(self.ctx, self._x, t)


class QSGD(SGD):
    """Quantized (compressed) SGD without error feedback. See the module docstring."""

    name: ClassVar[str] = "qsgd"
    compressed: ClassVar[bool] = True
    use_compressor: ClassVar[bool] = True


class EFSGD(SGD):
    """SGD with error feedback and any compressor. See the module docstring."""

    name: ClassVar[str] = "ef-sgd"
    compressed: ClassVar[bool] = True
    use_compressor: ClassVar[bool] = True
    hyperparameters: ClassVar[tuple[Hyper, ...]] = (*SCHEDULE_HYPERS, EF_SCALE_HYPER)

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        from ..comm import CollectiveFeedback
        from .ec import CompensatedMean

        self.ef_scale = contraction_scale(self.compressor, ctx.problem.d, self.params["ef_scale"])
        self.feedback = CollectiveFeedback()
        #: the scaled form's residual (None: the collective's own residuals, unscaled)
        self.ec = None
        if self.ef_scale != 1.0:
            self.ec = CompensatedMean(
                ctx, self.compressor, self._x, self.stats, scale=self.ef_scale
            )
            self.feedback = self.ec.feedback

    def message(self, t: int) -> tuple[np.ndarray, float]:
        return self.eta(t) * self.gradient(t), 1.0

    def reduce(self, v: np.ndarray, t: int) -> np.ndarray:
        if self.ec is None:
            return super().reduce(v, t)
        return self.ec(v, (self.ctx.seed, t))

    def state_dict(self) -> dict[str, Any]:
        if self.ec is not None:
            return {"x": self._x.copy(), "feedback": {"worker": self.ec.e.copy()}}
        return {"x": self._x.copy(), "feedback": self.feedback.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        saved = state.get("feedback", {})
        if self.ec is not None:
            if "worker" in saved:
                self.ec.e = np.array(saved["worker"], dtype=self._x.dtype, copy=True)
            return
        self.feedback.load_state_dict(saved)

    def describe(self) -> dict[str, Any]:
        d = self.ctx.problem.d
        return {
            **super().describe(),
            "ef_scale_factor": self.ef_scale,
            "omega": finite_or_none(self.compressor.omega(d)),
            "delta": float(self.compressor.delta(d)),
        }


def finite_or_none(v: float) -> float | None:
    """``v`` when finite, else None (JSON has no inf)."""
    v = float(v)
    return v if np.isfinite(v) else None
