"""The weighting-strategy contract.

A strategy turns the per-task losses of one step into gradients on the model's parameters.
The trainer calls, once per optimisation step,

    weights = strategy.backward(losses, scale, params, step)

then clips and steps the optimizer. Conventions every strategy keeps (tests check them):

* ``losses`` is ``[T]`` with graph; ``scale`` is ``[T]``, detached, >= 0: the study's fixed
  weights times the schedule's multiplier for this step. A task with ``scale == 0`` is inactive
  this step: it adds no gradient anywhere (gradient methods leave it out of the combination).
* Loss-based strategies back-propagate ``Σ_t λ_t · scale_t · L_t`` (+ their own regulariser).
* Gradient methods combine the per-task gradients of ``scale_t · L_t`` on the *shared*
  parameters only; every task-specific parameter receives its own task's gradient of
  ``scale_t · L_t`` (use `backward_task_parameters`).
* The returned weights are ``[T]``, detached, normalised so that Σ_t λ_t = T over the active
  tasks (0 for inactive ones), so strategies compare.
* Learnable strategy parameters (uncertainty's s, GradNorm's w) are returned by
  `parameters()`; the trainer adds them to the optimizer.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from mtl_core.context import StepContext, TaskContext


class StrategyConfig(BaseModel):
    """Base of every strategy's typed hyper-parameters; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass
class ParameterGroups:
    """The model's parameters as the strategies see them.

    Args:
        shared: parameters every task reaches (gradient methods combine gradients here).
        task_specific: everything else (heads, task columns, gates).
        last_shared: GradNorm's W, the last shared layer.
        representation: this step's shared representation (MGDA-UB), or None.
    """

    shared: list[nn.Parameter]
    task_specific: list[nn.Parameter]
    last_shared: list[nn.Parameter]
    representation: Tensor | None = None


class WeightingStrategy(abc.ABC):
    """Base class: one subclass per strategy module, registered in `STRATEGIES`.

    Args:
        config: the strategy's own typed config (validated by `config_cls`).
        ctx: the task context (task count, device, epochs, seeded generator).
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[StrategyConfig]] = StrategyConfig
    #: True for methods that need per-task gradients on the shared parameters.
    uses_task_gradients: ClassVar[bool] = False

    def __init__(self, config: StrategyConfig, ctx: TaskContext) -> None:
        self.config = config
        self.ctx = ctx

    def parameters(self) -> list[nn.Parameter]:
        """Learnable parameters of the strategy itself (trained by the same optimizer)."""
        return []

    def on_epoch_end(self, epoch: int, mean_train_losses: Tensor) -> None:  # noqa: B027
        """Called after each epoch with the epoch-mean *unscaled* train loss per task."""

    @abc.abstractmethod
    def backward(
        self, losses: Tensor, scale: Tensor, params: ParameterGroups, step: StepContext
    ) -> Tensor:
        """Back-propagate one step; return this step's weights ``[T]`` (Σ = T, detached)."""


def backward_task_parameters(
    weighted_losses: Tensor, task_specific: Sequence[nn.Parameter]
) -> None:
    """Give each task-specific parameter its own task's gradient (summed over tasks).

    A head of task t is reached by L_t only, so one backward of Σ_t (scale_t L_t) restricted
    to the task-specific parameters gives each its own task's gradient.
    """
    params = [p for p in task_specific if p.requires_grad]
    if params:
        torch.autograd.backward(weighted_losses.sum(), inputs=params, retain_graph=True)


def normalise_weights(weights: Tensor, active: Tensor) -> Tensor:
    """Scale ``weights`` so that they sum to the number of active tasks; zero the rest.

    A non-positive total falls back to 1 per active task. No host sync (no ``if`` on a
    device value), so it is safe in the step path on a GPU.
    """
    weights = torch.where(active, weights.detach(), torch.zeros_like(weights))
    total = weights.sum()
    positive = total > 0
    safe_total = torch.where(positive, total, torch.ones_like(total))
    scaled = weights * active.sum().to(weights.dtype) / safe_total
    return torch.where(positive, scaled, active.to(weights.dtype))
