"""Decay an auxiliary task's weight from 1 to 0 over the first part of training."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.context import StepContext, TaskContext
from mtl_core.errors import ConfigError
from mtl_core.schedules._base import Schedule, ScheduleConfig
from mtl_core.schedules._registry import SCHEDULES


class AuxDecayConfig(ScheduleConfig):
    """Hyper-parameters of `AuxDecay`.

    Args:
        task: the auxiliary task whose multiplier decays.
        until_epoch: E, the epoch by which it reaches 0 (1 <= E <= the trial's epochs).
        shape: ``"linear"`` 1 - r, ``"cosine"`` (1 + cos πr)/2, ``"exponential"`` final^r,
            with r = progress / E in [0, 1].
        final: the exponential shape's value just before E (0 < final < 1); ignored by the
            other shapes.
    """

    task: str
    until_epoch: int = Field(ge=1, le=10_000)
    shape: Literal["linear", "cosine", "exponential"] = "linear"
    final: float = Field(1e-3, gt=0, lt=1)


@SCHEDULES.register("aux_decay")
class AuxDecay(Schedule):
    """The auxiliary task's multiplier goes from 1 to 0 by epoch E, then stays 0; others 1.

    Progress p = epoch + step / steps_per_epoch is counted in (fractional) epochs, so the
    decay moves every step; r = min(p / E, 1). At r = 1 the multiplier is exactly 0 for every
    shape (the exponential one drops from ``final`` to 0 there).

    Args:
        config: an `AuxDecayConfig`.
        ctx: the task context; it needs another task besides the auxiliary one.
    """

    name: ClassVar[str] = "aux_decay"
    config_cls: ClassVar[type[ScheduleConfig]] = AuxDecayConfig

    def __init__(self, config: ScheduleConfig, ctx: TaskContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, AuxDecayConfig)
        self._index = ctx.task_index(config.task)
        if ctx.num_tasks < 2:
            raise ConfigError(
                f"schedule 'aux_decay' needs a task besides the auxiliary {config.task!r}, "
                f"got tasks {', '.join(ctx.task_names)}"
            )
        if config.until_epoch > ctx.epochs:
            raise ConfigError(
                f"schedule 'aux_decay': until_epoch must be in 1..{ctx.epochs} (the trial's "
                f"epochs), got {config.until_epoch}"
            )
        self._until = float(config.until_epoch)
        self._shape = config.shape
        self._final = config.final

    def aux_multiplier(self, step: StepContext) -> float:
        """The auxiliary task's multiplier at ``step``."""
        progress = step.epoch + step.step / step.steps_per_epoch
        r = min(progress / self._until, 1.0)
        if r >= 1.0:
            return 0.0
        if self._shape == "linear":
            return 1.0 - r
        if self._shape == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * r))
        return self._final**r

    def multipliers(self, step: StepContext) -> Tensor:
        values = [1.0] * self.ctx.num_tasks
        values[self._index] = self.aux_multiplier(step)
        return torch.tensor(values, dtype=torch.float32, device=self.ctx.device)
