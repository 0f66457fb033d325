"""Curriculum: tasks join training one after another, easiest first, each ramping in."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.context import StepContext, TaskContext
from mtl_core.errors import ConfigError
from mtl_core.schedules._base import Schedule, ScheduleConfig
from mtl_core.schedules._registry import SCHEDULES


class CurriculumConfig(ScheduleConfig):
    """Hyper-parameters of `Curriculum`.

    Args:
        order: every task once, in the order they join (easiest first); None: task order.
        stage_epochs: a new task joins every ``stage_epochs`` epochs.
        ramp_epochs: a joining task's multiplier rises linearly from 0 to 1 over this many
            epochs (fractional, measured in steps); 0 switches it on at once.
    """

    order: list[str] | None = None
    stage_epochs: int = Field(1, ge=1, le=10_000)
    ramp_epochs: float = Field(1.0, ge=0, allow_inf_nan=False)


@SCHEDULES.register("curriculum")
class Curriculum(Schedule):
    """Tasks join in ``order``: the k-th (0-based) joins at epoch ``k · stage_epochs``.

    With p = epoch + step / steps_per_epoch the training progress in epochs, the k-th task's
    multiplier is ``clamp((p - k · stage_epochs) / ramp_epochs, 0, 1)``; the first task is at
    1 from the start. Every task must join before the last epoch.

    Args:
        config: a `CurriculumConfig`.
        ctx: the task context.
    """

    name: ClassVar[str] = "curriculum"
    config_cls: ClassVar[type[ScheduleConfig]] = CurriculumConfig

    def __init__(self, config: ScheduleConfig, ctx: TaskContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, CurriculumConfig)
        order = list(ctx.task_names) if config.order is None else config.order
        indices = [ctx.task_index(task) for task in order]
        if sorted(indices) != list(range(ctx.num_tasks)):
            missing = [t for t in ctx.task_names if t not in order]
            repeated = sorted({t for t in order if order.count(t) > 1})
            raise ConfigError(
                f"schedule 'curriculum': order must name every task exactly once "
                f"({', '.join(ctx.task_names)}); missing {missing}, repeated {repeated}"
            )
        last_join = (ctx.num_tasks - 1) * config.stage_epochs
        if last_join >= ctx.epochs:
            raise ConfigError(
                f"schedule 'curriculum': with stage_epochs={config.stage_epochs} the last of "
                f"{ctx.num_tasks} tasks joins at epoch {last_join}, but the trial has only "
                f"{ctx.epochs} epochs; use stage_epochs <= "
                f"{max((ctx.epochs - 1) // max(ctx.num_tasks - 1, 1), 1)}"
            )
        # join_epoch[t]: when task t (in the context's order) joins.
        self._join_epoch = [0.0] * ctx.num_tasks
        for position, index in enumerate(indices):
            self._join_epoch[index] = float(position * config.stage_epochs)
        self._ramp = config.ramp_epochs

    def _value(self, join_epoch: float, progress: float) -> float:
        if join_epoch == 0.0:
            return 1.0
        if self._ramp == 0.0:
            return 1.0 if progress >= join_epoch else 0.0
        return min(max((progress - join_epoch) / self._ramp, 0.0), 1.0)

    def multipliers(self, step: StepContext) -> Tensor:
        progress = step.epoch + step.step / step.steps_per_epoch
        values = [self._value(join, progress) for join in self._join_epoch]
        return torch.tensor(values, dtype=torch.float32, device=self.ctx.device)
