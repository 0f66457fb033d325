"""Fixed weights: the study's weights, unchanged."""

from __future__ import annotations

import logging

from torch import Tensor

from mtl_core.context import StepContext
from mtl_core.weighting._base import (
    ParameterGroups,
    StrategyConfig,
    WeightingStrategy,
    normalise_weights,
)
from mtl_core.weighting._gradients import active_mask
from mtl_core.weighting._registry import STRATEGIES

logger = logging.getLogger(__name__)


class FixedConfig(StrategyConfig):
    """Fixed weighting has no hyper-parameters (the weights are the study's)."""


@STRATEGIES.register("fixed")
class Fixed(WeightingStrategy):
    """Linear scalarisation with fixed weights: ``L = Σ_t scale_t L_t`` (λ_t = 1).

    The study's fixed weights (and the schedule's multiplier) arrive through ``scale``; the
    strategy itself adds nothing. Uniform weighting is this strategy with all weights 1.
    Xin et al. (NeurIPS 2022) and Kurin et al. (NeurIPS 2022) found well-tuned fixed weights
    competitive with the dynamic methods.

    Conventions: reported weights are λ = 1 on the active tasks (Σ λ = number of active
    tasks), 0 on inactive ones.

    Args:
        config: `FixedConfig` (empty).
        ctx: the task context.
    """

    name = "fixed"
    config_cls = FixedConfig

    def backward(
        self, losses: Tensor, scale: Tensor, params: ParameterGroups, step: StepContext
    ) -> Tensor:
        (losses * scale).sum().backward()
        active = active_mask(scale)
        return normalise_weights(active.to(losses.dtype), active)
