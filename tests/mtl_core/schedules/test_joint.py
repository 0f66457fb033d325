"""Joint: all ones."""

from __future__ import annotations

import torch

from mtl_core.schedules import build_schedule
from tests.mtl_core.schedules.helpers import task_context, walk


def test_every_task_has_multiplier_one_at_every_step() -> None:
    schedule = build_schedule("joint", None, task_context(("a", "b")))
    for step in walk(epochs=2):
        assert torch.equal(schedule.multipliers(step), torch.ones(2))
