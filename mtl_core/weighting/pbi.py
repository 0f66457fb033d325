"""Penalty-based boundary intersection (Zhang & Li, IEEE TEVC 2007)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.components import searched
from mtl_core.weighting._base import LossWeighting, StepInputs, StrategyConfig, normalise
from mtl_core.weighting._log_losses import loss_floor
from mtl_core.weighting._registry import STRATEGIES

#: Added to ‖p‖² / m² under the square root: d2 stays differentiable on the ray (torchjd adds
#: the same 1e-12, to ‖p‖² itself; here relative to the largest scaled loss m).
SMOOTHING = 1e-12


class PBIConfig(StrategyConfig):
    """PBI's hyper-parameters.

    Args:
        theta: penalty θ on the distance from the preference ray (0: the plain sum / √n).
    """

    theta: float = Field(
        0.5,
        ge=0,
        description="Penalty on the distance of the scaled losses from the preference ray.",
        json_schema_extra=searched(0.1, 5.0, log=True),
    )


@STRATEGIES.register("pbi")
class PBI(LossWeighting[PBIConfig]):
    """Descend along the preference ray, penalising the distance from it.

    Zhang & Li, "MOEA/D: A Multiobjective Evolutionary Algorithm Based on Decomposition",
    IEEE Transactions on Evolutionary Computation 2007 (the PBI decomposition). With
    x_t = scale_t · L_t over the n active tasks, the reference point z = 0 (losses are
    >= 0) and the preference direction ŵ = (1, ..., 1)/√n:

        d1 = x·ŵ,   p = x - d1 ŵ,   d2 = sqrt(‖p‖² + ε m²),   L = d1 + θ · d2,
        ∂L/∂x = ŵ + θ · p / d2,

    with m the largest |x_t| (detached, at least `_log_losses.loss_floor`) and ε = 1e-12,
    so the smoothing that keeps d2 differentiable on the ray is relative to the losses'
    size (torchjd's ``PBI`` adds 1e-12 to ‖p‖² itself: our L is m times torchjd's PBI of
    x / m). The study's fixed weights
    are in x, so the ray is where the *weighted* losses are equal: a larger fixed weight
    asks for a smaller loss, as in a weighted sum (with ŵ ∝ the weights instead, it would
    ask for a larger one). LibMTL has no PBI; torchjd's θ has no default.

    For θ > 1/√n a task far enough below the mean gets a *negative* weight (PBI raises its
    loss toward the ray); |∂L/∂x_t| <= 1/√n + θ. The paper's θ = 5 is for objectives of
    one scale; on losses of unequal scales it trades a task's loss for the ray, so the
    default is 0.5 (no negative weight up to four tasks) and the search covers 0.1 - 10
    (log), the paper's 5 included. Reported weights: ∂L/∂x_t clipped at 0, normalised to
    Σ = T over the active tasks (the sum of the unclipped ones is √n > 0). No host sync.
    """

    name = "pbi"
    config_cls = PBIConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.theta = self._per_slot(0.5)

    def _reset(self, slot: int, config: PBIConfig) -> None:
        self.theta[slot] = config.theta

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        losses = inputs.losses
        dtype = losses.dtype
        scale = inputs.scale.to(dtype)
        active = scale > 0
        x = torch.where(active, scale * losses, torch.zeros_like(losses))
        n_active = active.sum(dim=-1, keepdim=True).to(dtype)
        direction = active.to(dtype) / n_active.clamp_min(1).sqrt()
        d1 = (x * direction).sum(dim=-1, keepdim=True)
        p = torch.where(active, x - d1 * direction, torch.zeros_like(x))
        # Relative to the largest loss, so the square cannot overflow and ε scales with x;
        # at least the log floor, so that ε m² (hence d2) stays a normal number.
        m = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(loss_floor(dtype))
        d2 = m * torch.sqrt(((p / m) ** 2).sum(dim=-1, keepdim=True) + SMOOTHING)
        theta = self.theta.to(dtype).unsqueeze(-1)
        objective = torch.where(n_active > 0, d1 + theta * d2, torch.zeros_like(d1)).squeeze(-1)
        grad = direction + theta * p.detach() / d2.detach()
        return objective, normalise(grad.clamp_min(0), active)
