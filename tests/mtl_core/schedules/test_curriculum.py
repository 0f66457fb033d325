"""Curriculum: tasks join in order and ramp in linearly."""

from __future__ import annotations

import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.schedules import build_schedule
from tests.mtl_core.schedules.helpers import at, task_context


@pytest.mark.parametrize(
    ("epoch", "step", "expected"),
    [
        (0, 0, [1.0, 0.0, 0.0]),
        (0, 3, [1.0, 0.0, 0.0]),
        (1, 0, [1.0, 0.0, 0.0]),  # "c" joins at epoch 1, ramp starts at 0
        (1, 1, [1.0, 0.0, 0.25]),
        (1, 2, [1.0, 0.0, 0.5]),
        (2, 0, [1.0, 0.0, 1.0]),  # "b" joins at epoch 2
        (2, 3, [1.0, 0.75, 1.0]),
        (3, 0, [1.0, 1.0, 1.0]),
        (4, 2, [1.0, 1.0, 1.0]),
    ],
)
def test_ramp_values_at_given_steps(epoch: int, step: int, expected: list[float]) -> None:
    schedule = build_schedule(
        "curriculum", {"order": ["a", "c", "b"], "stage_epochs": 1}, task_context(epochs=5)
    )
    torch.testing.assert_close(schedule.multipliers(at(epoch, step)), torch.tensor(expected))


def test_stage_epochs_and_fractional_ramp() -> None:
    schedule = build_schedule(
        "curriculum",
        {"stage_epochs": 2, "ramp_epochs": 0.5},
        task_context(("a", "b"), epochs=4),
    )
    values = [float(schedule.multipliers(at(e, s))[1]) for e, s in [(1, 3), (2, 0), (2, 1), (2, 2)]]
    assert values == [0.0, 0.0, 0.5, 1.0]


def test_zero_ramp_switches_a_task_on_at_once() -> None:
    schedule = build_schedule("curriculum", {"ramp_epochs": 0}, task_context(epochs=3))
    torch.testing.assert_close(schedule.multipliers(at(1, 0)), torch.tensor([1.0, 1.0, 0.0]))


@pytest.mark.parametrize("order", [["a", "b"], ["a", "b", "b"], ["a", "b", "c", "a"]])
def test_order_must_name_every_task_once(order: list[str]) -> None:
    with pytest.raises(ConfigError, match="every task exactly once"):
        build_schedule("curriculum", {"order": order}, task_context())
