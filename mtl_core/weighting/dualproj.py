"""DualProj: the mean gradient projected onto the dual cone of the task gradients."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.weighting._base import GradientWeighting, StepInputs, StrategyConfig
from mtl_core.weighting._dual_cone import dual_cone_weights, mean_preferences, normalised_gram
from mtl_core.weighting._gram import gram64
from mtl_core.weighting._registry import STRATEGIES


class DualProjConfig(StrategyConfig):
    """DualProj's hyper-parameters.

    Args:
        reg_eps: ridge added to the trace-normalised Gram matrix before the projection
            (keeps the problem strictly convex when gradients are dependent).
    """

    reg_eps: float = Field(
        1e-4, ge=1e-10, le=1.0, description="Ridge on the trace-normalised Gram matrix."
    )


@STRATEGIES.register("dualproj")
class DualProj(GradientWeighting[DualProjConfig]):
    """Project the mean task gradient onto the dual cone of the task gradients.

    Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232,
    2024 (there as the aggregator DualProj; the projection is Equation 11 of Lopez-Paz &
    Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017). With g_t the
    gradient of scale_t · L_t on the shared parameters, J their ``[T, P]`` matrix over the n
    active tasks and u = (1/n) on them, the update is the projection of Jᵀu onto
    ``{d: ⟨g_t, d⟩ >= 0 for all t}`` (Proposition 1 of the paper):

        d = Σ_t v_t g_t,   v = argmin_{v >= u} vᵀ (G / tr G + reg_eps I) v,   G = J Jᵀ,

    so no active task is hurt by d to first order, up to the ridge
    (``⟨g_t, d⟩ >= -reg_eps tr(G) v_t``). Solved on the device for all K at once
    (`_dual_cone.dual_cone_weights`, as `upgrad`: float64, KKT residual <= 1e-12, one host
    sync per iteration to stop). Defaults as torchjd's `DualProj` (mean preference, ridge 1e-4
    on the trace-normalised Gram matrix); LibMTL has no DualProj.

    Differences from torchjd: the mean runs over the active tasks (with m rows of which n are
    active, torchjd's update is n/m times ours), and torchjd's replacement of a Gram matrix of
    trace below 1e-4 by 0 is not copied (see `upgrad`). The study's scale_t is the preference
    vector (it scales g_t in the mean; the cone does not change). One active task: its own
    gradient. Reported weights: v (>= u >= 0) normalised to Σ = T over the active tasks.
    """

    name = "dualproj"
    config_cls = DualProjConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.reg_eps = self._per_slot(1e-4, torch.float64)

    def _reset(self, slot: int, config: DualProjConfig) -> None:
        self.reg_eps[slot] = config.reg_eps

    def coefficients(self, grads: Tensor, inputs: StepInputs) -> Tensor:
        active = inputs.scale > 0
        gram = normalised_gram(gram64(grads, active), self.reg_eps.to(grads.device))
        weights = dual_cone_weights(gram, mean_preferences(active).unsqueeze(-2)).squeeze(-2)
        return torch.where(active, weights, 0.0).to(grads.dtype)
