"""Contexts and step walks shared by the schedule tests."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from mtl_core.context import StepContext, TaskContext


def task_context(
    tasks: tuple[str, ...] = ("a", "b", "c"), epochs: int = 3, seed: int = 0
) -> TaskContext:
    return TaskContext(
        task_names=tasks,
        device=torch.device("cpu"),
        epochs=epochs,
        generator=torch.Generator().manual_seed(seed),
    )


def at(epoch: int, step: int = 0, steps_per_epoch: int = 4) -> StepContext:
    return StepContext(
        epoch=epoch,
        step=step,
        steps_per_epoch=steps_per_epoch,
        global_step=epoch * steps_per_epoch + step,
    )


def walk(epochs: int, steps_per_epoch: int = 4) -> Iterator[StepContext]:
    for epoch in range(epochs):
        for step in range(steps_per_epoch):
            yield at(epoch, step, steps_per_epoch)
