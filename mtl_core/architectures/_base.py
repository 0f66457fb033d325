"""Multi-task model contract and the architecture base class.

An *experiment* says what the network is made of: an ordered list of trunk blocks (input →
representation) and one head per task. An *architecture* says how those pieces are shared
between tasks (hard sharing up to a depth, soft sharing, MMoE). The trainer and the weighting
strategies only see the `MultiTaskModel` contract below.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from mtl_core.errors import ConfigError


@dataclass
class ModelOutput:
    """One forward pass.

    Args:
        outputs: one prediction tensor per task, in task order.
        representation: the shared representation the heads read (hard sharing / MMoE), for
            MGDA-UB; None where tasks share no representation.
    """

    outputs: list[Tensor]
    representation: Tensor | None = None


class MultiTaskModel(nn.Module, abc.ABC):
    """A network with several task outputs and a known split of shared / task parameters."""

    @abc.abstractmethod
    def forward(self, x: Tensor) -> ModelOutput: ...

    @abc.abstractmethod
    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's loss reaches (empty for soft sharing)."""

    def task_parameters(self) -> list[nn.Parameter]:
        """All parameters that are not shared (heads, task columns, gates)."""
        shared = {id(p) for p in self.shared_parameters()}
        return [p for p in self.parameters() if id(p) not in shared]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last shared layer's parameters (GradNorm's W). Defaults to all shared ones."""
        return self.shared_parameters()

    def regularization(self) -> Tensor:
        """Extra loss term the architecture adds (soft sharing's L2 pull); zero by default."""
        return torch.zeros((), device=next(self.parameters()).device)


@dataclass(frozen=True)
class NetworkParts:
    """What an experiment gives an architecture to build from.

    Args:
        make_blocks: returns a *new* list of trunk blocks, input → representation, each call
            with fresh parameters (soft sharing and MMoE build several copies).
        representation_dim: width of the last block's (flattened) output.
        make_head: returns a new head for a task index (its output is that task's prediction).
        input_dim: number of input features once flattened (MMoE's gates read the input).
        num_tasks: number of tasks.
        input_shape: one sample's input shape (``(1, 28, 28)``, ``(101,)``). Architectures
            that size modules after a trunk stage (MTAN's attention, PLE's later gates) probe
            the blocks with it (`stage_shapes`). `Experiment.parts_for` fills it from the data,
            so an experiment's ``network_parts`` need not set it.
    """

    make_blocks: Callable[[], list[nn.Module]]
    representation_dim: int
    make_head: Callable[[int], nn.Module]
    input_dim: int
    num_tasks: int
    input_shape: tuple[int, ...] | None = None


class ArchitectureConfig(BaseModel):
    """Base of every architecture's typed hyper-parameters; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Architecture(abc.ABC):
    """Builds a `MultiTaskModel` from an experiment's `NetworkParts`."""

    name: ClassVar[str]
    config_cls: ClassVar[type[ArchitectureConfig]] = ArchitectureConfig

    def __init__(self, config: ArchitectureConfig) -> None:
        self.config = config

    def shares_parameters(self) -> bool:
        """Whether the built model has parameters shared by the tasks (what gradient-based
        strategies combine); known from the config, before anything is built."""
        return True

    def exposes_representation(self) -> bool:
        """Whether the built model's `ModelOutput.representation` is one tensor that every
        head reads (what MGDA-UB and GradDrop work on); known from the config."""
        return False

    def check_parts(self, parts: NetworkParts) -> None:
        """Raise `ConfigError` (one line naming the parameter or the missing part) when this
        architecture cannot be built from ``parts``; `build_model` calls it before `build`,
        and a study spec is checked with it before any trial runs. Nothing to check by
        default."""
        del parts  # every experiment's parts can serve the architectures that do not override

    @abc.abstractmethod
    def build(self, parts: NetworkParts) -> MultiTaskModel: ...


def split_blocks(blocks: Sequence[nn.Module]) -> nn.Sequential:
    """Chain blocks into one module (helper for the architectures)."""
    return nn.Sequential(*blocks)


def require_input_shape(parts: NetworkParts, architecture: str) -> tuple[int, ...]:
    """``parts.input_shape``, or a `ConfigError` saying that ``architecture`` needs it."""
    if parts.input_shape is None:
        raise ConfigError(
            f"architecture {architecture!r} sizes its modules after each trunk block and needs "
            "NetworkParts.input_shape (one sample's input shape); build the parts with "
            "Experiment.parts_for, or set input_shape"
        )
    return parts.input_shape


def stage_shapes(
    parts: NetworkParts, blocks: Sequence[nn.Module], architecture: str
) -> list[tuple[int, ...]]:
    """One sample's output shape after each of ``blocks`` (a probe with zeros, no gradient).

    The blocks run in evaluation mode (BatchNorm neither needs two samples nor updates its
    statistics) and are put back in the mode they were in.

    Raises:
        ConfigError: ``parts`` has no ``input_shape``, or a block fails on the probe.
    """
    shape = require_input_shape(parts, architecture)
    modes = [block.training for block in blocks]
    shapes: list[tuple[int, ...]] = []
    try:
        for block in blocks:
            block.eval()
        with torch.no_grad():
            x = torch.zeros((1, *shape))
            for block in blocks:
                x = block(x)
                shapes.append(tuple(int(d) for d in x.shape[1:]))
    except RuntimeError as exc:
        raise ConfigError(
            f"architecture {architecture!r}: the trunk blocks fail on one sample of shape "
            f"{shape}: {exc}"
        ) from None
    finally:
        for block, mode in zip(blocks, modes, strict=True):
            block.train(mode)
    return shapes
