"""Scalar schedules `value(step)`: constant, linear, cosine, exponential (temperature decay, learning rate).

K2 decays the sampling temperature from high (exploration) to low (exploitation) during RL but states neither the
shape nor the endpoints (k2.md §4.2); these are the usual shapes. Every schedule goes from `start` at step 0 to
`end` at step `steps` and stays at `end` afterwards. Exponential interpolates geometrically,
start·(end/start)^(step/steps), so both endpoints must be > 0.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Schedule(Protocol):
    def value(self, step: int) -> float: ...


class _Interpolated:
    def __init__(self, start: float, end: float, steps: int) -> None:
        if steps < 0:
            raise ValueError(f"schedule steps must be >= 0, got {steps}")
        self.start, self.end, self.steps = float(start), float(end), int(steps)

    def _progress(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"schedule step must be >= 0, got {step}")
        return 1.0 if self.steps == 0 else min(step / self.steps, 1.0)


class ConstantSchedule:
    def __init__(self, value: float) -> None:
        self._value = float(value)

    def value(self, step: int) -> float:
        return self._value


class LinearSchedule(_Interpolated):
    def value(self, step: int) -> float:
        return self.start + (self.end - self.start) * self._progress(step)


class CosineSchedule(_Interpolated):
    def value(self, step: int) -> float:
        return self.end + (self.start - self.end) * 0.5 * (1 + math.cos(math.pi * self._progress(step)))


class ExponentialSchedule(_Interpolated):
    def __init__(self, start: float, end: float, steps: int) -> None:
        if start <= 0 or end <= 0:
            raise ValueError(f"exponential schedule needs start > 0 and end > 0, got {start}, {end}")
        super().__init__(start, end, steps)

    def value(self, step: int) -> float:
        return self.start * (self.end / self.start) ** self._progress(step)


class ScheduleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    kind: Literal["constant", "linear", "cosine", "exponential"] = "constant"
    """Shape of the schedule."""
    start: float = 1.0
    """Value at step 0 (the constant value for `constant`)."""
    end: float | None = None
    """Value from step `steps` on; None = `start`."""
    steps: int = Field(0, ge=0)
    """Steps from start to end."""

    @model_validator(mode="after")
    def _check(self) -> ScheduleConfig:
        if self.kind == "exponential" and (self.start <= 0 or (self.end is not None and self.end <= 0)):
            raise ValueError("exponential schedule needs start > 0 and end > 0")
        return self

    def build(self) -> Schedule:
        end = self.start if self.end is None else self.end
        if self.kind == "constant":
            return ConstantSchedule(self.start)
        cls = {"linear": LinearSchedule, "cosine": CosineSchedule, "exponential": ExponentialSchedule}[
            self.kind
        ]
        return cls(self.start, end, self.steps)

    def min_value(self) -> float:
        return self.start if self.end is None else min(self.start, self.end)
