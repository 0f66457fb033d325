"""Random Loss Weighting (Lin et al., TMLR 2022)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_core.weighting._base import (
    LossWeighting,
    StepInputs,
    StrategyConfig,
    masked_softmax,
    to_device,
)
from mtl_core.weighting._registry import STRATEGIES


class RLWConfig(StrategyConfig):
    """RLW has no hyper-parameters (standard normal logits, as in the paper)."""


@STRATEGIES.register("rlw")
class RLW(LossWeighting[RLWConfig]):
    """Draw random loss weights at every step.

    Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task
    Learning", TMLR 2022: each step

        λ = softmax(z),   z ~ N(0, I),   L = Σ_t λ_t scale_t L_t,

    with z drawn from each trial's seeded generator, so a trial is reproducible whatever
    batch it trains in; the softmax runs over the active tasks. The loss uses λ as drawn
    (Σ λ = 1, as in the paper); reported weights are λ x T (T = active tasks).
    """

    name = "rlw"
    config_cls = RLWConfig

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        # One small CPU draw per live trial keeps each trial's stream its own; free slots
        # draw nothing.
        rows = [
            torch.randn(self.num_tasks, generator=ctx.generator)
            if ctx is not None
            else torch.zeros(self.num_tasks)
            for ctx in self.contexts
        ]
        losses = inputs.losses
        z = to_device(torch.stack(rows), losses.device).to(losses.dtype)
        active = inputs.scale > 0
        weights = masked_softmax(z, active)
        objective = (weights * inputs.scale * losses).sum(dim=-1)
        return objective, weights * active.sum(dim=-1, keepdim=True).to(weights.dtype)
