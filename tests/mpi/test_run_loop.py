"""The run loop under MPI with a small stand-in problem (any number of ranks).

The problem is f(x) = 1/2 sum_i a_i (x_i - b_i)^2 split into node objectives
f_tau = f + s_tau . x with sum_tau s_tau = 0, so x* = b, f* = 0, L = max a,
mu = min a, and gradient descent with step 1/L contracts the error of
coordinate i by exactly (1 - a_i/L) per step.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from ecmpi.algorithms.base import Algorithm, RunContext, StepCost
from ecmpi.algorithms.loop import NonFiniteError, SignalLatch, run
from ecmpi.comm.stats import CommStats
from ecmpi.log import BASE_COLUMNS, TrajectoryWriter, load_checkpoint, open_log
from ecmpi.problems.base import Problem

sys.path.insert(0, str(Path(__file__).parent))
from _helpers import log_path

D = 6


class DiagQuadratic(Problem):
    name = "quadratic"

    def __init__(self, comm, a=(1.0, 2.0, 3.0, 4.0, 5.0, 10.0)):
        self.comm = comm
        self.d = D
        self.a = np.array(a)
        self.b = np.linspace(-1.0, 2.0, D)
        P, r = comm.size, comm.rank
        self.s = 0.1 * (r - (P - 1) / 2.0) * np.arange(1.0, D + 1)
        self.n_local = 8
        self.n_global = 8 * P
        self.dtype = np.float64
        self.l2 = 0.0
        self.weight = 1.0

    def _sum(self, v):
        parts = self.comm.allgather(v)
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        return total / self.comm.size

    def local_loss(self, x):
        return 0.5 * float(np.sum(self.a * (x - self.b) ** 2)) + float(self.s @ x)

    def local_grad(self, x, out=None):
        return self.a * (x - self.b) + self.s

    def batch_grad(self, x, idx, out=None):
        return self.local_grad(x)

    def loss(self, x):
        return self._sum(self.local_loss(x))

    def grad(self, x, out=None):
        return self._sum(self.local_grad(x))

    L = property(lambda self: float(self.a.max()))
    L_local = L
    L_max = L
    mu = property(lambda self: float(self.a.min()))
    x_star = property(lambda self: self.b)
    f_star = property(lambda self: 0.0)


class PlainGD(Algorithm):
    """x <- x - lr * mean_tau grad f_tau(x), exchanged with comm.allgather."""

    name = "plain-gd"
    extra_metrics = ("probe",)

    def __init__(self, ctx):
        super().__init__(ctx)
        self._x = np.zeros(D) if ctx.x0 is None else np.array(ctx.x0, dtype=float)
        self.lr = ctx.lr if ctx.lr is not None else 1.0 / ctx.problem.L
        self.fail_at = ctx.params.get("fail_at")
        self.nan_at = ctx.params.get("nan_at")
        self.signal_at = ctx.params.get("signal_at")

    @property
    def x(self):
        return self._x

    def step(self, t):
        if t == self.fail_at:
            raise RuntimeError(f"planned failure at step {t}")
        if t == self.signal_at and self.ctx.comm.rank == 0:
            os.kill(os.getpid(), signal.SIGUSR1)
        g = self.ctx.problem.grad(self._x)
        self._x = self._x - self.lr * g
        if t == self.nan_at:
            self._x = self._x * np.nan
        return StepCost(
            bits_up=64 * D,
            bits_down=64 * D * (self.ctx.comm.rank + 1),
            extra={"probe": float(t), "extra_bits": 3.0},
        )

    def state_dict(self):
        return {"x": self._x.copy()}

    def load_state_dict(self, state):
        self._x = np.array(state["x"], dtype=float)


class CountedGD(PlainGD):
    """PlainGD whose bits the loop counts from its CommStats: rank r sends 8 (r + 1)
    bytes and receives 16 per step, in 0.5 s of communication."""

    name = "counted-gd"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.stats = CommStats()

    def step(self, t):
        super().step(t)
        call = CommStats(communicate_seconds=0.5)
        call.sent(8 * (self.ctx.comm.rank + 1))
        call.received(16)
        self.stats.merge_call(call)
        return StepCost(extra={"probe": float(t)})


def _ctx(comm, **params):
    lr = params.pop("lr", None)
    return RunContext(
        problem=DiagQuadratic(comm), comm=comm, compressor=None, seed=1, lr=lr, params=params
    )


def _writer(comm, name, **kw):
    if comm.rank != 0:
        return None
    return TrajectoryWriter(
        log_path(comm, name),
        {"algorithm": "plain-gd", "n_ranks": comm.size},
        {"test": name},
        overwrite=True,
        **kw,
    )


def test_linear_rate_and_schema(comm):
    res = run(PlainGD, _ctx(comm), steps=30, log=_writer(comm, "rate"), log_every=1)
    assert res.status == "completed" and res.stop_reason == "steps" and res.steps == 30
    if comm.rank == 0:
        log = open_log(log_path(comm, "rate"))
        tr = log.trajectory
        assert log.status == "completed"
        for name in (*BASE_COLUMNS, "probe", "extra_bits"):
            assert len(tr[name]) == 31, name
        np.testing.assert_array_equal(tr["step"], np.arange(31))
        # GD with step 1/L: coordinate i's error shrinks by exactly 1 - a_i/L per step,
        # so the distance tends to the rate 1 - mu/L = 0.9 and never exceeds it
        a, b = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 10.0]), np.linspace(-1.0, 2.0, D)
        t = np.arange(31)[:, None]
        predicted = np.linalg.norm((1.0 - a / 10.0) ** t * (0.0 - b), axis=1)
        np.testing.assert_allclose(tr["dist_to_opt"], predicted, rtol=1e-9, atol=1e-14)
        ratio = tr["dist_to_opt"][1:] / tr["dist_to_opt"][:-1]
        assert np.all(ratio <= 0.9 + 1e-12) and abs(ratio[-1] - 0.9) < 1e-3
        np.testing.assert_allclose(tr["suboptimality"], tr["loss"] - 0.0)
        assert np.all(np.diff(tr["loss"]) < 0)
        # bits: rank means of what the algorithm reported, exactly
        P = comm.size
        np.testing.assert_array_equal(tr["bits_up"], 64 * D * np.arange(31))
        np.testing.assert_array_equal(tr["bits_down"], 64 * D * np.arange(31) * (P + 1) / 2)
        np.testing.assert_array_equal(tr["extra_bits"][1:], 3.0 * np.arange(1, 31))
        assert np.isnan(tr["extra_bits"][0])
        assert np.isnan(tr["probe"][0]) and np.all(tr["probe"][1:] == np.arange(30))
        assert np.all(np.diff(tr["wall_time"]) >= 0)
        assert np.linalg.norm(log.x_final - np.linspace(-1.0, 2.0, D)) == pytest.approx(
            tr["dist_to_opt"][-1]
        )
        assert log.attrs["stop_reason"] == "steps" and log.attrs["steps_done"] == 30


def test_bits_and_comm_time_counted_from_the_algorithms_stats(comm):
    res = run(CountedGD, _ctx(comm), steps=6, log_every=2)
    if comm.rank == 0:
        P = comm.size
        assert [r["step"] for r in res.rows] == [0, 2, 4, 6]
        for r in res.rows:
            t = r["step"]
            assert r["bits_up"] == 64 * t * (P + 1) / 2 and r["bits_down"] == 128 * t
            assert r["comm_time"] == 0.5 * t and r["compress_time"] == 0.0
        assert res.last["probe"] == 5.0


def test_rerun_is_bitwise_identical(comm):
    runs = [run(PlainGD, _ctx(comm), steps=12, log_every=3).rows for _ in range(2)]
    if comm.rank == 0:
        assert [r["step"] for r in runs[0]] == [0, 3, 6, 9, 12]
        for r0, r1 in zip(*runs):
            for k in r0:
                if k not in ("wall_time", "comm_time", "compress_time"):
                    assert r0[k] == r1[k] or (np.isnan(r0[k]) and np.isnan(r1[k])), k


def test_target_and_bit_budget(comm):
    res = run(PlainGD, _ctx(comm), steps=1000, target=1e-6, log_every=1)
    assert res.stop_reason == "target" and res.last["suboptimality"] <= 1e-6
    assert res.steps < 1000
    res = run(PlainGD, _ctx(comm), steps=1000, max_bits=64 * D * 7.5, log_every=100)
    assert res.stop_reason == "max_bits" and res.steps == 8
    assert res.last["step"] == 8 and res.last["bits_up"] == 64 * D * 8


def test_failure_leaves_failed_status_and_rows(comm):
    with pytest.raises(RuntimeError, match="planned failure"):
        run(PlainGD, _ctx(comm, fail_at=7), steps=20, log=_writer(comm, "fail"), log_every=2)
    if comm.rank == 0:
        log = open_log(log_path(comm, "fail"))
        assert log.status == "failed"
        np.testing.assert_array_equal(log.trajectory["step"], [0, 2, 4, 6])
        assert "planned failure" in log.attrs["message"]


def test_nonfinite_error_and_skip(comm):
    with pytest.raises(NonFiniteError, match="step 4"):
        run(PlainGD, _ctx(comm, nan_at=4), steps=10, log=_writer(comm, "nan"))
    if comm.rank == 0:
        log = open_log(log_path(comm, "nan"))
        assert log.status == "failed" and log.attrs["stop_reason"] == "nonfinite"
        assert list(log.trajectory["step"]) == [0, 1, 2, 3, 4]
    res = run(PlainGD, _ctx(comm, nan_at=4), steps=10, on_nonfinite="skip")
    assert res.status == "completed" and res.skipped == 1
    assert np.isfinite(res.last["loss"])


def test_divergence(comm):
    res = run(
        PlainGD, _ctx(comm, lr=0.25), steps=500, log_every=5, log=_writer(comm, "div")
    )  # lr > 2/L = 0.2: the a=10 coordinate blows up
    assert res.status == "diverged" and res.steps < 500
    if comm.rank == 0:
        assert open_log(log_path(comm, "div")).status == "diverged"


def test_progress_on_rank_0_only(comm):
    buf = io.StringIO()
    run(PlainGD, _ctx(comm), steps=10, progress=buf, progress_every=5)
    out = buf.getvalue()
    if comm.rank == 0:
        assert out.count("step ") >= 2 and "10/10" in out
    else:
        assert out == ""
    assert all(
        s == (o != "") for s, o in zip([True] + [False] * (comm.size - 1), comm.allgather(out))
    )


def _strip(rows):
    return [{k: v for k, v in r.items() if not k.endswith("_time")} for r in rows]


def test_checkpoint_resume_equals_uninterrupted(comm):
    full = run(PlainGD, _ctx(comm), steps=20, log_every=2, log=_writer(comm, "full"))
    # interrupted by SIGUSR1 during step 7: checkpoint after step 8, status interrupted
    res = run(
        PlainGD,
        _ctx(comm, signal_at=7),
        steps=20,
        log_every=2,
        checkpoint_every=5,
        log=_writer(comm, "cut"),
    )
    assert res.status == "interrupted" and res.steps == 8
    path = log_path(comm, "cut")
    if comm.rank == 0:
        assert open_log(path).status == "interrupted"
    state = load_checkpoint(path, comm)
    assert state[0]["step"] == 8
    writer = TrajectoryWriter.resume(path, log_every=2) if comm.rank == 0 else None
    rest = run(PlainGD, _ctx(comm), steps=20, log_every=2, log=writer, resume=state)
    assert rest.status == "completed" and rest.steps == 20
    if comm.rank == 0:
        a = open_log(log_path(comm, "full"))
        b = open_log(path)
        assert b.status == "completed" and b.attrs["resumed"] == 1
        for k in a.trajectory:
            if not k.endswith("_time"):
                np.testing.assert_array_equal(a.trajectory[k], b.trajectory[k], err_msg=k)
        np.testing.assert_array_equal(a.x_final, b.x_final)
        assert _strip(full.rows)[-1] == _strip(rest.rows)[-1]


def test_caller_latch_signal_before_run_stops_at_first_step_and_later_one_is_kept(comm):
    latch = SignalLatch()
    try:
        if comm.rank == 0:
            os.kill(os.getpid(), signal.SIGUSR1)  # during "setup", before the loop exists
        res = run(
            PlainGD,
            _ctx(comm),
            steps=20,
            checkpoint_every=0,
            log=_writer(comm, "early"),
            handle_signals=latch,
        )
        assert res.status == "interrupted" and res.steps == 1
        assert load_checkpoint(log_path(comm, "early"), comm)[0]["step"] == 1
        # the caller's handler stays installed after the loop: a late signal is recorded,
        # not fatal, and a completed run stays completed
        latch.received = 0
        res = run(PlainGD, _ctx(comm), steps=3, handle_signals=latch)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert res.status == "completed" and latch.received == signal.SIGUSR1
        assert signal.getsignal(signal.SIGUSR1) == latch._handler
    finally:
        latch.restore()
    assert signal.getsignal(signal.SIGUSR1) != latch._handler
