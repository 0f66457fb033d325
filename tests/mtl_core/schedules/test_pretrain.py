"""Pretrain: the auxiliary task alone for N epochs, then joint."""

from __future__ import annotations

import torch

from mtl_core.schedules import build_schedule
from tests.mtl_core.schedules.helpers import at, task_context


def test_only_the_task_trains_until_the_switch_epoch() -> None:
    schedule = build_schedule("pretrain", {"task": "b", "epochs": 2}, task_context(epochs=5))
    alone = torch.tensor([0.0, 1.0, 0.0])
    for epoch in (0, 1):
        for step in (0, 3):
            assert torch.equal(schedule.multipliers(at(epoch, step)), alone)
    for epoch in (2, 4):
        assert torch.equal(schedule.multipliers(at(epoch, 0)), torch.ones(3))
