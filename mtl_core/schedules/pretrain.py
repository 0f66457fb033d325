"""Pretrain an auxiliary task alone for some epochs, then train all tasks jointly."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.context import StepContext, TaskContext
from mtl_core.errors import ConfigError
from mtl_core.schedules._base import Schedule, ScheduleConfig
from mtl_core.schedules._registry import SCHEDULES


class PretrainConfig(ScheduleConfig):
    """Hyper-parameters of `Pretrain`.

    Args:
        task: the task trained alone first (usually an auxiliary one).
        epochs: how many epochs it trains alone (>= 1 and fewer than the trial's epochs).
    """

    task: str
    epochs: int = Field(1, ge=1, le=10_000)


@SCHEDULES.register("pretrain")
class Pretrain(Schedule):
    """Only ``task`` trains during epochs ``0 .. epochs-1``; from epoch ``epochs`` on, all tasks
    train jointly (multiplier 1 each).

    Args:
        config: a `PretrainConfig`.
        ctx: the task context; ``epochs`` must be < ``ctx.epochs`` so the joint phase exists.
    """

    name: ClassVar[str] = "pretrain"
    config_cls: ClassVar[type[ScheduleConfig]] = PretrainConfig

    def __init__(self, config: ScheduleConfig, ctx: TaskContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, PretrainConfig)
        index = ctx.task_index(config.task)
        if config.epochs >= ctx.epochs:
            raise ConfigError(
                f"schedule 'pretrain': epochs must be in 1..{ctx.epochs - 1} (fewer than the "
                f"trial's {ctx.epochs} epochs), got {config.epochs}"
            )
        self._switch_epoch = config.epochs
        self._alone = torch.zeros(ctx.num_tasks, device=ctx.device)
        self._alone[index] = 1.0
        self._joint = torch.ones(ctx.num_tasks, device=ctx.device)

    def multipliers(self, step: StepContext) -> Tensor:
        current = self._alone if step.epoch < self._switch_epoch else self._joint
        return current.clone()
