"""Multi-task attention network: one shared trunk, a soft attention mask per task and stage."""

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
    stage_shapes,
)
from mtl_core.architectures._registry import ARCHITECTURES
from mtl_core.architectures.hard import block_parameters
from mtl_core.errors import ConfigError

logger = logging.getLogger(__name__)


def check_stage_shapes(shapes: Sequence[tuple[int, ...]]) -> None:
    """Raise `ConfigError` unless every stage's per-sample shape is [C], [C, L] or [C, H, W].

    Those are the shapes a 1x1 attention layer (Linear, Conv1d, Conv2d) can be built for.
    """
    if not shapes:
        raise ConfigError("architecture 'mtan' needs at least one trunk block, got 0")
    for index, shape in enumerate(shapes, start=1):
        if not 1 <= len(shape) <= 3:
            raise ConfigError(
                f"architecture 'mtan': trunk block {index} outputs per-sample shape {shape}; "
                "its attention needs [C], [C, L] or [C, H, W]"
            )


def attention_module(shape: tuple[int, ...], width: int | None) -> nn.Sequential:
    """A_s^t for a stage of per-sample ``shape``: 2C → ``width`` → C, 1x1, the mask's logits.

    It reads the concatenation of the shared features and the task's own along the channel
    dimension (hence 2C inputs); ``width`` None is C.
    """
    check_stage_shapes([shape])
    channels = shape[0]
    hidden = channels if width is None else width
    if len(shape) == 1:
        return nn.Sequential(
            nn.Linear(2 * channels, hidden), nn.ReLU(), nn.Linear(hidden, channels)
        )
    conv = nn.Conv1d if len(shape) == 2 else nn.Conv2d
    return nn.Sequential(conv(2 * channels, hidden, 1), nn.ReLU(), conv(hidden, channels, 1))


class MTANConfig(ArchitectureConfig):
    """Hyper-parameters of `MTAN`.

    Args:
        attention_width: hidden width of every attention module; None uses the channel count
            C of that module's stage.
    """

    attention_width: int | None = Field(None, ge=1, le=65_536)


class MTANModel(MultiTaskModel):
    """A shared trunk whose stage outputs each task re-weights with its own sigmoid masks.

    Args:
        trunk: the shared blocks (at least one).
        attention: one list per task of one attention module per trunk block, each mapping
            ``concat(shared, task features)`` (2C channels) to the mask's logits (C channels).
        heads: one head per task.
    """

    def __init__(
        self,
        trunk: nn.Sequential,
        attention: Sequence[Sequence[nn.Module]],
        heads: Sequence[nn.Module],
    ) -> None:
        super().__init__()
        if len(trunk) == 0:
            raise ValueError("MTAN needs at least one trunk block, got 0")
        if len(attention) != len(heads):
            raise ValueError(f"need one attention list per head, got {len(attention)=}")
        for modules in attention:
            if len(modules) != len(trunk):
                raise ValueError(
                    f"need one attention module per trunk block ({len(trunk)}), got {len(modules)}"
                )
        self.trunk = trunk
        self.attention = nn.ModuleList(nn.ModuleList(modules) for modules in attention)
        self.heads = nn.ModuleList(heads)

    def _shared(self, x: Tensor) -> list[Tensor]:
        """f_1 .. f_S, the shared trunk's output after each block."""
        features = []
        for block in self.trunk:
            x = block(x)
            features.append(x)
        return features

    def _attend(self, shared: list[Tensor], modules: nn.Module) -> tuple[list[Tensor], Tensor]:
        """One task's masks m_1 .. m_S and its attended features a_S."""
        masks: list[Tensor] = []
        attended: Tensor | None = None
        for block, module, features in zip(self.trunk, modules.children(), shared, strict=True):
            # q_1 = block_1(a_0) = block_1(x) = f_1: reuse it rather than run block 1 again.
            query = features if attended is None else block(attended)
            mask = torch.sigmoid(module(torch.cat([features, query], dim=1)))
            masks.append(mask)
            attended = mask * features
        assert attended is not None  # MTANModel checks the trunk has a block
        return masks, attended

    def attention_masks(self, x: Tensor) -> list[list[Tensor]]:
        """``masks[t][s]``: task t's mask over the output of trunk block s (values in (0, 1))."""
        shared = self._shared(x)
        return [self._attend(shared, modules)[0] for modules in self.attention]

    def forward(self, x: Tensor) -> ModelOutput:
        shared = self._shared(x)
        outputs = [
            head(self._attend(shared, modules)[1])
            for modules, head in zip(self.attention, self.heads, strict=True)
        ]
        return ModelOutput(outputs=outputs, representation=None)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return block_parameters(list(self.trunk))


@ARCHITECTURES.register("mtan")
class MTAN(Architecture):
    """Multi-Task Attention Network (Liu, Johns, Davison, CVPR 2019, "End-to-End Multi-Task
    Learning with Attention").

    Every trunk block is shared (f_0 = x, f_s = block_s(f_{s-1})). Task t re-weights each
    stage's shared features with its own soft mask: a_0^t = x and, for s = 1 .. S,
    q_s^t = block_s(a_{s-1}^t) (the shared block, on the task's attended features; q_1 = f_1),
    m_s^t = sigmoid(A_s^t(concat(f_s, q_s^t))) and a_s^t = m_s^t ⊙ f_s; head t reads a_S^t.
    A_s^t is Linear(2C → w) + ReLU + Linear(w → C) on a per-sample shape [C], the same with
    1x1 Conv1d on [C, L] and 1x1 Conv2d on [C, H, W]; other shapes are a `ConfigError`.

    Needs ``NetworkParts.input_shape`` to size the attention modules (`stage_shapes`). Shared
    parameters are the trunk's; attention modules and heads are task parameters;
    ``last_shared_parameters()`` are the last parameterised trunk block's (GradNorm's W). Each
    task reads its own features, so ``ModelOutput.representation`` is None. Cost: the trunk
    runs once for the shared features and once more per task from block 2 on (T + 1 passes
    through stages >= 2), plus the attention modules. BatchNorm in a block therefore also
    updates its running statistics on the tasks' attended features.

    Args:
        config: an `MTANConfig`.
    """

    name: ClassVar[str] = "mtan"
    config_cls: ClassVar[type[ArchitectureConfig]] = MTANConfig

    def check_parts(self, parts: NetworkParts) -> None:
        check_stage_shapes(stage_shapes(parts, parts.make_blocks(), self.name))

    def build(self, parts: NetworkParts) -> MultiTaskModel:
        assert isinstance(self.config, MTANConfig)
        blocks = list(parts.make_blocks())
        shapes = stage_shapes(parts, blocks, self.name)
        check_stage_shapes(shapes)
        width = self.config.attention_width
        attention = [
            [attention_module(shape, width) for shape in shapes] for _ in range(parts.num_tasks)
        ]
        heads = [parts.make_head(t) for t in range(parts.num_tasks)]
        logger.debug("mtan: %d stages of shapes %s, %d tasks", len(shapes), shapes, len(heads))
        return MTANModel(split_blocks(blocks), attention, heads)
