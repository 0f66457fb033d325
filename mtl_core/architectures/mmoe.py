"""Multi-gate mixture of experts: shared experts, one softmax gate per task."""

from __future__ import annotations

import logging
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from mtl_core.architectures._base import (
    Architecture,
    ArchitectureConfig,
    ModelOutput,
    MultiTaskModel,
    NetworkParts,
    split_blocks,
)
from mtl_core.architectures._gates import mix, softmax_gate
from mtl_core.architectures._registry import ARCHITECTURES
from mtl_core.architectures.hard import fresh_block_lists, last_block_parameters

logger = logging.getLogger(__name__)


class MMoEConfig(ArchitectureConfig):
    """Hyper-parameters of `MMoE`.

    Args:
        num_experts: how many expert trunks the tasks share.
    """

    num_experts: int = Field(4, ge=1, le=64)


class MMoEModel(MultiTaskModel):
    """Experts (full trunks) shared by all tasks, mixed per task by a softmax gate.

    Args:
        experts: the expert trunks, each input → representation.
        gates: one ``Linear(input_dim → num_experts)`` per task, read on the flattened input.
        heads: one head per task.
    """

    def __init__(
        self, experts: list[nn.Sequential], gates: list[nn.Linear], heads: list[nn.Module]
    ) -> None:
        super().__init__()
        if not experts:
            raise ValueError("MMoE needs at least one expert, got 0")
        if len(gates) != len(heads):
            raise ValueError(f"need one gate per head, got {len(gates)=} and {len(heads)=}")
        for gate in gates:
            if gate.out_features != len(experts):
                raise ValueError(
                    f"each gate must have one output per expert ({len(experts)}), "
                    f"got {gate.out_features=}"
                )
        self.experts = nn.ModuleList(experts)
        self.gates = nn.ModuleList(gates)
        self.heads = nn.ModuleList(heads)

    def gate_weights(self, x: Tensor) -> Tensor:
        """The ``[T, B, E]`` mixture weights of each task's gate (rows sum to 1)."""
        return torch.stack([softmax_gate(gate, x) for gate in self.gates])

    def forward(self, x: Tensor) -> ModelOutput:
        expert_out = [expert(x) for expert in self.experts]
        # One gate at a time (not one stacked [T, B, E] tensor) so that task t's loss has no
        # graph edge, not even a zero gradient, into the other tasks' gates.
        outputs = [
            head(mix(softmax_gate(gate, x), expert_out))
            for gate, head in zip(self.gates, self.heads, strict=True)
        ]
        return ModelOutput(outputs=outputs, representation=None)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.experts.parameters())

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return last_block_parameters(self.experts)


@ARCHITECTURES.register("mmoe")
class MMoE(Architecture):
    """Multi-gate Mixture-of-Experts (Ma, Zhao, Yi, Chen, Hong, Chi, KDD 2018, "Modeling Task
    Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts").

    ``num_experts`` experts, each a fresh ``make_blocks()`` chain, are shared by every task.
    Task t mixes them with its own gate, g_t(x) = softmax(W_t · flatten(x)), into
    r_t(x) = Σ_e g_t,e(x) · expert_e(x), which its head reads. Shared parameters are the
    experts'; gates and heads are task parameters. The representation is per task, so
    ``ModelOutput.representation`` is None (`exposes_representation` is False: a strategy
    that works on the representation, MGDA-UB or GradDrop, ends with a `ConfigError` here).
    ``last_shared_parameters()`` are the parameters of the last parameterised block of every
    expert (GradNorm's W).

    Args:
        config: an `MMoEConfig`.
    """

    name: ClassVar[str] = "mmoe"
    config_cls: ClassVar[type[ArchitectureConfig]] = MMoEConfig

    def build(self, parts: NetworkParts) -> MultiTaskModel:
        assert isinstance(self.config, MMoEConfig)
        num_experts = self.config.num_experts
        experts = [split_blocks(blocks) for blocks in fresh_block_lists(parts, num_experts)]
        gates = [nn.Linear(parts.input_dim, num_experts) for _ in range(parts.num_tasks)]
        heads = [parts.make_head(t) for t in range(parts.num_tasks)]
        logger.debug("mmoe: %d experts, %d tasks", num_experts, parts.num_tasks)
        return MMoEModel(experts, gates, heads)
