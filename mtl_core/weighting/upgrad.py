"""UPGrad: unconflicting projection of gradients (Quinton & Rey, 2024)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.weighting._base import GradientWeighting, StepInputs, StrategyConfig
from mtl_core.weighting._dual_cone import dual_cone_weights, mean_preferences, normalised_gram
from mtl_core.weighting._gram import gram64
from mtl_core.weighting._registry import STRATEGIES


class UPGradConfig(StrategyConfig):
    """UPGrad's hyper-parameters.

    Args:
        reg_eps: ridge added to the trace-normalised Gram matrix before each projection
            (keeps the problem strictly convex when gradients are dependent).
    """

    reg_eps: float = Field(
        1e-4, ge=1e-10, le=1.0, description="Ridge on the trace-normalised Gram matrix."
    )


@STRATEGIES.register("upgrad")
class UPGrad(GradientWeighting[UPGradConfig]):
    """Average the projections of each task gradient onto the dual cone of all of them.

    Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232,
    2024. With g_t the gradient of scale_t · L_t on the shared parameters, J their ``[T, P]``
    matrix over the n active tasks and π the projection onto the dual cone
    ``{d: ⟨g_t, d⟩ >= 0 for all t}``, the update is

        d = (1/n) Σ_i π(g_i) = Σ_t W_t g_t,   W = Σ_i v⁽ⁱ⁾,
        v⁽ⁱ⁾ = argmin_{v >= eᵢ / n} vᵀ (G / tr G + reg_eps I) v,   G = J Jᵀ,

    (Proposition 1 of the paper: π(Jᵀu) = Jᵀv with v = argmin_{v >= u} vᵀ G v), so no active
    task is hurt by d to first order, up to the ridge. The n problems of every trial are solved
    at once on the device (`_dual_cone.dual_cone_weights`: block principal pivoting in float64,
    KKT residual <= 1e-12 on the trace-normalised problem, one host sync per iteration to stop,
    typically two or three). Defaults as torchjd's `UPGrad` (mean preference, ridge 1e-4 on
    the trace-normalised Gram matrix); LibMTL has no UPGrad.

    Differences from torchjd: the mean runs over the *active* tasks (torchjd divides by every
    row, zero rows included: with m rows of which n active, its update is n/m times ours);
    torchjd replaces a Gram matrix of trace below 1e-4 by 0 (the mean gradient), which makes its
    answer depend on the gradients' scale; here only a zero trace is (the update is then 0).
    The study's scale_t enters through g_t: since π(s g) = s π(g) for s > 0 and the cone does
    not change when a row is scaled, the scales are UPGrad's preference vector. One active
    task: its own gradient (v = 1). Reported weights: W normalised to Σ = T over the active
    tasks (W >= 0 by construction).
    """

    name = "upgrad"
    config_cls = UPGradConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.reg_eps = self._per_slot(1e-4, torch.float64)

    def _reset(self, slot: int, config: UPGradConfig) -> None:
        self.reg_eps[slot] = config.reg_eps

    def coefficients(self, grads: Tensor, inputs: StepInputs) -> Tensor:
        active = inputs.scale > 0
        gram = normalised_gram(gram64(grads, active), self.reg_eps.to(grads.device))
        prefs = torch.diag_embed(mean_preferences(active))  # [K, T(problem), T]
        weights = dual_cone_weights(gram, prefs).sum(dim=-2)
        return torch.where(active, weights, 0.0).to(grads.dtype)
