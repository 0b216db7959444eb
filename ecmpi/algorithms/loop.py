"""The step loop every algorithm runs in: metrics, stopping rules, logging, checkpoints.

Per step ``t`` (0-based) all ranks call ``alg.step(t)``, then one small
``Allreduce`` of four integers (this step's bits up and down, a "signal
received" flag and a "non-finite iterate" flag) keeps every rank's decisions
identical, so no rule can make one rank stop while another goes on.

Metrics (one trajectory row at step 0, every ``log_every`` steps and at the
last step; all collective):

- ``loss`` = f(x), ``suboptimality`` = f(x) - f*, ``dist_to_opt`` = ||x - x*||,
  ``grad_norm`` = ||grad f(x)|| (the global gradient, full data);
- ``bits_up``/``bits_down``: cumulative bits **per worker**: the mean over
  ranks of the bits each rank sent (up) and received (down), as the
  algorithm's :class:`StepCost` reports them from the real payload sizes;
- ``wall_time``: seconds rank 0 spent inside steps (metric evaluation,
  logging and checkpoints excluded); ``comm_time`` and ``compress_time``:
  rank means of the algorithm's ``self.stats`` (:class:`ecmpi.CommStats`:
  ``communicate_seconds``; ``encode_seconds + decode_seconds``), 0 without it;
- extras from ``StepCost.extra``: rank means; a name containing ``bits`` is
  summed over steps (cumulative, like ``bits_up``), any other is the value
  reported by the last step (NaN in the row of step 0).

Stopping: ``steps`` reached; ``target``: f - f* <= target at a logged row;
``max_bits``: ``bits_up`` reached the budget (checked every step);
divergence: at a logged row the loss is non-finite or
``f - f_ref > diverge_factor * (f(x0) - f_ref)`` (f_ref = f* if known, else 0):
status ``diverged``; a non-finite iterate: status ``failed`` and
:class:`NonFiniteError` (``on_nonfinite="error"``), or the step is undone
and the run goes on (``"skip"``); SIGTERM/SIGUSR1: checkpoint at the next
step boundary, status ``interrupted`` (resumable).

Determinism: rows depend only on the algorithm, the data, the seed and the
rank count (timings aside), and a run resumed from a checkpoint continues
the same trajectory bit for bit.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from .._backend import array_module, to_host
from ..log import TrajectoryWriter, save_checkpoint
from ..progress import Progress
from .base import Algorithm, RunContext, StepCost

__all__ = ["ON_NONFINITE", "NonFiniteError", "RunError", "RunResult", "SignalLatch", "run"]

ON_NONFINITE = ("error", "skip")
_SIGNALS = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s
)


class RunError(RuntimeError):
    """A run ended with an error that every rank raises identically (print it once)."""


class NonFiniteError(RunError, FloatingPointError):
    """The iterate became NaN or Inf (``on_nonfinite="error"``)."""


@dataclass
class RunResult:
    """How a run ended.

    Attributes:
        status: ``completed``, ``diverged``, ``interrupted`` or ``failed``.
        stop_reason: ``steps``, ``target``, ``max_bits``, ``diverged``,
            ``signal SIGTERM``, ``nonfinite``, ...
        steps: steps done in total (including those before a resume).
        last: the last logged row (metric name -> value).
        skipped: steps undone because of a non-finite iterate (``skip``).
        rows: every row logged by this call (rank 0; empty elsewhere).
    """

    status: str
    stop_reason: str
    steps: int
    last: dict[str, float]
    skipped: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)


def _copy_state(state: Any) -> Any:
    if isinstance(state, dict):
        return {k: _copy_state(v) for k, v in state.items()}
    if hasattr(state, "copy") and hasattr(state, "dtype"):
        return state.copy()
    return state


def _stats_times(alg: Algorithm) -> tuple[float, float]:
    st = getattr(alg, "stats", None)
    if st is None:
        return 0.0, 0.0
    comm = float(getattr(st, "communicate_seconds", 0.0))
    comp = float(getattr(st, "encode_seconds", 0.0)) + float(getattr(st, "decode_seconds", 0.0))
    return comm, comp


class SignalLatch:
    """Records SIGTERM/SIGUSR1 instead of dying (main thread only).

    :func:`run` makes one for its own duration. A program may install one for longer
    (``ecmpi run`` does, from its start to its exit) and pass it as ``handle_signals``:
    a signal during setup then stops the run at its first step with a checkpoint, and
    one after the loop no longer kills a run that has already ended.
    """

    def __init__(self, enabled: bool = True):
        self.received: int = 0
        self._old: dict[int, Any] = {}
        if enabled and threading.current_thread() is threading.main_thread():
            for s in _SIGNALS:
                self._old[s] = signal.signal(s, self._handler)

    def _handler(self, signum: int, frame: Any) -> None:
        self.received = signum

    def restore(self) -> None:
        """Put back the handlers that were installed before."""
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()


def _make_progress(progress: Any, steps: int, every: int | None) -> Progress | None:
    if progress is None or progress is False:
        return None
    if isinstance(progress, Progress):
        return progress
    if progress is True:
        return Progress(steps, every=every)
    return Progress(steps, progress, every=every)  # a text stream


def run(
    algorithm: type[Algorithm] | Algorithm,
    ctx: RunContext,
    *,
    steps: int,
    target: float | None = None,
    max_bits: float | None = None,
    log: TrajectoryWriter | Callable[[Algorithm], TrajectoryWriter | None] | None = None,
    log_every: int = 1,
    progress: bool | Progress | TextIO | None = None,
    progress_every: int | None = None,
    checkpoint_every: int = 0,
    on_nonfinite: str = "error",
    diverge_factor: float = 1e6,
    resume: tuple[dict[str, Any], dict[str, Any]] | None = None,
    handle_signals: bool | SignalLatch = True,
) -> RunResult:
    """Run ``algorithm`` for up to ``steps`` steps (collective; see the module docstring).

    Args:
        algorithm: an :class:`Algorithm` subclass (built here from ``ctx``) or an instance.
        ctx: the run context (``ctx.comm`` is the communicator of the loop).
        steps: the step budget (total, including steps done before a resume).
        target: stop once f - f* <= target at a logged row.
        max_bits: stop once the per-worker ``bits_up`` reaches this budget.
        log: rank 0's :class:`TrajectoryWriter`, or a callable building it from the
            constructed algorithm (called on rank 0 only); None: no log.
        log_every: steps between logged rows.
        progress: True (stderr), a text stream, a :class:`Progress`, or None; rank 0 only.
        progress_every: steps between progress lines when not on a terminal.
        checkpoint_every: steps between checkpoints into the log (0: only on a signal).
        on_nonfinite: ``error`` or ``skip`` (undo a step whose iterate is NaN/Inf).
        diverge_factor: divergence threshold factor (see the module docstring).
        resume: ``(loop_state, this rank's state)`` from :func:`ecmpi.log.load_checkpoint`.
        handle_signals: turn SIGTERM/SIGUSR1 into checkpoint-and-stop (True), leave
            them alone (False), or use a :class:`SignalLatch` installed by the caller.

    Returns:
        A :class:`RunResult` (identical on every rank except ``rows``).

    Raises:
        NonFiniteError: on every rank, with ``on_nonfinite="error"``.
        ValueError: bad arguments (on every rank, before any step).
    """
    from mpi4py import MPI

    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if int(log_every) != log_every or log_every < 1:
        raise ValueError(f"log_every must be a positive integer, got {log_every!r}")
    if int(checkpoint_every) != checkpoint_every or checkpoint_every < 0:
        raise ValueError(
            f"checkpoint_every must be a non-negative integer, got {checkpoint_every!r}"
        )
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite must be one of {ON_NONFINITE}, got {on_nonfinite!r}")
    if target is not None and not target >= 0:
        raise ValueError(f"target must be non-negative, got {target!r}")
    if max_bits is not None and not max_bits > 0:
        raise ValueError(f"max_bits must be positive, got {max_bits!r}")
    if not diverge_factor > 0:
        raise ValueError(f"diverge_factor must be positive, got {diverge_factor!r}")

    comm = ctx.comm
    rank0 = comm.rank == 0
    P = comm.size
    if isinstance(algorithm, type) and getattr(ctx.compressor, "check_finite", False):
        # a NaN/Inf gradient on one rank must reach the iterate of every rank, where the
        # non-finite rule below sees it identically, instead of raising on that rank alone
        comp = copy.copy(ctx.compressor)
        comp.check_finite = False
        ctx = dataclasses.replace(ctx, compressor=comp)
    alg = algorithm(ctx) if isinstance(algorithm, type) else algorithm
    problem = ctx.problem
    if hasattr(ctx.compressor, "warm_up"):
        ctx.compressor.warm_up(alg.x)  # JIT compilation stays out of wall_time

    writer: TrajectoryWriter | None = None
    if rank0:
        writer = log(alg) if callable(log) and not isinstance(log, TrajectoryWriter) else log
    has_log = bool(comm.bcast(writer is not None, root=0))

    f_star = float(getattr(problem, "f_star", math.nan))
    x_star = getattr(problem, "x_star", None)

    # -- loop state (identical on every rank) and per-rank accumulators ---------------
    t = 0
    total_up = 0  # sum over ranks of the bits sent, exact
    total_down = 0
    wall = 0.0
    comm_off = comp_off = 0.0
    f0 = math.nan
    local_extra_cum: dict[str, float] = {}
    local_extra_last: dict[str, float] = {}
    if resume is not None:
        loop_state, my_state = resume
        t = int(loop_state["step"])
        total_up = int(loop_state["total_bits_up"])
        total_down = int(loop_state["total_bits_down"])
        wall = float(loop_state["wall_time"])
        f0 = float(loop_state["f0"])
        alg.load_state_dict(my_state.get("alg", {}))
        local = my_state.get("loop", {})
        comm_off = float(local.get("comm_time", 0.0))
        comp_off = float(local.get("compress_time", 0.0))
        local_extra_cum = {k: float(v) for k, v in local.get("extra_cum", {}).items()}
        local_extra_last = {k: float(v) for k, v in local.get("extra_last", {}).items()}

    pbar = _make_progress(progress, steps, progress_every) if rank0 else None
    own_latch = not isinstance(handle_signals, SignalLatch)
    sig = SignalLatch(bool(handle_signals)) if own_latch else handle_signals
    rows: list[dict[str, float]] = []
    last: dict[str, float] = {}
    skipped = 0

    def metrics() -> dict[str, float]:
        x = alg.x
        xp = array_module(x)
        loss = float(problem.loss(x))
        g = problem.grad(x)
        grad_norm = float(xp.linalg.norm(g))
        dist = float(xp.linalg.norm(x - xp.asarray(x_star))) if x_star is not None else math.nan
        c, k = _stats_times(alg)
        local = {
            "comm_time": comm_off + c,
            "compress_time": comp_off + k,
            **{n: v for n, v in local_extra_cum.items()},
            **{n: v for n, v in local_extra_last.items()},
        }
        gathered = comm.allgather(local)
        names = sorted({n for d in gathered for n in d})
        mean = {n: sum(d.get(n, math.nan) for d in gathered) / P for n in names}
        return {
            "step": t,
            "loss": loss,
            "suboptimality": loss - f_star,
            "dist_to_opt": dist,
            "grad_norm": grad_norm,
            "bits_up": total_up / P,
            "bits_down": total_down / P,
            "wall_time": wall,
            **mean,
        }

    def log_row() -> dict[str, float]:
        nonlocal last
        row = metrics()
        last = row
        if rank0:
            rows.append(row)
            if writer is not None:
                writer.append(row)
        return row

    def checkpoint() -> None:
        c, k = _stats_times(alg)
        state = {
            "alg": alg.state_dict(),
            "loop": {
                "comm_time": comm_off + c,
                "compress_time": comp_off + k,
                "extra_cum": dict(local_extra_cum),
                "extra_last": dict(local_extra_last),
            },
        }
        loop_state = {
            "step": t,
            "total_bits_up": total_up,
            "total_bits_down": total_down,
            "wall_time": wall,
            "f0": f0,
            "n_ranks": P,
        }
        save_checkpoint(writer, comm, state, loop_state)

    def diverged(row: dict[str, float]) -> bool:
        loss = row["loss"]
        if not math.isfinite(loss):
            return True
        f_ref = f_star if math.isfinite(f_star) else 0.0
        scale = max(f0 - f_ref, 1e-12 * max(1.0, abs(f_ref)))
        return loss - f_ref > diverge_factor * scale

    status, reason, message = "completed", "steps", ""
    error: BaseException | None = None
    try:
        if resume is None:
            row = log_row()
            f0 = row["loss"]
            if pbar:
                pbar.update(0, row)
        logged_at = t
        while True:
            # stopping rules that need no new step
            if t >= steps:
                break
            snapshot = _copy_state(alg.state_dict()) if on_nonfinite == "skip" else None
            t_start = time.perf_counter()
            cost: StepCost = alg.step(t)
            x = alg.x
            bad = 0 if bool(array_module(x).isfinite(x).all()) else 1
            ctrl = np.array(
                [int(cost.bits_up), int(cost.bits_down), 1 if sig.received else 0, bad],
                dtype=np.int64,
            )
            comm.Allreduce(MPI.IN_PLACE, ctrl, op=MPI.SUM)
            wall += time.perf_counter() - t_start
            total_up += int(ctrl[0])
            total_down += int(ctrl[1])
            for n, v in cost.extra.items():
                if "bits" in n:
                    local_extra_cum[n] = local_extra_cum.get(n, 0.0) + float(v)
                else:
                    local_extra_last[n] = float(v)
            if rank0 and writer is not None and not writer.started:
                writer.start(sorted({*cost.extra, *getattr(alg, "extra_metrics", ())}))
            t += 1
            if ctrl[3]:
                if on_nonfinite == "skip":
                    alg.load_state_dict(snapshot)
                    skipped += 1
                else:
                    status, reason = "failed", "nonfinite"
                    message = f"the iterate became NaN/Inf in step {t - 1}"
                    break
            stop_signal = bool(ctrl[2])
            budget = max_bits is not None and total_up / P >= max_bits
            row = None
            if t % log_every == 0 or t >= steps or stop_signal or budget:
                row = log_row()
                logged_at = t
                if diverged(row):
                    status, reason = "diverged", "diverged"
                    message = f"loss {row['loss']:.6g} at step {t} exceeds the divergence threshold"
                    break
                if target is not None and row["suboptimality"] <= target:
                    reason = "target"
                    break
            if pbar:
                pbar.update(t, last)
            if checkpoint_every and t % checkpoint_every == 0 and has_log:
                checkpoint()
            if stop_signal:
                name = signal.Signals(sig.received).name if sig.received else "a signal"
                status, reason = "interrupted", "signal"
                message = f"stopped by {name} after step {t}; resume with --resume"
                if has_log and not (checkpoint_every and t % checkpoint_every == 0):
                    checkpoint()
                break
            if budget:
                reason = "max_bits"
                break
        if logged_at != t and status != "failed":
            log_row()
    except BaseException as exc:
        error = exc
        status, reason, message = "failed", "exception", f"{type(exc).__name__}: {exc}"
    finally:
        if own_latch:
            sig.restore()
        if pbar:
            pbar.update(t, last, force=True)
            pbar.close(message)
        if writer is not None:
            try:
                x_final = to_host(alg.x) if status != "failed" or error is None else None
            except Exception:
                x_final = None
            try:
                writer.close(
                    status,
                    x_final=x_final,
                    extra_attrs={
                        "stop_reason": reason,
                        "message": message,
                        "steps_done": t,
                        "skipped_steps": skipped,
                    },
                )
            except Exception as exc:  # e.g. a full disk: report the first error, once
                writer.abandon()
                if error is None:
                    error = OSError(f"cannot finish the log {writer.path}: {exc}")
    if error is not None:
        raise error
    if reason == "nonfinite":
        raise NonFiniteError(message)
    return RunResult(
        status=status, stop_reason=reason, steps=t, last=last, skipped=skipped, rows=rows
    )
