"""Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_core.weighting._base import LossWeighting, StepInputs, StrategyConfig, normalise
from mtl_core.weighting._registry import STRATEGIES


class UncertaintyConfig(StrategyConfig):
    """Uncertainty weighting has no hyper-parameters (``s`` starts at 0, i.e. sigma² = 1)."""


@STRATEGIES.register("uncertainty")
class Uncertainty(LossWeighting[UncertaintyConfig]):
    """Learn one log-variance per task and weight each loss by its precision.

    Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
    Geometry and Semantics", CVPR 2018, in the log-variance form (never the log of a
    negative number):

        L = Σ_t scale_t · (exp(-s_t) · L_t + s_t),   s_t = log sigma_t², s_t(0) = 0,

    summed over the active tasks. ``s`` (``[K, T]``) is returned by `parameters()` and
    trained by the trials' optimizer; ∂L/∂s_t = scale_t · (1 - exp(-s_t) L_t).

    Reported weights: exp(-s) normalised to Σ = T over the active tasks.
    """

    name = "uncertainty"
    config_cls = UncertaintyConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.log_vars = nn.Parameter(self._zeros())

    def _reset(self, slot: int, config: UncertaintyConfig) -> None:
        with torch.no_grad():
            self.log_vars[slot].zero_()

    def parameters(self) -> list[Tensor]:
        return [self.log_vars]

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        s = self.log_vars
        objective = (inputs.scale * (torch.exp(-s) * inputs.losses + s)).sum(dim=-1)
        return objective, normalise(torch.exp(-s.detach()), inputs.scale > 0)
