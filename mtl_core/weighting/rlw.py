"""Random Loss Weighting (Lin et al., TMLR 2022)."""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from mtl_core.context import StepContext
from mtl_core.weighting._base import ParameterGroups, StrategyConfig, WeightingStrategy
from mtl_core.weighting._gradients import active_mask, masked_softmax
from mtl_core.weighting._registry import STRATEGIES

logger = logging.getLogger(__name__)


class RLWConfig(StrategyConfig):
    """RLW has no hyper-parameters (standard normal logits, as in the paper)."""


@STRATEGIES.register("rlw")
class RLW(WeightingStrategy):
    """Draw random loss weights at every step.

    Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task
    Learning", TMLR 2022: each step

        λ = softmax(z),   z ~ N(0, I),   L = Σ_t λ_t scale_t L_t,

    with z drawn from the trial's seeded generator (``ctx.generator``) so a trial is
    reproducible; the softmax runs over the active tasks.

    Conventions: the loss uses λ as drawn (Σ λ = 1, as in the paper); the reported weights
    are λ x T (T = active tasks), 0 for inactive ones.

    Args:
        config: `RLWConfig` (empty).
        ctx: the task context (task count, device, generator).
    """

    name = "rlw"
    config_cls = RLWConfig

    def backward(
        self, losses: Tensor, scale: Tensor, params: ParameterGroups, step: StepContext
    ) -> Tensor:
        z = torch.randn(self.ctx.num_tasks, generator=self.ctx.generator)
        z = z.to(losses.device, losses.dtype, non_blocking=True)
        active = active_mask(scale)
        weights = masked_softmax(z, active)
        (weights * scale * losses).sum().backward()
        return weights * active.sum().to(weights.dtype)
