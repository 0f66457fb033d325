"""Training schedules: which tasks train at each step, and how strongly.

A schedule returns, for each optimisation step, a ``[T]`` multiplier >= 0 per task (0: the
task does not train this step). The trainer multiplies it with the study's fixed weights to
form the ``scale`` the weighting strategy receives.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from pydantic import BaseModel, ConfigDict
from torch import Tensor

from mtl_core.context import StepContext, TaskContext


class ScheduleConfig(BaseModel):
    """Base of every schedule's typed hyper-parameters; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Schedule(abc.ABC):
    """Base class: one subclass per schedule module, registered in `SCHEDULES`.

    Constructors validate task names against ``ctx.task_names`` (`ConfigError` naming the
    bad task and the valid ones) and epoch counts against ``ctx.epochs``.
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[ScheduleConfig]] = ScheduleConfig

    def __init__(self, config: ScheduleConfig, ctx: TaskContext) -> None:
        self.config = config
        self.ctx = ctx

    @abc.abstractmethod
    def multipliers(self, step: StepContext) -> Tensor:
        """The ``[T]`` per-task multipliers (float, on ``ctx.device``) for this step."""
