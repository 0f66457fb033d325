"""Fixed weights: the study's weights, unchanged."""

from __future__ import annotations

from torch import Tensor

from mtl_core.weighting._base import LossWeighting, StepInputs, StrategyConfig, normalise
from mtl_core.weighting._registry import STRATEGIES


class FixedConfig(StrategyConfig):
    """Fixed weighting has no hyper-parameters (the weights are the study's)."""


@STRATEGIES.register("fixed")
class Fixed(LossWeighting[FixedConfig]):
    """Linear scalarisation with fixed weights: ``L = Σ_t scale_t L_t`` (λ_t = 1).

    The study's fixed weights (and the schedule's multiplier) arrive through ``scale``; the
    strategy itself adds nothing. Uniform weighting is this strategy with all weights 1.
    Xin et al. (NeurIPS 2022) and Kurin et al. (NeurIPS 2022) found well-tuned fixed weights
    competitive with the dynamic methods.

    Reported weights: λ = 1 on the active tasks, 0 on inactive ones.
    """

    name = "fixed"
    config_cls = FixedConfig

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        active = inputs.scale > 0
        objective = (inputs.losses * inputs.scale).sum(dim=-1)
        return objective, normalise(active.to(inputs.losses.dtype), active)
