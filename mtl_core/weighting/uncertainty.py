"""Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from mtl_core.context import StepContext, TaskContext
from mtl_core.weighting._base import (
    ParameterGroups,
    StrategyConfig,
    WeightingStrategy,
    normalise_weights,
)
from mtl_core.weighting._gradients import active_mask
from mtl_core.weighting._registry import STRATEGIES

logger = logging.getLogger(__name__)


class UncertaintyConfig(StrategyConfig):
    """Uncertainty weighting has no hyper-parameters (``s`` starts at 0, i.e. sigma² = 1)."""


@STRATEGIES.register("uncertainty")
class Uncertainty(WeightingStrategy):
    """Learn one log-variance per task and weight each loss by its precision.

    Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
    Geometry and Semantics", CVPR 2018, in the log-variance form (never the log of a
    negative number):

        L = Σ_t scale_t · (exp(-s_t) · L_t + s_t),   s_t = log sigma_t², s_t(0) = 0,

    summed over the active tasks (``scale_t > 0``). ``s`` is returned by `parameters()` and
    trained by the trainer's optimizer; ∂L/∂s_t = scale_t · (1 - exp(-s_t) L_t).

    Conventions: reported weights are exp(-s) normalised to Σ = T over the active tasks
    (0 for inactive ones); the gradient reaches the model through the weighted sum (no
    per-task gradient combination).

    Args:
        config: `UncertaintyConfig` (empty).
        ctx: the task context (task count, device).
    """

    name = "uncertainty"
    config_cls = UncertaintyConfig

    def __init__(self, config: StrategyConfig, ctx: TaskContext) -> None:
        super().__init__(config, ctx)
        self.log_vars = nn.Parameter(torch.zeros(ctx.num_tasks, device=ctx.device))

    def parameters(self) -> list[nn.Parameter]:
        return [self.log_vars]

    def backward(
        self, losses: Tensor, scale: Tensor, params: ParameterGroups, step: StepContext
    ) -> Tensor:
        s = self.log_vars
        (scale * (torch.exp(-s) * losses + s)).sum().backward()
        active = active_mask(scale)
        return normalise_weights(torch.exp(-s.detach()), active)
