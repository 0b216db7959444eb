"""Epoch-SGD's stage schedule and its checks; QESGD's recursion on one process (COMM_SELF)."""

import numpy as np
import pytest
from mpi4py import MPI

import ecmpi
from ecmpi.algorithms import RunContext, get, qesgd
from ecmpi.algorithms.schedules import StageSchedule
from ecmpi.algorithms.sgd import minibatch, stages, step_size
from ecmpi.problems import make


def test_stage_lengths_and_steps():
    s = StageSchedule(0.8, 3, decay=0.5, growth=2.0)
    assert [s.stage_length(k) for k in range(4)] == [3, 6, 12, 24]
    assert [s.locate(t) for t in (0, 2, 3, 8, 9, 20, 21)] == [
        (0, 0),
        (0, 2),
        (1, 0),
        (1, 5),
        (2, 0),
        (2, 11),
        (3, 0),
    ]
    assert [s.eta(k) for k in range(3)] == [0.8, 0.4, 0.2]


def test_constant_schedule_is_one_long_sgd():
    s = StageSchedule(0.1, 5, decay=1.0, growth=1.0)
    assert s.locate(12) == (2, 2)
    assert s.eta(2) == 0.1


def test_fractional_growth_rounds():
    s = StageSchedule(1.0, 2, growth=1.5)
    assert [s.stage_length(k) for k in range(4)] == [2, 3, 4, 7]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0.0, 3), "lr"),
        ((float("nan"), 3), "lr"),
        ((0.1, 0), "stage_length"),
        ((0.1, 2.5), "stage_length"),
        ((0.1, 3, 0.0), "lr_decay"),
        ((0.1, 3, 1.5), "lr_decay"),
        ((0.1, 3, 0.5, 0.5), "stage_growth"),
    ],
)
def test_bad_schedule(args, match):
    with pytest.raises(ValueError, match=match):
        StageSchedule(*args)


def test_negative_step():
    with pytest.raises(ValueError, match="step"):
        StageSchedule(0.1, 3).locate(-1)


def test_one_schedule_for_every_driver():
    assert qesgd.StageSchedule is StageSchedule
    p = {"t0": 1.0, "stage_steps": 3, "stage_growth": 2.0, "decay": 0.5}
    assert isinstance(stages(0.8, p), StageSchedule) and stages(0.8, p).compound
    s = StageSchedule(0.8, 3, decay=0.5, growth=2.0)
    assert [step_size(0.8, t, "stagewise", p) for t in range(40)] == [
        s.step_size(t) for t in range(40)
    ]


def test_compound_lengths_round_each_stage():
    # sgd's stagewise: T_{k+1} = round(T_k * growth); 4.5 rounds to 4, then 4 * 1.5 = 6
    s = StageSchedule(1.0, 2, growth=1.5, compound=True)
    assert [s.stage_length(k) for k in range(4)] == [2, 3, 4, 6]
    assert s.locate(9) == (3, 0)
    p = {"t0": 1.0, "stage_steps": 2, "stage_growth": 1.5, "decay": 0.5}
    assert [step_size(1.0, t, "stagewise", p) for t in (0, 1, 2, 4, 5, 8, 9, 14, 15)] == [
        1.0,
        1.0,
        0.5,
        0.5,
        0.25,
        0.25,
        0.125,
        0.125,
        0.0625,
    ]


def test_errors_name_the_callers_options():
    p = {"stage_steps": 3, "stage_growth": 2.0, "decay": 1.5}
    with pytest.raises(ValueError, match=r"^decay"):
        stages(0.1, p)
    with pytest.raises(ValueError, match=r"^stage_steps"):
        stages(0.1, {**p, "decay": 0.5, "stage_steps": 0})
    with pytest.raises(ValueError, match="stage"):
        StageSchedule(0.1, 3).stage_length(-1)


# -- the QESGD recursion at P = 1 (COMM_SELF: the server is the only worker) ------------------


def _qesgd(spec, steps_in_stage=20, **params):
    prob = make("logreg", "synthetic:n=400,d=40,seed=3", comm=MPI.COMM_SELF)
    ctx = RunContext(
        problem=prob,
        comm=MPI.COMM_SELF,
        compressor=ecmpi.compressor(spec),
        collective="ps",
        seed=7,
        lr=1.0,
        batch_size=4,
        params={"stage_length": steps_in_stage, "stage_growth": 2.0, "lr_decay": 0.5, **params},
    )
    return prob, ctx, get("qesgd")(ctx)


def test_qesgd_equals_its_specification():
    """Step 2 and 3 of the docstring written out with the compressor's encode/decode."""
    spec = "qsgd:levels=2,bucket=8,norm=linf"
    prob, ctx, alg = _qesgd(spec, steps_in_stage=3)
    Q = ctx.compressor
    s = 1.0 / (1.0 + Q.omega(prob.d))  # --ef-scale auto
    assert alg.scale_up == alg.scale_down == s
    w_hat = np.zeros(prob.d)
    w = np.zeros(prob.d)
    e = np.zeros(prob.d)
    for t in range(10):
        eta = 1.0 * 0.5 ** (0 if t < 3 else 1 if t < 9 else 2)
        u = -eta * prob.batch_grad(w_hat, minibatch(ctx, t))
        m = u + e
        q = Q.decode(Q.encode(m, seed=(7, t, 0), rank=0))
        e = m - np.float64(s) * q
        w = w + s * (q / 1)  # the mean over P = 1 worker
        qd = Q.decode(Q.encode(w - w_hat, seed=(7, t, 1), rank=1))
        w_hat = w_hat + s * qd
        alg.step(t)
        assert np.array_equal(alg.x, w_hat), t
        assert np.array_equal(alg.state_dict()["residual"], e), t
        assert np.array_equal(alg.state_dict()["w_server"], w), t
    assert np.abs(w_hat).max() > 1e-2


def test_qesgd_quantization_error_shrinks_across_stages():
    """The quantized vector and its error are O(eta_k G): about halved at every stage."""
    T0 = 20
    _, _, alg = _qesgd("qsgd:levels=3,bucket=8,norm=linf", steps_in_stage=T0)
    norms, errors, down = [], [], []
    for t in range(T0 * (1 + 2 + 4)):
        c = alg.step(t)
        norms.append(c.extra["quant_norm_up"])
        errors.append(c.extra["quant_error_up"])
        down.append(np.linalg.norm(alg.state_dict()["w_server"] - alg.x))
    # the second half of each stage (residuals settled to the stage's step)
    halves = [(T0 // 2, T0), (2 * T0, 3 * T0), (5 * T0, 7 * T0)]
    for series in (norms, errors, down):
        per_stage = [np.mean(series[a:b]) for a, b in halves]
        assert per_stage[0] > 0
        # eta halves: the bound halves; 0.75 leaves room for the gradient noise's changes
        assert per_stage[1] < 0.75 * per_stage[0], per_stage
        assert per_stage[2] < 0.75 * per_stage[1], per_stage
