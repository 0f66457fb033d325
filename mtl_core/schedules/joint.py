"""Joint training: every task at full strength on every step."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from mtl_core.context import StepContext, TaskContext
from mtl_core.schedules._base import Schedule, ScheduleConfig
from mtl_core.schedules._registry import SCHEDULES


@SCHEDULES.register("joint")
class Joint(Schedule):
    """All tasks train together on every step (multiplier 1 each); the default schedule.

    Args:
        config: a `ScheduleConfig` (no parameters).
        ctx: the task context.
    """

    name: ClassVar[str] = "joint"

    def __init__(self, config: ScheduleConfig, ctx: TaskContext) -> None:
        super().__init__(config, ctx)
        self._ones = torch.ones(ctx.num_tasks, device=ctx.device)

    def multipliers(self, step: StepContext) -> Tensor:
        # A copy, so a caller that scales it in place cannot change later steps.
        return self._ones.clone()
