"""MGDA: multiple-gradient descent as multi-objective optimisation (Sener & Koltun, 2018)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.components import searched
from mtl_core.weighting._base import (
    GradientSpace,
    GradientWeighting,
    StepInputs,
    StrategyConfig,
)
from mtl_core.weighting._min_norm import min_norm_weights
from mtl_core.weighting._registry import STRATEGIES

Normalization = Literal["none", "l2", "loss", "loss+"]
_MODES: tuple[Normalization, ...] = ("none", "l2", "loss", "loss+")


class MGDAConfig(StrategyConfig):
    """MGDA's hyper-parameters.

    Args:
        normalization: how each task gradient is divided before solving: ``none``, ``l2``
            (by its norm), ``loss`` (by the task loss), ``loss+`` (by both).
        upper_bound: MGDA-UB: solve on the gradients w.r.t. the shared representation
            instead of the shared parameters (cheaper for a wide trunk).
    """

    normalization: Normalization = Field("none", description="Task-gradient normalisation.")
    upper_bound: bool = Field(
        False,
        description="MGDA-UB on the shared representation.",
        json_schema_extra=searched(choices=[False, True]),
    )


@STRATEGIES.register("mgda")
class MGDA(GradientWeighting[MGDAConfig]):
    """Descend along the min-norm point of the convex hull of the task gradients.

    Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018.
    With ĝ_t = g_t / n_t the (normalised) gradient of scale_t · L_t:

        alpha = argmin_{alpha ∈ Δ} ‖Σ_t alpha_t ĝ_t‖²,
        update on the shared parameters: Σ_t alpha_t ĝ_t = Σ_t (alpha_t / n_t) g_t,

    exact for two tasks (closed form, on the device) and for more by Wolfe's min-norm-point
    algorithm with a duality-gap stop (`_min_norm.min_norm_weights`, on the host: one transfer
    of the K small Gram matrices per step). ``normalization`` sets n_t: ``none``
    (1, the default), ``l2`` (‖g_t‖), ``loss`` (L_t) or ``loss+`` (L_t ‖g_t‖); with ``l2``
    / ``loss+`` the study's scale cancels out of ĝ_t.

    ``upper_bound`` (MGDA-UB): g_t is the gradient w.r.t. the shared representation (the
    trainer's ``representation`` gradient space; `ConfigError` when the architecture has
    none): the shared layers get the gradient of Σ_t (alpha_t / n_t) scale_t L_t (the
    combination back-propagated from the representation), each task's own parameters the
    gradient of scale_t L_t, as the paper's Algorithm 2 updates them.

    With one active task its gradient is used as is. Reported weights: alpha / n
    normalised to Σ = T over the active tasks.
    """

    name = "mgda"
    config_cls = MGDAConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.mode = torch.zeros(num_slots, dtype=torch.long, device=device)

    @classmethod
    def gradient_space(cls, config: StrategyConfig) -> GradientSpace:
        return (
            "representation"
            if isinstance(config, MGDAConfig) and config.upper_bound
            else ("parameters")
        )

    def _reset(self, slot: int, config: MGDAConfig) -> None:
        self.mode[slot] = _MODES.index(config.normalization)

    def coefficients(self, grads: Tensor, inputs: StepInputs) -> Tensor:
        losses = inputs.losses.detach()
        active = inputs.scale > 0
        ones = torch.ones_like(losses)
        mode = self.mode.unsqueeze(-1)
        g_norm = grads.norm(dim=-1)
        norms = torch.where(
            mode == 0,
            ones,
            torch.where(mode == 1, g_norm, torch.where(mode == 2, losses, losses * g_norm)),
        )
        norms = torch.where(active & (norms > 0), norms, ones)
        normalised = grads / norms.unsqueeze(-1)
        gram = normalised @ normalised.transpose(-1, -2)
        alpha = min_norm_weights(gram, active)
        single = active.sum(dim=-1, keepdim=True) == 1
        return torch.where(single, active.to(alpha.dtype), alpha / norms)
