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
  ranks of the bits each rank sent (up) and received (down), counted from the
  real payload sizes in the algorithm's ``stats`` unless its
  :class:`StepCost` sets them (:func:`ecmpi.algorithms.base.counted_step`);
- ``wall_time``: seconds rank 0 spent inside steps (metric evaluation,
  logging and checkpoints excluded); ``comm_time`` and ``compress_time``:
  rank means of the algorithm's ``self.stats`` (:class:`ecmpi.CommStats`:
  ``communicate_seconds``; ``encode_seconds + decode_seconds``), 0 without it;
- the problem's own columns (``problem.metric_names``, e.g. mlp's ``test_accuracy``
  and ``test_loss``), from ``problem.metrics(x)``; a problem without a known
  optimum (``knows_optimum`` False) has NaN ``suboptimality`` and ``dist_to_opt``;
- extras from ``StepCost.extra``: rank means; a name containing ``bits`` is
  summed over steps (cumulative, like ``bits_up``), any other is the value
  reported by the last step (NaN in the row of step 0).

Stopping (:mod:`ecmpi.algorithms.stopping`): ``steps`` reached; ``target``:
f - f* <= target at a logged row; ``max_bits``: ``bits_up`` reached the budget
(checked every step); divergence: at a logged row the loss is non-finite or
``f - f_ref > diverge_factor * (f(x0) - f_ref)`` (f_ref = f* if known, else 0):
status ``diverged``; a non-finite iterate: status ``failed`` and
:class:`NonFiniteError` (``on_nonfinite="error"``), or the step is undone
and the run goes on (``"skip"``); SIGTERM/SIGUSR1/SIGINT: checkpoint at the next
step boundary, status ``interrupted`` (resumable).

The counters that survive a resume are a :class:`LoopState`
(:mod:`ecmpi.algorithms.loop_state` lists the checkpoint's keys).

Determinism: rows depend only on the algorithm, the data, the seed and the
rank count (timings aside), and a run resumed from a checkpoint continues
the same trajectory bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from .._backend import array_module, to_host
from ..errors import NonFiniteError, RunError, SetupInterrupted
from ..log import TrajectoryWriter, save_checkpoint
from ..progress import Progress
from .base import Algorithm, RunContext, StepCost, counted_step
from .loop_state import LoopState
from .stopping import (
    ON_NONFINITE,
    STEPS_DONE,
    StepFlags,
    Stop,
    StopRules,
    decide_stop,
    row_due,
)

if TYPE_CHECKING:
    from ..comm.stats import CommStats

__all__ = ["ON_NONFINITE", "NonFiniteError", "RunError", "RunResult", "SignalLatch", "run"]

#: the signals that stop a run with a checkpoint (status ``interrupted``)
_SIGNALS = tuple(
    s
    for s in (
        getattr(signal, "SIGTERM", None),
        getattr(signal, "SIGUSR1", None),
        getattr(signal, "SIGINT", None),
    )
    if s
)


@dataclass
class RunResult:
    """How a run ended.

    Attributes:
        status: ``completed``, ``diverged``, ``interrupted`` or ``failed``.
        stop_reason: ``steps``, ``target``, ``max_bits``, ``diverged``,
            ``signal``, ``nonfinite``, ``exception``.
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


class SignalLatch:
    """Records SIGTERM/SIGUSR1/SIGINT instead of dying (main thread only).

    SIGINT (Ctrl-C, or ``mpiexec`` forwarding it) is treated as SIGTERM: checkpoint and
    stop, status ``interrupted``. A second SIGINT raises :class:`KeyboardInterrupt` at
    once, for a run stuck outside the loop.

    :func:`run` makes one for its own duration. A program may install one for longer
    (``ecmpi run`` does, from its start to its exit) and pass it as ``handle_signals``,
    so that one after the loop no longer kills a run that has already ended. Made with
    ``setup=True``, the latch is in its setup phase until :func:`run` is about to create
    the log (:meth:`end_setup`): a signal then raises
    :class:`~ecmpi.errors.SetupInterrupted` at once instead of waiting for the first step
    (loading or building the data can take long; there is nothing to checkpoint yet).
    """

    def __init__(self, enabled: bool = True, *, setup: bool = False):
        self.received: int = 0
        self.setup = bool(setup)
        self._old: dict[int, Any] = {}
        if enabled and threading.current_thread() is threading.main_thread():
            for s in _SIGNALS:
                self._old[s] = signal.signal(s, self._handler)

    def _handler(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        if self.setup:
            self.setup = False  # once: a second signal is only recorded
            raise SetupInterrupted(signum)

    def end_setup(self) -> None:
        """Leave the setup phase: from now on a signal stops the run at a step boundary."""
        self.setup = False

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


def _copy_state(state: Any) -> Any:
    if isinstance(state, dict):
        return {k: _copy_state(v) for k, v in state.items()}
    if hasattr(state, "copy") and hasattr(state, "dtype"):
        return state.copy()
    return state


def _seconds(stats: CommStats | None) -> tuple[float, float]:
    """``(communicate, encode + decode)`` seconds of ``stats`` (zeros without)."""
    if stats is None:
        return 0.0, 0.0
    return float(stats.communicate_seconds), float(stats.encode_seconds) + float(
        stats.decode_seconds
    )


def _agreed_step(
    alg: Algorithm, t: int, comm: Any, sig: SignalLatch
) -> tuple[StepCost, int, int, StepFlags, float]:
    """Step ``t``, then one Allreduce of (bits up, bits down, signal, non-finite).

    Returns this rank's cost, the bits summed over ranks, the agreed flags and
    the seconds of the step (the Allreduce included).
    """
    from mpi4py import MPI

    t_start = time.perf_counter()
    cost = counted_step(alg, t)
    x = alg.x
    bad = 0 if bool(array_module(x).isfinite(x).all()) else 1
    ctrl = np.array(
        [int(cost.bits_up), int(cost.bits_down), 1 if sig.received else 0, bad],
        dtype=np.int64,
    )
    comm.Allreduce(MPI.IN_PLACE, ctrl, op=MPI.SUM)
    seconds = time.perf_counter() - t_start
    flags = StepFlags(signal=bool(ctrl[2]), nonfinite=bool(ctrl[3]))
    return cost, int(ctrl[0]), int(ctrl[1]), flags, seconds


class _Rows:
    """The trajectory rows: metrics computed collectively, kept and written on rank 0."""

    def __init__(self, problem: Any, comm: Any, writer: TrajectoryWriter | None):
        self.problem = problem
        self.comm = comm
        self.writer = writer
        known = getattr(problem, "knows_optimum", True)
        self.f_star = float(getattr(problem, "f_star", math.nan)) if known else math.nan
        self.x_star = getattr(problem, "x_star", None) if known else None
        self.rows: list[dict[str, float]] = []
        self.last: dict[str, float] = {}
        self.logged_at = -1

    def metrics(self, alg: Algorithm, state: LoopState) -> dict[str, float]:
        """The row of the module docstring (collective)."""
        x = alg.x
        xp = array_module(x)
        loss = float(self.problem.loss(x))
        g = self.problem.grad(x)
        grad_norm = float(xp.linalg.norm(g))
        x_star = self.x_star
        dist = float(xp.linalg.norm(x - xp.asarray(x_star))) if x_star is not None else math.nan
        own = self.problem.metrics(x) if hasattr(self.problem, "metrics") else {}
        gathered = self.comm.allgather(state.local_columns(*_seconds(alg.stats)))
        names = sorted({n for d in gathered for n in d})
        P = self.comm.size
        mean = {n: sum(d.get(n, math.nan) for d in gathered) / P for n in names}
        return {
            "step": state.step,
            "loss": loss,
            "suboptimality": loss - self.f_star,
            "dist_to_opt": dist,
            "grad_norm": grad_norm,
            "bits_up": state.bits_up,
            "bits_down": state.bits_down,
            "wall_time": state.wall_time,
            **own,
            **mean,
        }

    def log(self, alg: Algorithm, state: LoopState) -> dict[str, float]:
        """Compute the row of ``state.step``, keep it and write it (rank 0)."""
        row = self.metrics(alg, state)
        self.last = row
        self.logged_at = state.step
        if self.comm.rank == 0:
            self.rows.append(row)
            if self.writer is not None:
                self.writer.append(row)
        return row


def _checkpoint(writer: TrajectoryWriter | None, comm: Any, alg: Algorithm, s: LoopState) -> None:
    """Collective: every rank's ``{"alg": state_dict, "loop": ...}`` and the shared loop dict."""
    shared, local = s.to_checkpoint(*_seconds(alg.stats))
    save_checkpoint(writer, comm, {"alg": alg.state_dict(), "loop": local}, shared)


def _message(stop: Stop, state: LoopState, row: dict[str, float], sig: SignalLatch) -> str:
    """The log's ``message`` for a stop (empty for a normal end)."""
    if stop.reason == "nonfinite":
        return f"the iterate became NaN/Inf in step {state.step - 1}"
    if stop.reason == "diverged":
        return f"loss {row['loss']:.6g} at step {state.step} exceeds the divergence threshold"
    if stop.reason == "signal":
        name = signal.Signals(sig.received).name if sig.received else "a signal"
        return f"stopped by {name} after step {state.step}; resume with --resume"
    return ""


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
        algorithm: an :class:`Algorithm` subclass (built here from
            ``algorithm.loop_context(ctx)``) or an instance.
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
    rules = StopRules(
        steps=steps,
        target=target,
        max_bits=max_bits,
        log_every=log_every,
        on_nonfinite=on_nonfinite,
        diverge_factor=diverge_factor,
    )
    if int(checkpoint_every) != checkpoint_every or checkpoint_every < 0:
        raise ValueError(
            f"checkpoint_every must be a non-negative integer, got {checkpoint_every!r}"
        )

    comm = ctx.comm
    rank0 = comm.rank == 0
    if isinstance(algorithm, type):
        ctx = algorithm.loop_context(ctx)
        alg = algorithm(ctx)
    else:
        alg = algorithm
    alg.warm_up()  # JIT compilation stays out of wall_time

    if isinstance(handle_signals, SignalLatch):
        handle_signals.end_setup()  # from here on, signals wait for a step boundary
    # no log before every rank has left its setup phase: a signal that ends one rank's
    # setup (and the job) cannot leave a log behind
    comm.Barrier()
    writer: TrajectoryWriter | None = None
    if rank0:
        writer = log(alg) if callable(log) and not isinstance(log, TrajectoryWriter) else log
    has_log = bool(comm.bcast(writer is not None, root=0))
    traj = _Rows(ctx.problem, comm, writer)
    rules = dataclasses.replace(rules, f_star=traj.f_star)

    state = LoopState(n_ranks=comm.size)
    if resume is not None:
        shared, mine = resume
        state = LoopState.from_checkpoint(shared, mine.get("loop", {}), n_ranks=comm.size)
        alg.load_state_dict(mine.get("alg", {}))

    pbar = _make_progress(progress, steps, progress_every) if rank0 else None
    own_latch = not isinstance(handle_signals, SignalLatch)
    sig = SignalLatch(bool(handle_signals)) if own_latch else handle_signals

    stop = Stop("completed", "steps")
    message = ""
    error: BaseException | None = None
    try:
        if resume is None:
            state.f0 = traj.log(alg, state)["loss"]
            if pbar:
                pbar.update(0, traj.last)
        traj.logged_at = state.step
        stop = STEPS_DONE if state.step >= rules.steps else None
        while stop is None:
            skip = rules.on_nonfinite == "skip"
            snapshot = _copy_state(alg.state_dict()) if skip else None
            cost, up, down, flags, seconds = _agreed_step(alg, state.step, comm, sig)
            state.record_step(up, down, seconds, cost.extra)
            if rank0 and writer is not None and not writer.started:
                own = getattr(ctx.problem, "metric_names", ())
                writer.start(sorted({*cost.extra, *alg.extra_metrics, *own}))
            if flags.nonfinite and skip:
                alg.load_state_dict(snapshot)
                state.skipped += 1
            row = traj.log(alg, state) if row_due(state, flags, rules) else None
            stop = decide_stop(state, flags, row, rules)
            if stop is not None and stop.at_once:
                break
            if pbar:
                pbar.update(state.step, traj.last)
            periodic = bool(checkpoint_every) and state.step % checkpoint_every == 0
            if periodic and has_log:
                _checkpoint(writer, comm, alg, state)
            if stop is not None and stop.reason == "signal" and has_log and not periodic:
                _checkpoint(writer, comm, alg, state)
        if traj.logged_at != state.step and stop.status != "failed":
            traj.log(alg, state)
        message = _message(stop, state, traj.last, sig)
    except BaseException as exc:
        error = exc
        stop = Stop("failed", "exception")
        message = f"{type(exc).__name__}: {exc}"
    finally:
        if own_latch:
            sig.restore()
        if pbar:
            pbar.update(state.step, traj.last, force=True)
            pbar.close(message)
        if writer is not None:
            try:
                x_final = to_host(alg.x) if stop.status != "failed" or error is None else None
            except Exception:
                x_final = None
            try:
                writer.close(
                    stop.status,
                    x_final=x_final,
                    extra_attrs={
                        "stop_reason": stop.reason,
                        "message": message,
                        "steps_done": state.step,
                        "skipped_steps": state.skipped,
                    },
                )
            except Exception as exc:  # e.g. a full disk: report the first error, once
                writer.abandon()
                if error is None:
                    error = OSError(f"cannot finish the log {writer.path}: {exc}")
    if error is not None:
        raise error
    if stop.reason == "nonfinite":
        raise NonFiniteError(message)
    return RunResult(
        status=stop.status,
        stop_reason=stop.reason,
        steps=state.step,
        last=traj.last,
        skipped=state.skipped,
        rows=traj.rows,
    )
