"""Learning to Branch: a tree of trunk-block copies whose branching is learned with
Gumbel-softmax."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import ClassVar, cast

import torch
from pydantic import Field
from torch import Tensor, nn

from mtl_core.architectures._base import (
    Architecture,
    ArchitectureConfig,
    ModelOutput,
    MultiTaskModel,
    NetworkParts,
)
from mtl_core.architectures._registry import ARCHITECTURES
from mtl_core.architectures.hard import fresh_block_lists
from mtl_core.errors import ConfigError

logger = logging.getLogger(__name__)

# splitmix64's increment and finaliser (SplitMix: Steele, Lea, Flood, OOPSLA 2014, with
# Stafford's "Mix13" constants) as signed int64: torch has no uint64 arithmetic, and its int64
# add and multiply wrap modulo 2^64 (two's complement), the unsigned arithmetic the hash needs.
_GAMMA = 0x9E3779B97F4A7C15 - 2**64
_MIX_1 = 0xBF58476D1CE4E5B9 - 2**64
_MIX_2 = 0x94D049BB133111EB - 2**64


def _shift_right(z: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 ``z``: torch's ``>>`` is arithmetic (copies the sign bit
    into the top), so the copied bits are masked off."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _splitmix64(z: Tensor) -> Tensor:
    z = (z ^ _shift_right(z, 30)) * _MIX_1
    z = (z ^ _shift_right(z, 27)) * _MIX_2
    return z ^ _shift_right(z, 31)


def gumbel_noise(seed: Tensor, step: Tensor, count: int) -> Tensor:
    """``count`` standard Gumbel draws (float64), a pure function of (seed, step, index).

    A counter-based generator: the key ``mix(seed + (step+1)·γ)`` is mixed with each index
    ``mix(key + (i+1)·γ)`` (splitmix64), the top 53 bits become u in (0, 1) and
    g = −log(−log u). The hash is integer arithmetic, so it is exact: the same trial draws
    the same noise alone or vmapped beside others, which torch's random generator cannot
    promise.

    Args:
        seed: int64 scalar, the model's seed.
        step: int64 scalar, the count of training forwards so far.
        count: how many draws (one per branching logit).
    """
    index = torch.arange(1, count + 1, dtype=torch.int64, device=seed.device)
    key = _splitmix64(seed + (step + 1) * _GAMMA)
    bits = _shift_right(_splitmix64(key + index * _GAMMA), 11)
    # bits < 2^53 converts exactly; the clamp (u in [2^-53, 1 - 2^-53]) keeps both logarithms
    # finite.
    u = (bits.to(torch.float64) * 2.0**-53).clamp(2.0**-53, 1.0 - 2.0**-53)
    return -torch.log(-torch.log(u))


class LTBConfig(ArchitectureConfig):
    """Hyper-parameters of `LearningToBranch`.

    Args:
        branches: nodes at every stage but the last (which has one per task); None = the
            number of tasks.
        temperature: τ > 0 of the Gumbel-softmax over a node's parents.
        warmup_steps: training forward passes with a noise-free soft mixture before Gumbel
            noise starts. 100 by default: the blocks are random at first, so routing on noise
            would only add variance; 100 steps let the logits take a direction first and are
            a small part of any real run.
    """

    branches: int | None = Field(None, ge=1, le=64)
    temperature: float = Field(1.0, gt=0, allow_inf_nan=False)
    warmup_steps: int = Field(100, ge=0, le=100_000_000)


class BranchLogits(nn.Module):
    """One node's branching logits over its parents (zero: every parent equally likely)."""

    def __init__(self, parents: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(parents))


class NoiseCounter(nn.Module):
    """The Gumbel noise's state: a seed and the count of training forwards (buffers, so
    they are stacked per trial; ``step`` is updated in place like BatchNorm's
    ``num_batches_tracked``)."""

    def __init__(self) -> None:
        super().__init__()
        # Drawn from torch's generator at build time: the trial's seed governs the noise.
        self.register_buffer("seed", torch.randint(0, 2**62, (), dtype=torch.int64))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))

    seed: Tensor
    step: Tensor


class LTBModel(MultiTaskModel):
    """Stages of trunk-block copies; each node mixes the previous stage's outputs.

    Args:
        stages: one list of nodes per trunk block; the last has one node per head.
        heads: one head per task.
        temperature: τ of the Gumbel-softmax.
        warmup_steps: training forwards without noise.
    """

    def __init__(
        self,
        stages: Sequence[Sequence[nn.Module]],
        heads: list[nn.Module],
        temperature: float,
        warmup_steps: int,
    ) -> None:
        super().__init__()
        if not stages or any(not stage for stage in stages):
            raise ValueError(f"need at least one stage, none empty, got {len(stages)=}")
        if len(stages[-1]) != len(heads):
            raise ValueError(f"need one last-stage node per head, got {len(stages[-1])=}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature=}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps=}")
        for stage in stages:
            shapes = [[tuple(p.shape) for p in node.parameters()] for node in stage]
            if any(s != shapes[0] for s in shapes):
                raise ConfigError("ltb needs make_blocks() to build the same layers each call")
        self.stages = nn.ModuleList(nn.ModuleList(stage) for stage in stages)
        # gates[s][j]: node j of stage s over the nodes of stage s-1 (stage 0 reads the input).
        self.gates = nn.ModuleList([nn.ModuleList()])
        for parents, stage in itertools.pairwise(stages):
            self.gates.append(nn.ModuleList(BranchLogits(len(parents)) for _ in stage))
        self.counter = NoiseCounter()
        self.heads = nn.ModuleList(heads)
        self.temperature = temperature
        self.warmup_steps = warmup_steps

    def nodes(self) -> list[list[nn.Module]]:
        """``[s][j]``: node j of stage s."""
        return [list(cast(nn.ModuleList, stage)) for stage in self.stages]

    def logits(self) -> list[list[Tensor]]:
        """``[s][j]``: node j's logits over the nodes of stage s-1 (none at stage 0)."""
        return [
            [cast(BranchLogits, gate).logits for gate in cast(nn.ModuleList, stage)]
            for stage in self.gates
        ]

    def branch_weights(self) -> list[list[Tensor]]:
        """``[s][j]``: node j's weights over its parents at stage s (none at stage 0).

        Training: softmax((logits + g)/τ), g = 0 during the warm-up, Gumbel noise after.
        Evaluation: the one-hot argmax of the logits (the discrete tree). Does not advance
        the step (`forward` does).
        """
        per_stage = self.logits()
        flat = [lg for stage in per_stage for lg in stage]
        if not self.training:
            # Compared with an index (not one_hot, which checks values and breaks vmap).
            weights = [
                (torch.arange(len(lg), device=lg.device) == lg.argmax()).to(lg.dtype) for lg in flat
            ]
        else:
            count = sum(len(lg) for lg in flat)
            noise = gumbel_noise(self.counter.seed, self.counter.step, count)
            noise = torch.where(self.counter.step >= self.warmup_steps, noise, 0.0)
            draws = noise.split([len(lg) for lg in flat])
            # One softmax per node (not one over a stacked tensor) so that the last stage's
            # node t's logits get no graph edge from the other tasks' losses.
            weights = [
                torch.softmax((lg + g.to(lg.dtype)) / self.temperature, dim=0)
                for lg, g in zip(flat, draws, strict=True)
            ]
        it = iter(weights)
        return [[next(it) for _ in stage] for stage in per_stage]

    def forward(self, x: Tensor) -> ModelOutput:
        weights = self.branch_weights()
        if self.training:
            self.counter.step.add_(1)
        nodes = self.nodes()
        outs = [node(x) for node in nodes[0]]
        for stage, stage_weights in zip(nodes[1:], weights[1:], strict=True):
            parents = torch.stack(outs)  # [N, B, ...]
            shape = (len(outs), *(1,) * (parents.dim() - 1))
            outs = [
                node((w.reshape(shape) * parents).sum(dim=0))
                for node, w in zip(stage, stage_weights, strict=True)
            ]
        outputs = [head(out) for head, out in zip(list(self.heads), outs, strict=True)]
        return ModelOutput(outputs=outputs, representation=None)

    def shared_parameters(self) -> list[nn.Parameter]:
        # Every stage but the last feeds every node of the next through a positive softmax
        # weight, so every task reaches it and its logits; the last stage's node t and its
        # logits only task t.
        shared = [*self.stages[:-1], *self.gates[:-1]]
        return [p for module in shared for p in module.parameters()]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        for stage in reversed(self.stages[:-1]):
            params = list(stage.parameters())
            if params:
                return params
        return self.shared_parameters()  # parameterless blocks: the logits are what is shared


@ARCHITECTURES.register("ltb")
class LearningToBranch(Architecture):
    """Learning to Branch (Guo, Lee, Ulbricht, ICML 2020, "Learning to Branch for
    Multi-Task Learning").

    Trunk block s becomes a stage of N_s nodes, each a fresh copy of the block: N_s =
    ``branches`` for every block but the last, one node per task for the last. Stage-1 nodes
    read the input; node j of a later stage reads Σ_i w_j,i · out_i over the previous
    stage's nodes, w_j = softmax((logits_j + g)/τ) with zero-initialised logits. g = 0 for
    the first ``warmup_steps`` training forwards, then Gumbel noise from a counter-based
    hash of the model's seed, the step and the logit's index (`gumbel_noise`), identical
    alone and batched. In evaluation w_j is the one-hot argmax of logits_j: the tree the
    training found. Head t reads the last stage's node t.

    Shared parameters are every stage but the last, with its logits (each reaches every
    task through a positive softmax weight); the last stage's nodes, their logits and the
    heads are task parameters. ``last_shared_parameters()`` are the nodes of the last
    shared stage. The trunk needs at least 2 blocks, the first of them with parameters when
    there are exactly 2 (else nothing is shared). Representations are per task, so
    ``ModelOutput.representation`` is None. Cost: ``branches`` copies of every block but the
    last, T copies of the last, all computed in evaluation too (the one-hot weights select).

    Args:
        config: an `LTBConfig`.
    """

    name: ClassVar[str] = "ltb"
    config_cls: ClassVar[type[ArchitectureConfig]] = LTBConfig

    def check_parts(self, parts: NetworkParts) -> None:
        blocks = parts.make_blocks()
        if len(blocks) < 2:
            raise ConfigError(
                "architecture 'ltb' branches between trunk blocks and needs at least 2, "
                f"the experiment's trunk has {len(blocks)}"
            )
        if len(blocks) == 2 and not list(blocks[0].parameters()):
            raise ConfigError(
                "architecture 'ltb' shares the trunk blocks before the last and their logits; "
                "with 2 blocks the first needs parameters, the experiment's has none"
            )

    def build(self, parts: NetworkParts) -> MultiTaskModel:
        assert isinstance(self.config, LTBConfig)
        tasks = parts.num_tasks
        branches = tasks if self.config.branches is None else self.config.branches
        copies = fresh_block_lists(parts, max(branches, tasks))
        depth = len(copies[0])
        stages = [[copies[j][s] for j in range(branches)] for s in range(depth - 1)]
        stages.append([copies[t][depth - 1] for t in range(tasks)])
        heads = [parts.make_head(t) for t in range(tasks)]
        logger.debug("ltb: %d stages, %d branches, %d tasks", depth, branches, tasks)
        return LTBModel(stages, heads, self.config.temperature, self.config.warmup_steps)
