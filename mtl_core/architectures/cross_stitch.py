"""Cross-stitch networks: one column per task, the columns' stage outputs mixed by learned α."""

from __future__ import annotations

import logging
from collections.abc import Sequence
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
from mtl_core.architectures._registry import ARCHITECTURES
from mtl_core.architectures.hard import fresh_block_lists, last_block_parameters
from mtl_core.errors import ConfigError

logger = logging.getLogger(__name__)


def stitch_init(num_tasks: int, self_weight: float) -> Tensor:
    """The initial T×T α: ``self_weight`` on the diagonal, (1 − self_weight)/(T − 1) elsewhere.

    Every row sums to 1, so at init each column's mixed output is a convex combination of the
    columns' outputs; a single task gets α = [[1]] (there is nothing to mix with).
    """
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks=}")
    if not 0 < self_weight <= 1:
        raise ValueError(f"self_weight must be in (0, 1], got {self_weight=}")
    if num_tasks == 1:
        return torch.ones(1, 1)
    other = (1 - self_weight) / (num_tasks - 1)
    alpha = torch.full((num_tasks, num_tasks), other)
    return alpha.fill_diagonal_(self_weight)


class CrossStitchUnit(nn.Module):
    """One learnable scalar per pair of columns: x^t ← Σ_u α[t, u] · x^u.

    A module of its own so that α is a registered child's parameter (the batched trainer
    stacks submodules' parameters only).

    Args:
        alpha: the initial T×T mixing matrix (copied).
    """

    def __init__(self, alpha: Tensor) -> None:
        super().__init__()
        if alpha.dim() != 2 or alpha.shape[0] != alpha.shape[1]:
            raise ValueError(f"alpha must be a square matrix, got shape {tuple(alpha.shape)}")
        self.alpha = nn.Parameter(alpha.detach().clone())

    def forward(self, columns: Sequence[Tensor]) -> list[Tensor]:
        stacked = torch.stack(list(columns))  # [T, B, ...]
        return list(torch.einsum("tu,u...->t...", self.alpha, stacked).unbind(0))


class CrossStitchConfig(ArchitectureConfig):
    """Hyper-parameters of `CrossStitch`.

    Args:
        self_weight: initial α[t, t], the weight a column keeps on its own features; the
            rest, 1 − self_weight, is split evenly over the other columns. 1 starts from
            independent columns.
    """

    self_weight: float = Field(0.9, gt=0, le=1, allow_inf_nan=False)


class CrossStitchModel(MultiTaskModel):
    """One column of trunk blocks per task, a cross-stitch unit after each block, one head each.

    Args:
        columns: one trunk chain per task, all with the same blocks (parameter shapes).
        stitches: one `CrossStitchUnit` of size T×T per block.
        heads: one head per task.
    """

    def __init__(
        self, columns: list[nn.Sequential], stitches: list[CrossStitchUnit], heads: list[nn.Module]
    ) -> None:
        super().__init__()
        if len(columns) != len(heads):
            raise ValueError(f"need one column per head, got {len(columns)=} and {len(heads)=}")
        layouts = [[[tuple(p.shape) for p in b.parameters()] for b in c] for c in columns]
        if any(layout != layouts[0] for layout in layouts):
            raise ConfigError("cross-stitch needs make_blocks() to build the same layers each call")
        if len(stitches) != len(columns[0]):
            raise ValueError(f"need one stitch per block ({len(columns[0])}), got {len(stitches)}")
        if any(s.alpha.shape != (len(columns), len(columns)) for s in stitches):
            raise ValueError(f"each stitch must be {len(columns)}x{len(columns)}")
        self.columns = nn.ModuleList(columns)
        self.stitches = nn.ModuleList(stitches)
        self.heads = nn.ModuleList(heads)

    def forward(self, x: Tensor) -> ModelOutput:
        features = [x] * len(self.columns)
        # stages yields (block s of column 1, ..., block s of column T) for s = 1 .. S.
        stages = zip(*(column.children() for column in self.columns), strict=True)
        for blocks, stitch in zip(stages, self.stitches, strict=True):
            features = stitch([block(f) for block, f in zip(blocks, features, strict=True)])
        outputs = [head(f) for head, f in zip(self.heads, features, strict=True)]
        return ModelOutput(outputs=outputs, representation=None)

    def shared_parameters(self) -> list[nn.Parameter]:
        # With T > 1 every stitch feeds each column's features into every other column (the
        # last one into every head), so every task's loss reaches every column and stitch.
        return [*self.columns.parameters(), *self.stitches.parameters()]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return last_block_parameters(self.columns)


@ARCHITECTURES.register("cross_stitch")
class CrossStitch(Architecture):
    """Cross-stitch networks (Misra, Shrivastava, Gupta, Hebert, CVPR 2016, "Cross-stitch
    Networks for Multi-task Learning").

    Every task gets its own column, a fresh ``make_blocks()`` chain. After each block s the
    columns' outputs are mixed, x_s^t ← Σ_u α_s[t, u] · x_s^u, with α_s a learnable T×T
    matrix (one scalar per pair of columns, the paper's basic unit) initialised to
    ``self_weight`` on the diagonal and (1 − self_weight)/(T − 1) elsewhere (the paper's
    0.9 / 0.1). Head t reads column t's mixed output. The paper trains α with a larger
    learning rate; here α uses the trial's.

    With T > 1 every task's loss reaches every column and every stitch, so those are the
    shared parameters (the last stitch's row t only gets task t's gradient, other tasks
    give it zeros); heads are task parameters. ``last_shared_parameters()`` are the last
    parameterised block of every column (GradNorm's W). The representation is per task, so
    ``ModelOutput.representation`` is None. Cost: T times the trunk's parameters and compute
    (like soft sharing) plus S·T² mixing weights.

    Args:
        config: a `CrossStitchConfig`.
    """

    name: ClassVar[str] = "cross_stitch"
    config_cls: ClassVar[type[ArchitectureConfig]] = CrossStitchConfig

    def check_parts(self, parts: NetworkParts) -> None:
        if not parts.make_blocks():
            raise ConfigError("architecture 'cross_stitch' needs at least one trunk block, got 0")

    def build(self, parts: NetworkParts) -> MultiTaskModel:
        assert isinstance(self.config, CrossStitchConfig)
        lists = fresh_block_lists(parts, parts.num_tasks)
        alpha = stitch_init(parts.num_tasks, self.config.self_weight)
        stitches = [CrossStitchUnit(alpha) for _ in lists[0]]
        heads = [parts.make_head(t) for t in range(parts.num_tasks)]
        logger.debug(
            "cross-stitch: %d columns of %d blocks, self_weight=%g",
            parts.num_tasks,
            len(lists[0]),
            self.config.self_weight,
        )
        return CrossStitchModel([split_blocks(b) for b in lists], stitches, heads)
