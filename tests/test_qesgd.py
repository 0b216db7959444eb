"""QESGD's stage schedule and argument checks (no MPI)."""

import pytest

from ecmpi.algorithms.qesgd import StageSchedule


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
