"""QESGD (quantized Epoch-SGD) and its full-precision baseline Epoch-SGD.

Zhao, Gao, Li. *Quantized Epoch-SGD for Communication-Efficient Distributed
Learning*, arXiv 1901.03040 (2019). Only the paper's abstract was available:
it states that QESGD runs Epoch-SGD, quantizes the *parameter* rather than
the gradient, uses variance reduction so that the quantization noise does
not hurt, and runs on the parameter-server pattern [paper]. Everything below
the stage structure is **reconstructed** (consistent with the abstract, not
checked against the paper's algorithm box). Every rank holds the shared
quantized parameter ``w_hat`` (identical everywhere, the logged iterate);
the server (rank 0, also a worker) holds the full-precision ``w``; worker
``p`` holds its residual ``e_p``. ``s`` is the factor of the value taken as
sent (``--ef-scale``, :func:`ecmpi.compress.feedback.contraction_scale`).

1. Stages ``k = 0, 1, ...``: step ``eta_k = lr * decay^k``, length
   ``T_k = round(T_0 * growth^k)`` (Epoch-SGD, Hazan and Kale 2011;
   ``--lr-decay 0.5``, ``--stage-growth 2``, ``--stage-length T_0``;
   :class:`ecmpi.algorithms.schedules.StageSchedule`). [standard]
2. Worker ``p``: ``g_p`` = minibatch gradient at ``w_hat``; its new
   parameter relative to the shared one is ``u_p = -eta_k g_p``; it sends
   ``Q(m_p)``, ``m_p = u_p + e_p``, and keeps ``e_p <- m_p - s Q(m_p)``
   (:func:`ecmpi.compress.feedback.compensate` and ``next_residual``).
   [reconstructed]
3. Server: ``w <- w + (s/P) sum_p Q(m_p)``; sends ``Q'(delta)``,
   ``delta = w - w_hat`` (the new parameter relative to the last quantized
   one, ``--downlink same|none|SPEC``); every rank sets
   ``w_hat <- w_hat + s' Q'(delta)``, so the server's residual is
   ``w - w_hat = delta - s' Q'(delta)``. [reconstructed]

The variance reduction: both quantized quantities are differences from the
last quantized parameter plus the left-over error, of size ``O(eta_k G)``
(``G^2`` a bound on ``E||g_p||^2``), not the parameter itself; with a
contraction ``E||sQ(x) - x||^2 <= (1 - delta)||x||^2`` the residuals obey
``E||e||^2 <= 4 (1 - delta) / delta^2 * eta_k^2 G^2``, so the quantization
error halves with the step at every stage (docs/algorithms/qesgd.md).
[reconstructed] Logged per step (rank mean): ``quant_norm_up`` = ``||m_p||``
and ``quant_error_up`` = ``||e_p||`` after the step.

Both directions are counted from the real payload sizes, as for every
algorithm: ``bits_up`` and ``bits_down`` are the bytes this rank sent and
received in the step (:class:`ecmpi.CommStats`; the server receives P-1
uploads and sends P-1 copies of each broadcast).

``epoch-sgd``: the same stages in full precision on the same pattern:
workers send ``g_p`` (``none``), the server broadcasts ``mean_p g_p``, all set
``w <- w - eta_k * mean_p g_p``. QESGD with the ``none`` quantizer computes
the same iterates up to floating-point rounding.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .. import compress
from ..comm import CommStats, ps_broadcast, ps_gather
from ..comm.failures import Failures
from ..compress.feedback import compensate, contraction_scale, next_residual
from .base import Algorithm, Hyper, RunContext, StepCost
from .schedules import StageSchedule
from .sgd import EF_SCALE_HYPER, default_lr, minibatch_gradient

__all__ = ["QESGD", "EpochSGD", "StageSchedule"]

ROOT = 0

_STAGE_HYPERS = (
    Hyper("stage_length", int, 50, "T_0, steps in the first stage"),
    Hyper("stage_growth", float, 2.0, "T_{k+1} = growth * T_k"),
    Hyper("lr_decay", float, 0.5, "eta_{k+1} = decay * eta_k"),
)


class _StagedPS(Algorithm):
    """Shared parts: stage schedule, iterate, the full-precision codec."""

    stochastic: ClassVar[bool] = True

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        self.params = p = self.resolve_params(ctx.params)
        self.lr = default_lr(ctx)
        self.schedule = StageSchedule(
            self.lr,
            p["stage_length"],
            float(p["lr_decay"]),
            float(p["stage_growth"]),
        )
        self.comm = ctx.comm
        self.rank = ctx.comm.Get_rank()
        self.size = ctx.comm.Get_size()
        self._w = self.initial_point()
        self.full = compress.compressor("none", check_finite=False)  # the loop handles NaN/Inf
        self.stats = CommStats()

    def _gather(self, payload: Any, call: CommStats) -> list | None:
        return ps_gather(payload, self.comm, ROOT, stats=call)

    def _bcast(self, payload: Any, call: CommStats) -> Any:
        return ps_broadcast(payload, self.comm, ROOT, stats=call)

    def _cost(self, call: CommStats, extra: dict[str, float] | None = None) -> StepCost:
        self.stats.merge_call(call)
        return StepCost(extra=extra or {})  # bits: the loop counts this call from self.stats

    @property
    def x(self) -> np.ndarray:
        return self._w

    def _gradient(self, w: np.ndarray, t: int) -> np.ndarray:
        return minibatch_gradient(self.ctx, w, t)

    def _mean_of(self, payloads: list, codec: Any) -> np.ndarray:
        acc = np.zeros_like(self._w)
        for pl in payloads:
            acc += codec.decode(pl)
        return acc / self.size

    def describe(self) -> dict[str, Any]:
        s = self.schedule
        return {
            **self.ctx.params,
            "lr": s.lr,
            "stage_length": s.length,
            "lr_decay": s.decay,
            "stage_growth": s.growth,
        }


class EpochSGD(_StagedPS):
    """Full-precision Epoch-SGD on the parameter-server pattern (see module docstring)."""

    name: ClassVar[str] = "epoch-sgd"
    compressed: ClassVar[bool] = False
    hyperparameters: ClassVar[tuple[Hyper, ...]] = _STAGE_HYPERS

    def step(self, t: int) -> StepCost:
        k, _ = self.schedule.locate(t)
        call = CommStats()
        g = self._gradient(self._w, t)
        got = self._gather(self.full.encode(g), call)
        down = self.full.encode(self._mean_of(got, self.full)) if self.rank == ROOT else None
        down = self._bcast(down, call)
        self._w -= self.schedule.eta(k) * self.full.decode(down)
        return self._cost(call)

    def state_dict(self) -> dict[str, Any]:
        return {"w": self._w.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._w = np.array(state["w"], dtype=self._w.dtype, copy=True)


class QESGD(_StagedPS):
    """Quantized Epoch-SGD, reconstructed from the abstract (see module docstring)."""

    name: ClassVar[str] = "qesgd"
    compressed: ClassVar[bool] = True
    hyperparameters: ClassVar[tuple[Hyper, ...]] = (
        *_STAGE_HYPERS,
        Hyper(
            "downlink",
            str,
            "same",
            "server->worker quantizer: same (as --compressor), none, or a compressor spec",
        ),
        EF_SCALE_HYPER,
    )
    extra_metrics: ClassVar[tuple[str, ...]] = ("quant_norm_up", "quant_error_up")

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        self.up = ctx.compressor
        spec = self.params["downlink"]
        if not isinstance(spec, str):
            raise TypeError(f"downlink must be a compressor spec string, got {spec!r}")
        self.down = self.up if spec == "same" else compress.compressor(spec)
        d = self._w.shape[0]
        mode = self.params["ef_scale"]
        self.scale_up = contraction_scale(self.up, d, mode)  # s
        self.scale_down = contraction_scale(self.down, d, mode)  # s'
        self._e = np.zeros_like(self._w)  # e_p, every rank
        self._server = self._w.copy() if self.rank == ROOT else None  # w, server only

    def step(self, t: int) -> StepCost:
        ctx = self.ctx
        k, _ = self.schedule.locate(t)
        call = CommStats()
        u = -self.schedule.eta(k) * self._gradient(self._w, t)
        m = compensate(u, self._e)
        # one rank's encoding error travels in-band and is raised on every rank
        fail = Failures(self.comm, m, self.name, kind="parameter-server exchange")
        with self.stats.timer("encode"):
            up = fail.run(
                "encode its update", self.up.encode, m, seed=(ctx.seed, t, 0), rank=self.rank
            )
        if up is not None:
            self._e = next_residual(u, self._e, m, self.up.decode(up), scale=self.scale_up)
        got = ps_gather(up, self.comm, ROOT, stats=call, failures=fail)
        down = None
        if self.rank == ROOT and not fail.any:
            with self.stats.timer("decode"):
                mean = fail.run("decode the updates", self._mean_of, got, self.up)
            if mean is not None:
                w = self._server + (mean if self.scale_up == 1.0 else self.scale_up * mean)
                with self.stats.timer("encode"):
                    down = fail.run(
                        "encode the server's update",
                        self.down.encode,
                        w - self._w,
                        seed=(ctx.seed, t, 1),
                        rank=self.size + ROOT,
                    )
                self._server = w
        down = ps_broadcast(down, self.comm, ROOT, stats=call, failures=fail)
        with self.stats.timer("decode"):
            q = self.down.decode(down)
            self._w = self._w + (q if self.scale_down == 1.0 else self.scale_down * q)
        extra = {
            "quant_norm_up": float(np.linalg.norm(m)),
            "quant_error_up": float(np.linalg.norm(self._e)),
        }
        return self._cost(call, extra)

    def state_dict(self) -> dict[str, Any]:
        out = {"w_hat": self._w.copy(), "residual": self._e.copy()}
        if self._server is not None:
            out["w_server"] = self._server.copy()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dt = self._w.dtype
        self._w = np.array(state["w_hat"], dtype=dt, copy=True)
        self._e = np.array(state["residual"], dtype=dt, copy=True)
        if "w_server" in state:
            self._server = np.array(state["w_server"], dtype=dt, copy=True)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "downlink": self.down.spec,
            "ef_scale_up": self.scale_up,
            "ef_scale_down": self.scale_down,
        }
