"""IMTL: impartial multi-task learning, the hybrid of IMTL-L and IMTL-G (Liu et al., ICLR 2021)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_core.weighting._base import GradientWeighting, StepInputs, StrategyConfig, normalise
from mtl_core.weighting._registry import STRATEGIES
from mtl_core.weighting.imtl_g import impartial_coefficients


class IMTLConfig(StrategyConfig):
    """IMTL has no hyper-parameters (the loss scales s start at 0, i.e. e^s = 1)."""


@STRATEGIES.register("imtl")
class IMTL(GradientWeighting[IMTLConfig]):
    """Scale every loss to a common level (IMTL-L), then give the shared parameters the update
    with equal projections on every task's unit gradient (IMTL-G).

    Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial Multi-task Learning",
    ICLR 2021, the hybrid IMTL. With learnable s (``[K, T]``, s(0) = 0) and
    L̃_t = e^{s_t} · scale_t · L_t (`task_objectives`):

        s is trained on Σ_t scale_t (e^{s_t} L_t - s_t)   (its optimum: e^{s_t} L_t = 1),
        g_t = ∇_shared L̃_t,  u_t = g_t / ‖g_t‖,
        α = argsolve{ dᵀu_t equal for all active t, Σ_t α_t = 1 },  d = Σ_t α_t g_t,

    α in closed form (`imtl_g.impartial_coefficients`: v = G⁺ ‖g‖, α = v / Σ v, which is
    the paper's α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹ where that is invertible, on the device, no host
    sync). d is the shared parameters' update; each task's own parameters get ∇L̃_t. ``s``
    is returned by `parameters()` and trained by the trials' optimizer, like uncertainty's.

    As LibMTL: s starts at 0 and the loss part is e^s L - s. The scale factor scale_t on the
    s objective keeps an inactive task's s still. Reported weights: α_t e^{s_t} (the weight
    of scale_t L_t in d), negative ones (possible for T >= 3) reported as 0, normalised to
    Σ = T over the active tasks.
    """

    name = "imtl"
    config_cls = IMTLConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.loss_scales = nn.Parameter(self._zeros())

    def _reset(self, slot: int, config: IMTLConfig) -> None:
        with torch.no_grad():
            self.loss_scales[slot].zero_()

    def parameters(self) -> list[Tensor]:
        return [self.loss_scales]

    def task_objectives(self, inputs: StepInputs) -> Tensor:
        return torch.exp(self.loss_scales.detach()) * inputs.scale * inputs.losses

    def parameter_objective(self, inputs: StepInputs) -> Tensor:
        s = self.loss_scales
        losses = inputs.losses.detach()
        return (inputs.scale * (torch.exp(s) * losses - s)).sum(dim=-1)

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        active = inputs.scale > 0
        alpha = impartial_coefficients(grads, active)
        combined = torch.einsum("kt,ktp->kp", alpha, grads)
        effective = alpha.double() * torch.exp(self.loss_scales.detach().double())
        weights = normalise(effective.clamp_min(0), active).to(inputs.losses.dtype)
        return combined, weights
