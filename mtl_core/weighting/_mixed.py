"""Several strategies sharing the K slots of one batch (each slot has one owner)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from mtl_core.context import TaskContext
from mtl_core.errors import ConfigError
from mtl_core.weighting._base import (
    GradientWeighting,
    LossWeighting,
    StepInputs,
    StrategyConfig,
    WeightingStrategy,
)
from mtl_core.weighting._registry import STRATEGIES, build_strategy


class MixedStrategy:
    """Several batched strategies of one kind sharing the K slots; each slot has one owner.

    Every member computes over all K (cheap ``[K, T]`` work) and each slot takes its owner's
    result, so a batch can hold fixed, DWA and uncertainty trials side by side (or PCGrad
    and MGDA trials). A member's randomness is drawn only for the slots it owns.
    """

    def __init__(self, names: Sequence[str], num_slots: int, num_tasks: int, device: torch.device):
        self.names = sorted(set(names))
        kinds = {STRATEGIES.get(n).uses_task_gradients for n in self.names}
        if len(kinds) > 1:
            raise ConfigError("loss-based and gradient strategies cannot share one batch")
        self.members: dict[str, WeightingStrategy[Any]] = {
            n: build_strategy(n, num_slots, num_tasks, device) for n in self.names
        }
        self.uses_task_gradients = kinds.pop() if kinds else False
        counts = {STRATEGIES.get(n).batches_per_step for n in self.names}
        if len(counts) > 1:
            raise ConfigError("strategies that read different numbers of batches per step")
        self.batches_per_step = counts.pop() if counts else 1
        readers = {STRATEGIES.get(n).reads_validation for n in self.names}
        if len(readers) > 1:
            raise ConfigError("meta-learned and other strategies cannot share one batch")
        self.reads_validation = readers.pop() if readers else False
        self.owner = torch.full((num_slots,), -1, dtype=torch.long, device=device)
        self.device = device
        self.num_slots = num_slots
        self.num_tasks = num_tasks

    def add_member(self, name: str) -> list[Tensor]:
        """Make room for strategy ``name`` (a refill); returns its new learnable tensors."""
        if name in self.members:
            return []
        cls = STRATEGIES.get(name)
        if (
            cls.uses_task_gradients != self.uses_task_gradients
            or cls.batches_per_step != self.batches_per_step
            or cls.reads_validation != self.reads_validation
        ):
            raise ConfigError(f"strategy {name!r} cannot join this batch ({self.names})")
        member = cls(self.num_slots, self.num_tasks, self.device)
        self.members[name] = member
        self.names.append(name)
        return member.parameters()

    def reset_slot(self, slot: int, name: str, config: StrategyConfig, ctx: TaskContext) -> None:
        if name not in self.members:
            self.add_member(name)
        for member_name, member in self.members.items():
            if member_name == name:
                member.reset_slot(slot, config, ctx)
            else:
                member.release_slot(slot)
        self.owner[slot] = self.names.index(name)

    def release_slot(self, slot: int) -> None:
        for member in self.members.values():
            member.release_slot(slot)
        self.owner[slot] = -1

    def parameters(self) -> list[Tensor]:
        return [p for member in self.members.values() for p in member.parameters()]

    def on_epoch_end(self, ended: Tensor, mean_losses: Tensor) -> None:
        for index, member in enumerate(self.members.values()):
            member.on_epoch_end(ended & (self.owner == index), mean_losses)

    def _select(self, results: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        if len(results) == 1:
            return results[0]
        first, weights = results[0]
        for index, (value, w) in enumerate(results[1:], start=1):
            mine = self.owner == index
            first = torch.where(mine.reshape(-1, *([1] * (first.dim() - 1))), value, first)
            weights = torch.where(mine.unsqueeze(-1), w, weights)
        return first, weights

    def _member_inputs(self, inputs: StepInputs, index: int) -> StepInputs:
        return replace(inputs, occupied=inputs.occupied & (self.owner == index))

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        results = []
        for i, member in enumerate(self.members.values()):
            assert isinstance(member, LossWeighting)
            results.append(member.objective(self._member_inputs(inputs, i)))
        return self._select(results)

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        results = []
        for i, member in enumerate(self.members.values()):
            assert isinstance(member, GradientWeighting)
            results.append(member.combine(grads, self._member_inputs(inputs, i)))
        return self._select(results)

    def task_objectives(self, inputs: StepInputs) -> Tensor:
        """Gradient members' ``[K, T]`` per-task objectives, each slot its owner's."""
        values = []
        for i, member in enumerate(self.members.values()):
            assert isinstance(member, GradientWeighting)
            value = member.task_objectives(self._member_inputs(inputs, i))
            values.append((value, value))
        return self._select(values)[0]

    def parameter_objective(self, inputs: StepInputs) -> Tensor | None:
        """The sum of the gradient members' objectives, each counted on its own slots."""
        total: Tensor | None = None
        for i, member in enumerate(self.members.values()):
            assert isinstance(member, GradientWeighting)
            value = member.parameter_objective(self._member_inputs(inputs, i))
            if value is not None:
                mine = torch.where(self.owner == i, value, torch.zeros_like(value))
                total = mine if total is None else total + mine
        return total

    def coefficients(self, grads: Tensor, inputs: StepInputs) -> Tensor:
        """Linear gradient members' ``[K, T]`` coefficients, each slot its owner's."""
        coeffs = []
        for i, member in enumerate(self.members.values()):
            assert isinstance(member, GradientWeighting)
            coeffs.append(member.coefficients(grads, self._member_inputs(inputs, i)))
        return self._select([(c, c) for c in coeffs])[0]
