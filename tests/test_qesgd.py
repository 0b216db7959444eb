"""Epoch-SGD's stage schedule (QESGD, epoch-sgd and sgd's stagewise) and its checks (no MPI)."""

import pytest

from ecmpi.algorithms import qesgd
from ecmpi.algorithms.schedules import StageSchedule
from ecmpi.algorithms.sgd import stages, step_size


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
