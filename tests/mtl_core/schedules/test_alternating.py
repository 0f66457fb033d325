"""Alternating: round robin and proportional sampling, per step or per epoch."""

from __future__ import annotations

import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.schedules import Alternating, build_schedule
from tests.mtl_core.schedules.helpers import at, task_context, walk


def active(schedule: Alternating, epochs: int, steps_per_epoch: int = 4) -> list[int]:
    out = []
    for step in walk(epochs, steps_per_epoch):
        m = schedule.multipliers(step)
        assert float(m.sum()) == 1.0 and bool(((m == 0) | (m == 1)).all())
        out.append(int(m.argmax()))
    return out


def build(params: dict[str, object], seed: int = 0) -> Alternating:
    schedule = build_schedule("alternating", params, task_context(seed=seed))
    assert isinstance(schedule, Alternating)
    return schedule


def test_round_robin_per_step_cycles_through_tasks_across_epochs() -> None:
    # 4 steps per epoch and 3 tasks: the cycle continues over the epoch boundary.
    assert active(build({}), epochs=2) == [0, 1, 2, 0, 1, 2, 0, 1]


def test_round_robin_per_epoch_keeps_one_task_for_the_epoch() -> None:
    assert active(build({"per": "epoch"}), epochs=3) == [0] * 4 + [1] * 4 + [2] * 4


def test_proportional_follows_the_proportions() -> None:
    schedule = build({"mode": "proportional", "proportions": {"a": 1.0, "c": 3.0}})
    counts = torch.bincount(
        torch.tensor(active(schedule, epochs=100, steps_per_epoch=20)), minlength=3
    )
    assert counts[1] == 0  # tasks not named get proportion 0
    assert 0.65 < counts[2] / counts.sum() < 0.85


def test_proportional_defaults_to_equal_and_is_reproducible() -> None:
    first = active(build({"mode": "proportional"}, seed=3), epochs=30)
    again = active(build({"mode": "proportional"}, seed=3), epochs=30)
    other = active(build({"mode": "proportional"}, seed=4), epochs=30)
    assert first == again
    assert first != other
    assert set(first) == {0, 1, 2}


def test_proportional_per_epoch_draws_once_per_epoch() -> None:
    tasks = active(build({"mode": "proportional", "per": "epoch"}), epochs=20)
    per_epoch = [tasks[i : i + 4] for i in range(0, len(tasks), 4)]
    assert all(len(set(chunk)) == 1 for chunk in per_epoch)
    assert len({chunk[0] for chunk in per_epoch}) > 1


def test_asking_twice_for_the_same_step_gives_the_same_task() -> None:
    schedule = build({"mode": "proportional"})
    for step in walk(epochs=5):
        assert torch.equal(schedule.multipliers(step), schedule.multipliers(step))


def test_proportions_need_proportional_mode() -> None:
    with pytest.raises(ConfigError, match="only to mode='proportional'"):
        build({"proportions": {"a": 1.0}})


@pytest.mark.parametrize("proportions", [{"a": 0.0}, {"a": -1.0}])
def test_proportions_must_be_non_negative_with_a_positive_one(
    proportions: dict[str, float],
) -> None:
    with pytest.raises(ConfigError, match="proportion"):
        build({"mode": "proportional", "proportions": proportions})


def test_bad_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mode"):
        build({"mode": "random"})


def test_current_task_matches_the_multipliers() -> None:
    schedule = build({})
    assert schedule.current_task(at(1, 2)) == (1 * 4 + 2) % 3
