"""Aux decay: the auxiliary task's multiplier goes 1 → 0 by epoch E."""

from __future__ import annotations

import math

import pytest

from mtl_core.errors import ConfigError
from mtl_core.schedules import build_schedule
from tests.mtl_core.schedules.helpers import at, task_context

# With 4 steps per epoch and E = 2: start, E/2, E, after E.
POINTS = [at(0, 0), at(1, 0), at(2, 0), at(3, 2)]


@pytest.mark.parametrize(
    ("shape", "expected"),
    [("linear", [1.0, 0.5, 0.0, 0.0]), ("cosine", [1.0, 0.5, 0.0, 0.0])],
)
def test_values_at_start_half_end_and_after(shape: str, expected: list[float]) -> None:
    schedule = build_schedule(
        "aux_decay", {"task": "b", "until_epoch": 2, "shape": shape}, task_context(epochs=4)
    )
    for point, value in zip(POINTS, expected, strict=True):
        m = schedule.multipliers(point)
        assert float(m[1]) == pytest.approx(value, abs=1e-6)
        assert float(m[0]) == 1.0 and float(m[2]) == 1.0


def test_linear_and_cosine_differ_between_the_anchors() -> None:
    ctx = task_context(epochs=4)
    point = at(0, 2)  # progress 0.5 epoch, r = 1/4
    linear = build_schedule("aux_decay", {"task": "a", "until_epoch": 2}, ctx)
    cosine = build_schedule("aux_decay", {"task": "a", "until_epoch": 2, "shape": "cosine"}, ctx)
    assert float(linear.multipliers(point)[0]) == pytest.approx(0.75)
    assert float(cosine.multipliers(point)[0]) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_exponential_reaches_final_then_zero() -> None:
    schedule = build_schedule(
        "aux_decay",
        {"task": "a", "until_epoch": 2, "shape": "exponential", "final": 1e-2},
        task_context(epochs=3),
    )
    values = [float(schedule.multipliers(p)[0]) for p in POINTS[:3]]
    assert values[0] == pytest.approx(1.0)
    assert values[1] == pytest.approx(0.1)  # final ** (1/2)
    assert values[2] == 0.0
    assert float(schedule.multipliers(at(1, 3))[0]) == pytest.approx(1e-2 ** (7 / 8), rel=1e-5)


def test_until_the_last_epoch_is_allowed() -> None:
    schedule = build_schedule("aux_decay", {"task": "a", "until_epoch": 3}, task_context(epochs=3))
    assert float(schedule.multipliers(at(2, 3))[0]) == pytest.approx(1 - 11 / 12, abs=1e-6)


def test_needs_another_task() -> None:
    with pytest.raises(ConfigError, match="besides the auxiliary"):
        build_schedule("aux_decay", {"task": "a", "until_epoch": 1}, task_context(("a",)))


@pytest.mark.parametrize("final", [0.0, 1.0])
def test_final_must_be_between_zero_and_one(final: float) -> None:
    with pytest.raises(ConfigError, match="final"):
        build_schedule(
            "aux_decay",
            {"task": "a", "until_epoch": 1, "shape": "exponential", "final": final},
            task_context(),
        )
