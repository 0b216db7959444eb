"""The step loop's pieces that need no MPI: its state in a checkpoint, the stop decision,
the bits counted from an algorithm's CommStats, the interface's defaults."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ecmpi
from ecmpi.algorithms.base import Algorithm, RunContext, StepCost, counted_step
from ecmpi.algorithms.loop_state import LoopState
from ecmpi.algorithms.stopping import (
    StepFlags,
    Stop,
    StopRules,
    decide_stop,
    diverged,
    row_due,
)
from ecmpi.comm.stats import CommStats
from ecmpi.log import pack_state, unpack_state

# -- LoopState in a checkpoint ------------------------------------------------------------

#: the loop dicts as every log written before LoopState existed stores them
OLD_SHARED = {
    "step": 8,
    "total_bits_up": 2**70 + 3,  # exact beyond int64
    "total_bits_down": 6144,
    "wall_time": 0.125,
    "f0": 16.75,
    "n_ranks": 2,
}
OLD_LOCAL = [
    {
        "comm_time": 0.5,
        "compress_time": 0.25,
        "extra_cum": {"extra_bits": 24.0},
        "extra_last": {"probe": 7.0},
    },
    {"comm_time": 0.75, "compress_time": 0.0, "extra_cum": {}, "extra_last": {}},
]


def _through_blob(shared, locals_):
    states = [{"alg": {"x": np.arange(3.0) + r}, "loop": loc} for r, loc in enumerate(locals_)]
    return unpack_state(pack_state(shared, states))


def test_old_checkpoint_restores_and_writes_back_the_same_dicts():
    shared, states = _through_blob(OLD_SHARED, OLD_LOCAL)
    s0 = LoopState.from_checkpoint(shared, states[0]["loop"])
    assert s0 == LoopState(
        n_ranks=2,
        step=8,
        total_bits_up=2**70 + 3,
        total_bits_down=6144,
        wall_time=0.125,
        f0=16.75,
        comm_time_before=0.5,
        compress_time_before=0.25,
        extra_cum={"extra_bits": 24.0},
        extra_last={"probe": 7.0},
    )
    assert s0.bits_up == (2**70 + 3) / 2 and s0.bits_down == 3072.0
    # rank 1's empty extras were not stored at all: they read back empty
    assert "extra_cum" not in states[1]["loop"]
    s1 = LoopState.from_checkpoint(shared, states[1]["loop"], n_ranks=2)
    assert s1.extra_cum == {} and s1.extra_last == {} and s1.comm_time_before == 0.75
    # with no time since the resume, the state writes back exactly what it read
    for s, loc in ((s0, OLD_LOCAL[0]), (s1, OLD_LOCAL[1])):
        out_shared, out_local = s.to_checkpoint(0.0, 0.0)
        assert out_shared == OLD_SHARED and list(out_shared) == list(OLD_SHARED)
        assert out_local == loc and list(out_local) == list(loc)
        assert {k: type(v) for k, v in out_shared.items()} == {
            k: type(v) for k, v in OLD_SHARED.items()
        }


def test_round_trip_through_pack_state():
    s = LoopState(n_ranks=3, f0=2.5, comm_time_before=1.0, compress_time_before=0.5)
    s.record_step(30, 60, 0.25, {"entropy_bits_up": 4.5, "saturated": 2.0})
    s.record_step(31, 62, 0.5, {"entropy_bits_up": 1.5, "saturated": 0.0})
    s.skipped = 1  # not part of a checkpoint
    shared, local = s.to_checkpoint(0.125, 0.0625)
    assert local["comm_time"] == 1.125 and local["compress_time"] == 0.5625
    got_shared, states = _through_blob(shared, [local])
    back = LoopState.from_checkpoint(got_shared, states[0]["loop"])
    assert back.to_checkpoint(0.0, 0.0) == (shared, local)
    assert (back.step, back.total_bits_up, back.total_bits_down) == (2, 61, 122)
    assert back.wall_time == 0.75 and back.f0 == 2.5 and back.skipped == 0
    assert back.extra_cum == {"entropy_bits_up": 6.0} and back.extra_last == {"saturated": 0.0}


def test_nan_f0_and_missing_local_dict():
    shared = {**OLD_SHARED, "f0": math.nan}
    got, _ = _through_blob(shared, OLD_LOCAL)
    s = LoopState.from_checkpoint(got, None)
    assert math.isnan(s.f0) and s.comm_time_before == 0.0 and s.extra_last == {}


def test_record_step_and_local_columns():
    s = LoopState(n_ranks=2, comm_time_before=1.0)
    assert s.local_columns(0.0, 0.0) == {"comm_time": 1.0, "compress_time": 0.0}
    s.record_step(10, 20, 0.5, {"extra_bits": 3.0, "probe": 0.0})
    s.record_step(10, 20, 0.25, {"extra_bits": 3.0, "probe": 1.0})
    assert s.step == 2 and s.bits_up == 10.0 and s.bits_down == 20.0 and s.wall_time == 0.75
    assert s.local_columns(0.5, 0.25) == {
        "comm_time": 1.5,
        "compress_time": 0.25,
        "extra_bits": 6.0,
        "probe": 1.0,
    }


# -- the stop decision ---------------------------------------------------------------------


def _state(step=5, bits_up=0, f0=1.0, n_ranks=2):
    return LoopState(n_ranks=n_ranks, step=step, total_bits_up=bits_up * n_ranks, f0=f0)


def _row(loss, f_star=0.0):
    return {"loss": loss, "suboptimality": loss - f_star}


NONE = StepFlags()
SIGNAL = StepFlags(signal=True)
NAN = StepFlags(nonfinite=True)


def test_goes_on_when_no_rule_applies():
    rules = StopRules(steps=10, target=1e-6, max_bits=100.0, f_star=0.0)
    assert decide_stop(_state(), NONE, None, rules) is None
    assert decide_stop(_state(), NONE, _row(0.5), rules) is None
    assert decide_stop(_state(bits_up=99), NONE, None, rules) is None


def test_each_rule_alone():
    rules = StopRules(steps=10, target=1e-6, max_bits=100.0, f_star=0.0)
    assert decide_stop(_state(), NAN, None, rules) == Stop("failed", "nonfinite")
    assert decide_stop(_state(), NONE, _row(1e7), rules) == Stop("diverged", "diverged")
    assert decide_stop(_state(), NONE, _row(math.inf), rules) == Stop("diverged", "diverged")
    assert decide_stop(_state(), NONE, _row(math.nan), rules) == Stop("diverged", "diverged")
    assert decide_stop(_state(), NONE, _row(1e-6), rules) == Stop("completed", "target")
    assert decide_stop(_state(), SIGNAL, None, rules) == Stop("interrupted", "signal")
    assert decide_stop(_state(bits_up=100), NONE, None, rules) == Stop("completed", "max_bits")
    assert decide_stop(_state(step=10), NONE, None, rules) == Stop("completed", "steps")


def test_rule_order():
    rules = StopRules(steps=10, target=1.0, max_bits=100.0, f_star=0.0)
    spent = _state(step=10, bits_up=100)
    assert decide_stop(spent, StepFlags(True, True), _row(0.5), rules).reason == "nonfinite"
    # a row is checked before the signal and the budgets; divergence before the target
    assert decide_stop(spent, SIGNAL, _row(0.5), rules).reason == "target"
    assert decide_stop(spent, SIGNAL, _row(1e7), rules).reason == "diverged"
    assert decide_stop(spent, SIGNAL, None, rules).reason == "signal"
    assert decide_stop(spent, NONE, None, rules).reason == "max_bits"
    # target and divergence need a row
    assert decide_stop(_state(), NONE, None, rules) is None


def test_skip_mode_does_not_stop_and_at_once():
    rules = StopRules(steps=10, on_nonfinite="skip")
    assert decide_stop(_state(), NAN, None, rules) is None
    assert [Stop("x", r).at_once for r in ("nonfinite", "diverged", "target")] == [True] * 3
    assert not any(Stop("x", r).at_once for r in ("signal", "max_bits", "steps"))


def test_divergence_threshold():
    known = StopRules(steps=1, diverge_factor=10.0, f_star=1.0)
    assert not diverged(1.0 + 10 * 3.0, 4.0, known)  # f - f* = 10 (f0 - f*)
    assert diverged(1.0 + 10 * 3.0 + 1e-9, 4.0, known)
    unknown = StopRules(steps=1, diverge_factor=10.0)  # f_ref = 0
    assert not diverged(40.0, 4.0, unknown) and diverged(40.5, 4.0, unknown)
    # f0 at the optimum: the scale is 1e-12 * max(1, |f*|)
    assert diverged(1.0 + 2e-11, 1.0, known) and not diverged(1.0 + 5e-12, 1.0, known)


def test_row_due():
    rules = StopRules(steps=10, log_every=3, max_bits=100.0)
    due = [t for t in range(1, 11) if row_due(_state(step=t), NONE, rules)]
    assert due == [3, 6, 9, 10]
    assert row_due(_state(step=4), SIGNAL, rules)
    assert row_due(_state(step=4, bits_up=100), NONE, rules)
    assert not row_due(_state(step=3), NAN, rules)  # the failed iterate is not logged
    assert row_due(_state(step=3), NAN, StopRules(steps=10, log_every=3, on_nonfinite="skip"))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"steps": -1}, "steps must be"),
        ({"steps": 2.5}, "steps must be"),
        ({"log_every": 0}, "log_every must be"),
        ({"on_nonfinite": "ignore"}, "on_nonfinite must be"),
        ({"target": -1.0}, "target must be"),
        ({"target": math.nan}, "target must be"),
        ({"max_bits": 0}, "max_bits must be"),
        ({"diverge_factor": 0.0}, "diverge_factor must be"),
    ],
)
def test_rules_are_checked(kw, match):
    with pytest.raises(ValueError, match=match):
        StopRules(**{"steps": 1, **kw})


# -- bits counted from CommStats, the interface's defaults -------------------------------------


class _Counting(Algorithm):
    """Sends ``calls`` messages of 5 and receives 7 bytes per step through its CommStats."""

    name = "counting"

    def __init__(self, ctx, calls=1, cost=None, stats=True):
        super().__init__(ctx)
        self.calls, self.cost = calls, cost
        if stats:
            self.stats = CommStats()
        self._x = np.zeros(3)

    @property
    def x(self):
        return self._x

    def step(self, t):
        for _ in range(self.calls):
            call = CommStats()
            call.sent(5)
            call.received(7)
            self.stats.merge_call(call)
        return self.cost


def _plain_ctx(compressor=None):
    return RunContext(problem=None, comm=None, compressor=compressor)


def test_counted_step_from_stats():
    alg = _Counting(_plain_ctx(), calls=3, cost=StepCost(extra={"probe": 1.0}))
    alg.stats.sent(1000)  # before the step: not this step's
    for t in range(2):
        cost = counted_step(alg, t)
        assert (cost.bits_up, cost.bits_down) == (8 * 15, 8 * 21)
        assert cost.extra == {"probe": 1.0}
    one = counted_step(_Counting(_plain_ctx(), calls=1, cost=None), 0)
    assert (one.bits_up, one.bits_down, one.extra) == (40, 56, {})


def test_counted_step_keeps_the_bits_a_step_sets():
    alg = _Counting(_plain_ctx(), cost=StepCost(bits_up=17, extra={"range": 2.0}))
    cost = counted_step(alg, 0)
    assert (cost.bits_up, cost.bits_down, cost.extra) == (17, 56, {"range": 2.0})
    alg = _Counting(_plain_ctx(), calls=0, cost=StepCost(bits_up=3, bits_down=4), stats=False)
    assert alg.stats is None
    assert (counted_step(alg, 0).bits_up, counted_step(alg, 0).bits_down) == (3, 4)
    alg = _Counting(_plain_ctx(), calls=0, cost=None, stats=False)
    assert (counted_step(alg, 0).bits_up, counted_step(alg, 0).bits_down) == (0, 0)


def test_interface_defaults():
    assert Algorithm.stats is None and Algorithm.extra_metrics == ()
    ctx = _plain_ctx()
    assert _Counting.loop_context(ctx) is ctx  # no compressor: nothing to change
    _Counting(ctx).warm_up()  # no compressor: nothing to compile


def test_loop_context_passes_nonfinite_through_on_a_copy(monkeypatch):
    c = ecmpi.compressor("qsgd:levels=4")
    ctx = _plain_ctx(c)
    built = _Counting.loop_context(ctx)
    assert built is not ctx and built.compressor is not c
    assert built.compressor.check_finite is False and built.compressor.spec == c.spec
    assert c.check_finite is True and ctx.compressor is c
    off = _plain_ctx(ecmpi.compressor("qsgd:levels=4", check_finite=False))
    assert _Counting.loop_context(off) is off
    seen = []
    monkeypatch.setattr(type(c), "warm_up", lambda self, like: seen.append((self, like)))
    alg = _Counting(built)
    alg.warm_up()
    assert seen == [(built.compressor, alg.x)]
