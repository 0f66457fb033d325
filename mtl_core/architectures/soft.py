"""Soft parameter sharing: one column per task, corresponding trunk layers pulled together."""

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
from mtl_core.architectures.hard import fresh_block_lists
from mtl_core.errors import ConfigError

logger = logging.getLogger(__name__)


def pairwise_squared_distance(per_column: Sequence[Sequence[Tensor]]) -> Tensor:
    """Σ_{i<j} Σ_k ‖θ_i,k - θ_j,k‖² for ``per_column[i][k]`` = parameter k of column i.

    A plain function of tensors, so a functional trainer can apply it to its own (stacked or
    vmapped) parameters.

    Args:
        per_column: one list of tensors per column, corresponding tensors of equal shape.
    """
    total: Tensor | None = None
    for corresponding in zip(*per_column, strict=True):
        flat = torch.stack([p.reshape(-1) for p in corresponding])  # [T, n]
        # Explicit differences (not the T·Σ‖p‖² - ‖Σp‖² identity) so equal columns give
        # exactly 0; one row against all later rows keeps memory at O(T·n).
        for i in range(flat.shape[0] - 1):
            term = (flat[i + 1 :] - flat[i]).pow(2).sum()
            total = term if total is None else total + term
    if total is None:  # a single column, or columns without parameters
        first = next((p for column in per_column for p in column), None)
        if first is None:
            raise ValueError("per_column holds no parameters")
        return first.new_zeros(())
    return total


class SoftConfig(ArchitectureConfig):
    """Hyper-parameters of `SoftSharing`.

    Args:
        pull: λ >= 0, the strength of the squared-L2 pull between the columns' trunks.
    """

    pull: float = Field(1e-3, ge=0, allow_inf_nan=False)


class SoftSharingModel(MultiTaskModel):
    """One full column (trunk blocks + head) per task; no parameter is shared.

    Args:
        columns: one trunk chain per task, all of the same structure.
        heads: one head per task.
        pull: λ of `regularization`.
    """

    def __init__(self, columns: list[nn.Sequential], heads: list[nn.Module], pull: float) -> None:
        super().__init__()
        if pull < 0:
            raise ValueError(f"pull must be >= 0, got {pull=}")
        if len(columns) != len(heads):
            raise ValueError(f"need one column per head, got {len(columns)=} and {len(heads)=}")
        shapes = [[tuple(p.shape) for p in column.parameters()] for column in columns]
        if any(s != shapes[0] for s in shapes):
            raise ConfigError("soft sharing needs make_blocks() to build the same layers each call")
        self.columns = nn.ModuleList(columns)
        self.heads = nn.ModuleList(heads)
        self.pull = pull

    def forward(self, x: Tensor) -> ModelOutput:
        outputs = [head(column(x)) for column, head in zip(self.columns, self.heads, strict=True)]
        return ModelOutput(outputs=outputs, representation=None)

    def shared_parameters(self) -> list[nn.Parameter]:
        return []

    def distance(self) -> Tensor:
        """Σ over pairs of columns i < j and corresponding trunk parameters of ‖p_i - p_j‖²."""
        per_column = [list(column.parameters()) for column in self.columns]
        if not per_column[0]:
            return torch.zeros((), device=next(self.parameters()).device)
        return pairwise_squared_distance(per_column)

    def regularization(self) -> Tensor:
        return self.pull * self.distance()


@ARCHITECTURES.register("soft")
class SoftSharing(Architecture):
    """Soft parameter sharing (Duong, Cohn, Bird, Cook, ACL 2015, "Low Resource Dependency
    Parsing: Cross-lingual Parameter Sharing in a Neural Network Parser").

    Every task gets its own column: a fresh ``make_blocks()`` chain and its head. The
    architecture's `regularization()` is λ · Σ_{i<j} Σ_k ‖θ_i,k - θ_j,k‖², summed over every
    pair of columns and every corresponding trunk parameter k; heads are not pulled, since
    they predict different things (and often have different shapes). The trainer adds it to
    the loss. No parameter is shared, so `shared_parameters()` is empty and gradient-based
    strategies (PCGrad, MGDA, CAGrad, GradNorm) have nothing to combine: use loss-based ones.
    ``ModelOutput.representation`` is None.

    Args:
        config: a `SoftConfig`.
    """

    name: ClassVar[str] = "soft"
    config_cls: ClassVar[type[ArchitectureConfig]] = SoftConfig

    def shares_parameters(self) -> bool:
        return False

    def build(self, parts: NetworkParts) -> MultiTaskModel:
        assert isinstance(self.config, SoftConfig)
        columns = [split_blocks(blocks) for blocks in fresh_block_lists(parts, parts.num_tasks)]
        heads = [parts.make_head(t) for t in range(parts.num_tasks)]
        logger.debug("soft sharing: %d columns, pull=%g", parts.num_tasks, self.config.pull)
        return SoftSharingModel(columns, heads, self.config.pull)
