"""Alternating training: one task per step (or per epoch), in turn or sampled."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch import Tensor

from mtl_core.context import StepContext, TaskContext
from mtl_core.errors import ConfigError
from mtl_core.schedules._base import Schedule, ScheduleConfig
from mtl_core.schedules._registry import SCHEDULES


class AlternatingConfig(ScheduleConfig):
    """Hyper-parameters of `Alternating`.

    Args:
        mode: ``"round_robin"`` takes the tasks in turn; ``"proportional"`` samples one.
        proportions: relative sampling weight per task name for ``"proportional"`` (tasks not
            named get 0); None samples the tasks with equal probability.
        per: ``"step"`` switches task every optimisation step, ``"epoch"`` every epoch.
    """

    mode: Literal["round_robin", "proportional"] = "round_robin"
    proportions: dict[str, float] | None = None
    per: Literal["step", "epoch"] = "step"


@SCHEDULES.register("alternating")
class Alternating(Schedule):
    """Exactly one task trains at a time (multiplier 1, the others 0).

    Round robin takes task ``k mod T`` at step (or epoch) ``k``, counting steps by
    ``global_step``. Proportional draws the task from ``proportions`` with the trial's seeded
    ``ctx.generator``, once per step or once per epoch; asking twice for the same step or
    epoch returns the same task, so the draws do not depend on how often the trainer asks.

    Args:
        config: an `AlternatingConfig`.
        ctx: the task context.
    """

    name: ClassVar[str] = "alternating"
    config_cls: ClassVar[type[ScheduleConfig]] = AlternatingConfig

    def __init__(self, config: ScheduleConfig, ctx: TaskContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, AlternatingConfig)
        self._probs: Tensor | None = None
        if config.mode == "proportional":
            self._probs = self._probabilities(config.proportions, ctx)
        elif config.proportions is not None:
            raise ConfigError(
                "schedule 'alternating': proportions apply only to mode='proportional', "
                f"got mode={config.mode!r}"
            )
        self._per = config.per
        self._one_hot = torch.eye(ctx.num_tasks, device=ctx.device)
        self._drawn_key: int | None = None
        self._drawn_task = 0

    @staticmethod
    def _probabilities(proportions: dict[str, float] | None, ctx: TaskContext) -> Tensor:
        if proportions is None:
            return torch.full((ctx.num_tasks,), 1.0 / ctx.num_tasks, dtype=torch.float64)
        weights = torch.zeros(ctx.num_tasks, dtype=torch.float64)
        for task, value in proportions.items():
            index = ctx.task_index(task)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(
                    f"schedule 'alternating': proportion of task {task!r} must be a finite "
                    f"number >= 0, got {value}"
                )
            weights[index] = value
        if weights.sum() <= 0:
            raise ConfigError(
                f"schedule 'alternating': proportions must give some task a weight > 0, "
                f"got {proportions}"
            )
        return weights / weights.sum()

    def current_task(self, step: StepContext) -> int:
        """The index of the task that trains at ``step``."""
        key = step.global_step if self._per == "step" else step.epoch
        if self._probs is None:
            return key % self.ctx.num_tasks
        if key != self._drawn_key:
            drawn = torch.multinomial(self._probs, 1, generator=self.ctx.generator)
            self._drawn_key = key
            self._drawn_task = int(drawn.item())
        return self._drawn_task

    def multipliers(self, step: StepContext) -> Tensor:
        return self._one_hot[self.current_task(step)].clone()
