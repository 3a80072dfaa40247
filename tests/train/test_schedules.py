"""Schedules hit their endpoints, have the right shape in between, and reject bad settings."""

import math

import pytest

from agentrl.train.rl_config import RLConfig
from agentrl.train.schedules import ScheduleConfig


def _values(kind, start=1.0, end=0.5, steps=4):
    s = ScheduleConfig(kind=kind, start=start, end=end, steps=steps).build()
    return [s.value(i) for i in range(steps + 3)]


def test_linear():
    assert _values("linear") == [1.0, 0.875, 0.75, 0.625, 0.5, 0.5, 0.5]


def test_cosine():
    v = _values("cosine")
    assert v[0] == 1.0 and v[4:] == [0.5, 0.5, 0.5]
    assert v[2] == pytest.approx(0.75)  # halfway
    assert v[1] == pytest.approx(0.5 + 0.5 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert all(a >= b for a, b in zip(v, v[1:], strict=False))


def test_exponential_is_geometric():
    v = _values("exponential", start=1.0, end=0.25, steps=2)
    assert v[:4] == pytest.approx([1.0, 0.5, 0.25, 0.25])


def test_constant_and_default_end():
    assert _values("constant", start=0.7)[:3] == [0.7, 0.7, 0.7]
    s = ScheduleConfig(kind="linear", start=2.0, steps=3).build()
    assert s.value(2) == 2.0  # end defaults to start


def test_zero_steps_jumps_to_end():
    assert ScheduleConfig(kind="linear", start=1.0, end=0.2, steps=0).build().value(0) == pytest.approx(0.2)


def test_bad_schedules_rejected():
    with pytest.raises(ValueError, match="exponential"):
        ScheduleConfig(kind="exponential", start=1.0, end=0.0, steps=3)
    with pytest.raises(ValueError, match="temperature"):
        RLConfig.model_validate({"temperature": {"kind": "linear", "start": 1.0, "end": 0.0, "steps": 5}})
    with pytest.raises(ValueError):
        ScheduleConfig(kind="sawtooth")
    with pytest.raises(ValueError):
        ScheduleConfig(kind="linear", start=1.0, end=0.5, steps=4).build().value(-1)
