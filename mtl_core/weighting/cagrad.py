"""CAGrad: conflict-averse gradient descent (Liu, Liu, Jin, Stone & Liu, NeurIPS 2021)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.components import searched
from mtl_core.weighting._base import GradientWeighting, StepInputs, StrategyConfig
from mtl_core.weighting._registry import STRATEGIES
from mtl_core.weighting._solvers import cagrad_weights


class CAGradConfig(StrategyConfig):
    """CAGrad's hyper-parameters.

    Args:
        c: radius of the ball around the mean gradient, relative to its norm (c = 0 is
            plain gradient descent on the mean loss).
        rescale: 0 keeps the direction, 1 divides it by 1 + c² (the paper's default), 2
            divides it by 1 + c.
    """

    c: float = Field(
        0.4,
        ge=0,
        description="Radius factor around the mean gradient.",
        json_schema_extra=searched(0.1, 0.9),
    )
    rescale: Literal[0, 1, 2] = Field(1, description="0: none, 1: /(1+c^2), 2: /(1+c).")


@STRATEGIES.register("cagrad")
class CAGrad(GradientWeighting[CAGradConfig]):
    """Maximise the worst task improvement within a ball around the mean gradient.

    Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021.
    With g_t the gradient of scale_t · L_t on the shared parameters, g0 their mean over the
    active tasks and g_w = Σ_t w_t g_t, the dual

        w* = argmin_{w ∈ Δ} g_wᵀ g0 + c ‖g0‖ ‖g_w‖

    is solved exactly to a stated tolerance (`_solvers.cagrad_weights`: a root search over
    min-norm problems, on the T x T factor of each trial's gradients, on the host: one
    transfer per step for all K; ‖g0‖ and ‖g_w‖ from the gradient vectors), and the update is

        d = (g0 + c ‖g0‖ / ‖g_w*‖ · g_w*) / r,   r = 1, 1 + c² or 1 + c (``rescale``).

    When g_w* = 0 (e.g. two opposite task gradients) the formula is 0/0; the best d of the
    ball then leaves every task unhurt (min_t ⟨g_t, d⟩ = 0), and the update is the one of
    those nearest g0: the projection of g0 onto {d: ⟨g_t, d⟩ >= 0}. The update always lies in
    its ball ‖r d - g0‖ <= c ‖g0‖, checked on the gradient vectors after rounding.

    At c = 0 the update is g0. With one active task its gradient is used as is. Reported
    weights: the coefficients of d on the g_t, normalised to Σ = T over the active tasks.
    """

    name = "cagrad"
    config_cls = CAGradConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.c = self._per_slot(0.4, torch.float64)
        self.rescale = self._per_slot(1, torch.long)

    def _reset(self, slot: int, config: CAGradConfig) -> None:
        self.c[slot] = config.c
        self.rescale[slot] = config.rescale

    def coefficients(self, grads: Tensor, inputs: StepInputs) -> Tensor:
        # Free slots solve nothing (c = 0 is the mean, no solve).
        c = torch.where(inputs.occupied, self.c, torch.zeros_like(self.c))
        return cagrad_weights(grads, inputs.scale > 0, c, self.rescale)
