"""The trials living in a batch's slots: how one is made, what it reports, and its schedule's
multipliers."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mtl_core.architectures import MultiTaskModel, NetworkParts, build_model
from mtl_core.config import ResolvedConfig
from mtl_core.context import StepContext, TaskContext
from mtl_core.experiments import Experiment
from mtl_core.results import EpochReport, TrialResult
from mtl_core.schedules import build_schedule
from mtl_core.schedules._base import Schedule
from mtl_core.trial_setup import compute_metrics

#: ``stop_reason`` prefix of a trial whose loss became NaN or infinite.
DIVERGED = "diverged: "
#: Schedules whose multipliers depend on the step only (computed once per epoch and shared).
_STEP_ONLY_SCHEDULES = frozenset({"joint", "curriculum", "pretrain", "aux_decay"})


@dataclass
class Slot:
    """One trial living in a slot."""

    config: ResolvedConfig
    ctx: TaskContext
    schedule: Schedule
    tag: Any
    started: float
    epoch: int = 0
    history: list[EpochReport] = field(default_factory=list)
    #: A population member's weight trajectory and lineage (`mtl_core.batched.population`).
    population: dict[str, Any] | None = None


@dataclass
class SlotReport:
    """One epoch of the trial in ``slot`` (``tag`` is what the caller attached to it)."""

    slot: int
    tag: Any
    report: EpochReport


@dataclass
class FinishedTrial:
    """A trial that left its slot: ran all epochs, was stopped, or diverged."""

    slot: int
    tag: Any
    result: TrialResult


def divergence_reason(slot: Slot, tasks: Sequence[str]) -> str:
    """``stop_reason`` of a diverged trial: the tasks whose loss went non-finite, or else the
    strategy's step (its task gradients or solver), and the epoch."""
    what = (
        f"loss of task(s) {', '.join(tasks)}"
        if tasks
        else f"step of strategy {slot.config.strategy!r} (task gradients or solver)"
    )
    return (
        f"{DIVERGED}{what} became NaN or infinite in epoch {slot.epoch}; "
        "lower the learning rate or the weights, or set grad_clip"
    )


def schedule_table(
    slots: Sequence[Slot | None], epochs: dict[int, int], steps: int, num_tasks: int
) -> Tensor:
    """``[S, K, T]`` schedule multipliers of this epoch on the CPU (free slots get 0).

    ``epochs`` maps each live slot to the epoch it is in. Each trial's schedule draws the
    whole epoch here, at the epoch's start, from its own generator (the documented order of a
    trial's random draws); schedules that depend on the step only are computed once per epoch.
    """
    table = torch.zeros(steps, len(slots), num_tasks)
    per_epoch: dict[int, Tensor] = {}
    for index, epoch in epochs.items():
        slot = slots[index]
        assert slot is not None
        shareable = slot.config.schedule in _STEP_ONLY_SCHEDULES or (
            slot.config.schedule == "alternating"
            and slot.config.schedule_params.get("mode", "round_robin") == "round_robin"
        )
        if shareable and epoch in per_epoch:
            table[:, index] = per_epoch[epoch]
            continue
        column = torch.stack(
            [
                slot.schedule.multipliers(StepContext(epoch, s, steps, epoch * steps + s)).cpu()
                for s in range(steps)
            ]
        )
        table[:, index] = column
        if shareable:
            per_epoch[epoch] = column
    return table


def new_trial(
    resolved: ResolvedConfig,
    tag: Any,
    experiment: Experiment,
    parts: NetworkParts,
    device: torch.device,
) -> tuple[MultiTaskModel, Slot]:
    """Model and slot of one trial, seeded exactly as `mtl_core.trainer.train_trial` does.

    ``parts`` are the experiment's network parts for the batch's data (`Experiment.parts_for`).
    """
    # The context lives on the CPU: the schedule's multipliers are gathered into one table per
    # epoch there (one transfer), and the batched strategies keep their own state on the
    # device; only the generator is the trial's.
    ctx = TaskContext(
        experiment.task_names,
        torch.device("cpu"),
        resolved.epochs,
        torch.Generator().manual_seed(resolved.seed),
    )
    torch.manual_seed(resolved.seed)
    model = build_model(resolved.architecture, resolved.architecture_params, parts).to(device)
    schedule = build_schedule(resolved.schedule, resolved.schedule_params, ctx)
    return model, Slot(resolved, ctx, schedule, tag, time.perf_counter())


def record_epoch(
    slot: Slot,
    experiment: Experiment,
    outputs: list[Tensor],
    targets: list[Tensor],
    train_loss: list[float],
    weights: list[float],
) -> EpochReport:
    """The report of the epoch ``slot`` has just run (its validation metrics computed from its
    ``outputs``), added to its history."""
    val_metrics, val_extra = compute_metrics(experiment, outputs, targets)
    names = experiment.task_names
    report = EpochReport(
        epoch=slot.epoch,
        train_loss=dict(zip(names, train_loss, strict=True)),
        val_metrics=val_metrics,
        val_extra=val_extra,
        weights=dict(zip(names, weights, strict=True)),
        elapsed_s=time.perf_counter() - slot.started,
    )
    slot.history.append(report)
    return report
