"""Hard parameter sharing: a shared trunk up to a chosen depth, then per-task towers and heads."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import ClassVar

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
from mtl_core.errors import ConfigError

logger = logging.getLogger(__name__)


def block_parameters(blocks: Sequence[nn.Module]) -> list[nn.Parameter]:
    """The parameters of the last block in ``blocks`` that has any (empty if none has)."""
    for block in reversed(blocks):
        params = list(block.parameters())
        if params:
            return params
    return []


def last_block_parameters(chains: Iterable[nn.Module]) -> list[nn.Parameter]:
    """`block_parameters` of every chain of blocks (experts, columns): GradNorm's W where the
    last shared layer has several copies."""
    return [p for chain in chains for p in block_parameters(list(chain.children()))]


def fresh_block_lists(parts: NetworkParts, count: int) -> list[list[nn.Module]]:
    """Call ``parts.make_blocks()`` ``count`` times; see `check_distinct_blocks`."""
    lists = [list(parts.make_blocks()) for _ in range(count)]
    check_distinct_blocks(lists)
    return lists


def check_distinct_blocks(lists: Sequence[Sequence[nn.Module]]) -> None:
    """Raise `ConfigError` if two block lists hold the same parameter.

    A ``make_blocks`` that returns the same modules twice would silently share parameters
    between what should be independent copies (towers, columns, experts).
    """
    seen: set[int] = set()
    for blocks in lists:
        ids = {id(p) for block in blocks for p in block.parameters()}
        if ids & seen:
            raise ConfigError(
                "NetworkParts.make_blocks() returned parameters it had returned before; "
                "it must build new blocks on every call"
            )
        seen |= ids


class HardConfig(ArchitectureConfig):
    """Hyper-parameters of `HardSharing`.

    Args:
        shared_depth: how many trunk blocks all tasks share; the rest are copied per task.
            None shares the whole trunk (the classic shared-bottom model).
    """

    shared_depth: int | None = Field(None, ge=0, le=1_000)


class HardSharingModel(MultiTaskModel):
    """Shared trunk → per-task tower (the unshared trunk blocks) → per-task head.

    Args:
        trunk: the shared blocks (may be empty).
        towers: one chain of unshared blocks per task (empty chains when all are shared).
        heads: one head per task.
    """

    def __init__(
        self, trunk: nn.Sequential, towers: list[nn.Sequential], heads: list[nn.Module]
    ) -> None:
        super().__init__()
        if len(towers) != len(heads):
            raise ValueError(f"need one tower per head, got {len(towers)=} and {len(heads)=}")
        self.trunk = trunk
        self.towers = nn.ModuleList(towers)
        self.heads = nn.ModuleList(heads)

    def forward(self, x: Tensor) -> ModelOutput:
        shared = self.trunk(x)
        outputs = [head(tower(shared)) for tower, head in zip(self.towers, self.heads, strict=True)]
        return ModelOutput(outputs=outputs, representation=shared if len(self.trunk) else None)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return block_parameters(list(self.trunk))


@ARCHITECTURES.register("hard")
class HardSharing(Architecture):
    """Hard parameter sharing (Caruana, "Multitask Learning", Machine Learning 1997).

    The first ``shared_depth`` trunk blocks are shared by every task; each task gets its own
    copy of the remaining blocks (built from a fresh ``make_blocks()`` call), then its head.
    ``ModelOutput.representation`` is the output of the last shared block (MGDA-UB's z), None
    when ``shared_depth == 0``. ``last_shared_parameters()`` are the parameters of the last
    shared block that has any (GradNorm's W).

    Args:
        config: a `HardConfig`.
    """

    name: ClassVar[str] = "hard"
    config_cls: ClassVar[type[ArchitectureConfig]] = HardConfig

    def shares_parameters(self) -> bool:
        assert isinstance(self.config, HardConfig)
        return self.config.shared_depth != 0

    def exposes_representation(self) -> bool:
        return self.shares_parameters()

    def check_parts(self, parts: NetworkParts) -> None:
        assert isinstance(self.config, HardConfig)
        count = len(parts.make_blocks())
        if self.config.shared_depth is not None and self.config.shared_depth > count:
            raise ConfigError(
                f"architecture 'hard': shared_depth must be in 0..{count} "
                f"(the trunk has {count} blocks), got {self.config.shared_depth}"
            )

    def build(self, parts: NetworkParts) -> MultiTaskModel:
        assert isinstance(self.config, HardConfig)
        blocks = list(parts.make_blocks())
        depth = len(blocks) if self.config.shared_depth is None else self.config.shared_depth
        if depth == len(blocks):
            towers = [nn.Sequential() for _ in range(parts.num_tasks)]
        else:
            copies = fresh_block_lists(parts, parts.num_tasks)
            check_distinct_blocks([blocks, *copies])
            towers = [split_blocks(copy[depth:]) for copy in copies]
        heads = [parts.make_head(t) for t in range(parts.num_tasks)]
        logger.debug("hard sharing: %d of %d blocks shared", depth, len(blocks))
        return HardSharingModel(split_blocks(blocks[:depth]), towers, heads)
