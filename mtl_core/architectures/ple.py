"""Progressive layered extraction: task and shared experts at every level, mixed per task."""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from typing import ClassVar, cast

from pydantic import Field
from torch import Tensor, nn

from mtl_core.architectures._base import (
    Architecture,
    ArchitectureConfig,
    ModelOutput,
    MultiTaskModel,
    NetworkParts,
    require_input_shape,
    split_blocks,
    stage_shapes,
)
from mtl_core.architectures._gates import mix, softmax_gate
from mtl_core.architectures._registry import ARCHITECTURES
from mtl_core.architectures.hard import check_distinct_blocks, last_block_parameters
from mtl_core.errors import ConfigError

logger = logging.getLogger(__name__)


def group_sizes(count: int, levels: int) -> list[int]:
    """``count`` blocks in ``levels`` consecutive groups, as even as can be, earlier ones larger."""
    base, extra = divmod(count, levels)
    return [base + (1 if level < extra else 0) for level in range(levels)]


@dataclass(frozen=True)
class LevelReach:
    """Which tasks' losses reach each module of one level (by task index)."""

    task_experts: list[frozenset[int]]
    shared_experts: frozenset[int]
    task_gates: list[frozenset[int]]
    shared_gate: frozenset[int]


def level_reach(levels: int, num_tasks: int) -> list[LevelReach]:
    """The tasks whose loss reaches each module of each level, from the wiring alone.

    Walks from the heads down: task t's head reads h_L^t; a level's task-t experts feed h_l^t
    and, where the level has a shared gate, h_l^s; its shared experts feed every h_l^t and
    h_l^s; task t's gate feeds h_l^t, the shared gate h_l^s. The level below is reached
    through what reads its outputs: h_{l-1}^t by task t's experts and gate, h_{l-1}^s by the
    shared experts and the shared gate.
    """
    task_out = [frozenset({t}) for t in range(num_tasks)]  # who reaches h_l^t
    shared_out: frozenset[int] = frozenset()  # who reaches h_l^s (nothing reads h_L^s)
    reach: list[LevelReach] = []
    for _ in range(levels):
        everyone = frozenset().union(*task_out) | shared_out
        level = LevelReach(
            task_experts=[out | shared_out for out in task_out],
            shared_experts=everyone,
            task_gates=list(task_out),
            shared_gate=shared_out,
        )
        reach.append(level)
        task_out = [e | g for e, g in zip(level.task_experts, level.task_gates, strict=True)]
        shared_out = level.shared_experts | level.shared_gate
    return reach[::-1]


class ExpertCounts(ArchitectureConfig):
    """The expert counts of a CGC level (PLE's and CGC's shared hyper-parameters).

    Args:
        shared_experts: experts every task's gate mixes, per level.
        experts_per_task: experts only their task's gate (and the shared gate) mixes, per level.
    """

    shared_experts: int = Field(1, ge=1, le=16)
    experts_per_task: int = Field(1, ge=1, le=16)


class PLEConfig(ExpertCounts):
    """Hyper-parameters of `PLE`.

    Args:
        levels: extraction levels; the trunk's blocks are split into this many consecutive
            groups (at most the number of blocks).
    """

    levels: int = Field(2, ge=1, le=16)


class PLELevel(nn.Module):
    """One extraction level: experts (copies of one group of trunk blocks) and their gates.

    Args:
        task_experts: per task, its own experts.
        shared_experts: the experts every task's gate mixes.
        task_gates: per task, ``Linear(width → its experts + shared experts)``.
        shared_gate: ``Linear(width → all experts)`` producing the shared path's output;
            None at the last level.
    """

    def __init__(
        self,
        task_experts: list[list[nn.Sequential]],
        shared_experts: list[nn.Sequential],
        task_gates: list[nn.Linear],
        shared_gate: nn.Linear | None,
    ) -> None:
        super().__init__()
        mixed = [len(own) + len(shared_experts) for own in task_experts]
        total = sum(len(own) for own in task_experts) + len(shared_experts)
        widths = [gate.out_features for gate in task_gates]
        shared_width = total if shared_gate is None else shared_gate.out_features
        if widths != mixed or shared_width != total:
            raise ValueError(
                f"each gate needs one output per expert it mixes ({mixed}, shared {total}), "
                f"got {widths=}, {shared_width=}"
            )
        self.task_experts = nn.ModuleList(nn.ModuleList(own) for own in task_experts)
        self.shared_experts = nn.ModuleList(shared_experts)
        self.task_gates = nn.ModuleList(task_gates)
        self.shared_gate = shared_gate

    def forward(
        self, task_inputs: list[Tensor], shared_input: Tensor
    ) -> tuple[list[Tensor], Tensor | None]:
        """(h_l^t for every task, h_l^s or None at the last level) from the level's inputs."""
        shared_out = [expert(shared_input) for expert in self.shared_experts]
        task_out = [
            [expert(h) for expert in own.children()]
            for own, h in zip(self.task_experts, task_inputs, strict=True)
        ]
        # One gate at a time, so that task t's loss has no graph edge into another task's gate.
        mixed = [
            mix(softmax_gate(gate, h), [*own, *shared_out])
            for gate, h, own in zip(self.task_gates, task_inputs, task_out, strict=True)
        ]
        if self.shared_gate is None:
            return mixed, None
        everything = [*itertools.chain.from_iterable(task_out), *shared_out]
        return mixed, mix(softmax_gate(self.shared_gate, shared_input), everything)

    def reached_by(self, reach: LevelReach) -> list[tuple[nn.Module, frozenset[int]]]:
        """Each module of the level with the tasks whose loss reaches it."""
        modules: list[tuple[nn.Module, frozenset[int]]] = [
            (expert, tasks)
            for own, tasks in zip(self.task_experts, reach.task_experts, strict=True)
            for expert in own.children()
        ]
        modules += [(expert, reach.shared_experts) for expert in self.shared_experts]
        modules += list(zip(self.task_gates, reach.task_gates, strict=True))
        if self.shared_gate is not None:
            modules.append((self.shared_gate, reach.shared_gate))
        return modules


class PLEModel(MultiTaskModel):
    """Extraction levels in sequence, then one head per task on its last mixture.

    Args:
        levels: the levels, input first; every one but the last has a shared gate.
        heads: one head per task.
    """

    def __init__(self, levels: list[PLELevel], heads: list[nn.Module]) -> None:
        super().__init__()
        if not levels:
            raise ValueError("PLE needs at least one level, got 0")
        for index, level in enumerate(levels, start=1):
            if len(level.task_gates) != len(heads):
                raise ValueError(
                    f"level {index} has {len(level.task_gates)} task gates for {len(heads)} heads"
                )
            if (level.shared_gate is None) != (index == len(levels)):
                raise ValueError("every level but the last needs a shared gate")
        self.levels = nn.ModuleList(levels)
        self.heads = nn.ModuleList(heads)

    def forward(self, x: Tensor) -> ModelOutput:
        task_h, shared_h = [x] * len(self.heads), x
        for level in self.levels:
            task_h, next_shared = level(task_h, shared_h)
            if next_shared is not None:
                shared_h = next_shared
        outputs = [head(h) for head, h in zip(self.heads, task_h, strict=True)]
        return ModelOutput(outputs=outputs, representation=None)

    def stages(self) -> list[PLELevel]:
        """The levels, input first."""
        return cast(list[PLELevel], list(self.levels))

    def shared_parameters(self) -> list[nn.Parameter]:
        everyone = frozenset(range(len(self.heads)))
        reach = level_reach(len(self.levels), len(self.heads))
        return [
            p
            for level, level_tasks in zip(self.stages(), reach, strict=True)
            for module, tasks in level.reached_by(level_tasks)
            if tasks == everyone
            for p in module.parameters()
        ]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        last = self.stages()[-1]
        params = last_block_parameters(last.shared_experts)
        # A last group of parameter-free blocks leaves only the shared levels below.
        return params or self.shared_parameters()


@ARCHITECTURES.register("ple")
class PLE(Architecture):
    """Progressive Layered Extraction (Tang, Liu, Zhao, Gong, RecSys 2020, "Progressive
    Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) Model for Personalized
    Recommendations").

    The trunk's blocks are split into ``levels`` consecutive groups (as even as can be, the
    earlier groups taking the extra blocks). At level l every task has ``experts_per_task``
    experts and the level has ``shared_experts`` shared ones, each a fresh copy of group l's
    blocks (from its own ``make_blocks()`` call). Level 1's experts read x; later, task t's
    experts read h_{l-1}^t and the shared experts h_{l-1}^s. Task t's gate reads its level
    input and mixes its own and the shared experts, h_l^t = Σ_e softmax(W_l^t·flat)_e ·
    expert_e; below the last level a shared gate reads the shared input and mixes every
    expert of the level into h_l^s. Heads read h_L^t. Gates after level 1 read the flattened
    output of the group below, sized with `stage_shapes` (so ``levels > 1`` needs
    ``NetworkParts.input_shape``); level 1's gates read the flattened input (``input_dim``).

    Shared parameters are those every task's loss reaches (`level_reach`): with one level the
    shared experts; with more, level L's shared experts and everything below level L but
    level L-1's task gates (whose mixtures only their own task's level-L modules read).
    ``last_shared_parameters()`` are the last parameterised block of each of level L's shared
    experts. The representation is per task (``ModelOutput.representation`` is None).

    Args:
        config: a `PLEConfig`.
    """

    name: ClassVar[str] = "ple"
    config_cls: ClassVar[type[ArchitectureConfig]] = PLEConfig

    def settings(self) -> PLEConfig:
        """The PLE hyper-parameters this architecture builds with."""
        assert isinstance(self.config, PLEConfig)
        return self.config

    def check_parts(self, parts: NetworkParts) -> None:
        levels = self.settings().levels
        count = len(parts.make_blocks())
        if count == 0:
            raise ConfigError(f"architecture {self.name!r} needs at least one trunk block, got 0")
        if levels > count:
            raise ConfigError(
                f"architecture {self.name!r}: levels must be in 1..{count} "
                f"(the trunk has {count} blocks), got {levels}"
            )
        if levels > 1:
            require_input_shape(parts, self.name)

    def build(self, parts: NetworkParts) -> MultiTaskModel:
        config = self.settings()
        self.check_parts(parts)
        probe = list(parts.make_blocks())
        ends = list(itertools.accumulate(group_sizes(len(probe), config.levels)))
        widths = [parts.input_dim]
        if config.levels > 1:
            shapes = stage_shapes(parts, probe, self.name)
            widths += [math.prod(shapes[end - 1]) for end in ends[:-1]]
        kept: list[list[nn.Module]] = []

        def expert(start: int, end: int) -> nn.Sequential:
            blocks = list(parts.make_blocks())[start:end]
            kept.append(blocks)
            return split_blocks(blocks)

        num_tasks, own, shared = parts.num_tasks, config.experts_per_task, config.shared_experts
        levels = []
        for index, (start, end) in enumerate(zip([0, *ends[:-1]], ends, strict=True)):
            task_experts = [[expert(start, end) for _ in range(own)] for _ in range(num_tasks)]
            shared_experts = [expert(start, end) for _ in range(shared)]
            task_gates = [nn.Linear(widths[index], own + shared) for _ in range(num_tasks)]
            last = index == config.levels - 1
            shared_gate = None if last else nn.Linear(widths[index], num_tasks * own + shared)
            levels.append(PLELevel(task_experts, shared_experts, task_gates, shared_gate))
        check_distinct_blocks(kept)
        heads = [parts.make_head(t) for t in range(num_tasks)]
        logger.debug(
            "%s: %d levels, %d shared + %d per-task experts", self.name, len(ends), shared, own
        )
        return PLEModel(levels, heads)
