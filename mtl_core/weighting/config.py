"""ConFIG: conflict-free gradient updates (Liu, Chu & Thuerey, ICLR 2025)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_core.weighting._base import (
    GradientWeighting,
    StepInputs,
    StrategyConfig,
    normalise,
    one_active_task_unit,
)
from mtl_core.weighting._gram import gram64, pinv_apply
from mtl_core.weighting._registry import STRATEGIES

#: A direction of norm at or below this (in units of the unit gradients) counts as 0.
_ZERO_DIRECTION = 1e-12


class ConFIGConfig(StrategyConfig):
    """ConFIG has no hyper-parameters."""


@STRATEGIES.register("config")
class ConFIG(GradientWeighting[ConFIGConfig]):
    """Move along the direction with equal cosine to every task gradient.

    Liu, Chu & Thuerey, "ConFIG: Towards Conflict-free Training of Physics Informed Neural
    Networks", ICLR 2025 (Equation 2). With g_t the gradient of scale_t · L_t on the shared
    parameters and u_t = g_t / ‖g_t‖ the rows of U:

        x = U⁺ 1,   x̂ = x / ‖x‖,   d = (Σ_t ⟨g_t, x̂⟩) x̂,

    x being the least-norm direction with ⟨u_t, x⟩ = 1 for every task (least squares when
    there is none), so d has the same cosine with every task gradient and, when that holds,
    helps every task. Computed on the Gram matrix (float64, on the device, no host sync): with
    C = U Uᵀ (G scaled by the norms), c = C⁺ 1 (eigenvalues below T · eps · λ_max dropped, so
    dependent gradients never raise), x = Σ_t c_t u_t, ‖x‖² = cᵀ C c, and

        d = Σ_t β_t g_t,   β_t = (c_t / ‖g_t‖) · Σ_s ⟨g_s, x⟩ / ‖x‖².

    Where ‖x‖ <= 1e-12 (e.g. g, -g) the update is 0; torchjd divides by max(‖x‖, 1e-12)
    there instead. Otherwise as torchjd's `ConFIG` with its default preference (ones) and the
    authors' code; LibMTL has no ConFIG. Zero rows (inactive tasks) have no unit gradient and
    take no part (as in torchjd, which zeroes their unit rows). The study's scale_t cancels out
    of the direction and only enters the step length Σ_t ⟨g_t, x̂⟩. One active task: its own
    gradient. β may be negative; reported weights: |β| normalised to Σ = T over the active
    tasks (the signs are in the update).
    """

    name = "config"
    config_cls = ConFIGConfig

    def coefficients(self, grads: Tensor, inputs: StepInputs) -> Tensor:
        active = inputs.scale > 0
        gram = gram64(grads, active)
        norms = gram.diagonal(dim1=-2, dim2=-1).clamp_min(0.0).sqrt()
        present = norms > 0
        inv = torch.where(present, 1.0 / torch.where(present, norms, 1.0), 0.0)
        cosines = gram * inv.unsqueeze(-1) * inv.unsqueeze(-2)
        c = pinv_apply(cosines, present.to(gram.dtype))
        sq = (c.unsqueeze(-2) @ cosines @ c.unsqueeze(-1)).squeeze(-1)  # ‖x‖², [K, 1]
        on_units = c * inv  # x = Σ_t on_units_t g_t
        length = (gram @ on_units.unsqueeze(-1)).squeeze(-1).sum(-1, keepdim=True)
        usable = sq > _ZERO_DIRECTION**2
        beta = torch.where(usable, on_units * length / torch.where(usable, sq, 1.0), 0.0)
        beta = torch.where(sq.isnan(), torch.nan, beta)
        return one_active_task_unit(beta, active).to(grads.dtype)

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        coeff = self.coefficients(grads, inputs)
        combined = torch.einsum("kt,ktp->kp", coeff, grads)
        return combined, normalise(coeff.abs(), inputs.scale > 0)
