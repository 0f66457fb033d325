"""Explicit context objects handed to components, so none reaches into another's attributes."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TaskContext:
    """What a strategy or schedule is built with.

    Args:
        task_names: the experiment's tasks, in order; tensors of per-task values follow it.
        device: where per-task tensors live.
        epochs: the trial's total number of epochs.
        generator: the trial's seeded CPU random generator (strategies that sample use it).
    """

    task_names: tuple[str, ...]
    device: torch.device
    epochs: int
    generator: torch.Generator

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def task_index(self, name: str) -> int:
        from mtl_core.errors import ConfigError

        try:
            return self.task_names.index(name)
        except ValueError:
            raise ConfigError(
                f"unknown task {name!r}; valid choices: {', '.join(self.task_names)}"
            ) from None


@dataclass(frozen=True)
class StepContext:
    """Where training stands at one optimisation step."""

    epoch: int  # 0-based
    step: int  # 0-based step within the epoch
    steps_per_epoch: int
    global_step: int
