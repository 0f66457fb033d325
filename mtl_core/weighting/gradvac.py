"""GradVac: Gradient Vaccine (Wang, Tsvetkov, Firat & Cao, ICLR 2021)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.components import searched
from mtl_core.weighting._base import GradientWeighting, StepInputs, StrategyConfig, to_device
from mtl_core.weighting._gram import gram64
from mtl_core.weighting._registry import STRATEGIES

# Floor of sin(θ̂) in the correction's denominator: a target cosine of exactly ±1 (observed
# parallel gradients) asks for an infinite correction; this bounds it by 1e6 ‖g_i‖ / ‖g_j‖.
_MIN_TARGET_SINE = 1e-6


class GradVacConfig(StrategyConfig):
    """GradVac's hyper-parameters.

    Args:
        beta: step of the exponential moving average of the pairwise cosine similarities
            that serves as each pair's target (1 keeps only the last step's cosine).
    """

    beta: float = Field(
        0.5,
        ge=0,
        le=1,
        description="EMA step of the target cosine similarities.",
        json_schema_extra=searched(0.01, 1.0, log=True),
    )


def vaccinate(
    gram: Tensor, active: Tensor, orders: Tensor, targets: Tensor, beta: Tensor, live: Tensor
) -> tuple[Tensor, Tensor]:
    """GradVac's corrections on the Gram matrices: (coefficients ``[K, T]``, new targets).

    ``g_i^PC = Σ_k C[i, k] g_k`` starts at ``g_i`` (``C = I``); for each task ``i`` and each
    other task ``j`` in the order ``orders[k, i]`` (``T - 1`` task indices),
    ``φ = cos(g_i^PC, g_j)``; when ``φ < φ̂_ij`` (the target ``targets[k, i, j]``),

        ``C[i, j] += ‖g_i^PC‖ (φ̂ √(1 - φ²) - φ √(1 - φ̂²)) / (‖g_j‖ √(1 - φ̂²))``,

    which turns the angle between ``g_i^PC`` and ``g_j`` to the target's; then
    ``φ̂_ij ← (1 - β) φ̂_ij + β φ`` (``φ`` before the correction). The update is
    ``Σ_i g_i^PC``, so the coefficients are ``Σ_i C[i, ·]``. A pair with an inactive task or
    a zero vector has no cosine: it is skipped and its target kept; targets of slots not
    ``live`` are kept too. ``sin(φ̂)`` is floored at ``1e-6`` and a correction is never negative
    (it is ``‖g_i^PC‖ sin(θ - θ̂) / (‖g_j‖ sin θ̂) >= 0`` in exact arithmetic). Float64,
    no host sync: a loop over the ``T (T - 1)`` ordered pairs, all K at once.
    """
    num_slots, num_tasks, _ = gram.shape
    rows = torch.arange(num_slots, device=gram.device)
    coeff = torch.eye(num_tasks, dtype=gram.dtype, device=gram.device).repeat(num_slots, 1, 1)
    new_targets = targets.clone()
    beta64 = beta.to(gram.dtype)
    for i in range(num_tasks):
        c_i = coeff[:, i].clone()
        c_gram = torch.einsum("kt,kts->ks", c_i, gram)  # ⟨g_i^PC, g_s⟩ for every s
        for pos in range(num_tasks - 1):
            j = orders[:, i, pos]
            dot = c_gram[rows, j]
            norm_i = (c_gram * c_i).sum(dim=1).clamp_min(0.0).sqrt()
            norm_j = gram[rows, j, j].clamp_min(0.0).sqrt()
            valid = active[:, i] & active[rows, j] & (norm_i > 0) & (norm_j > 0)
            denom = torch.where(valid, norm_i * norm_j, 1.0)
            phi = torch.where(valid, dot / denom, 0.0).clamp(-1.0, 1.0)
            target = new_targets[rows, i, j]
            sine = (1.0 - phi * phi).clamp_min(0.0).sqrt()
            target_sine = (1.0 - target * target).clamp_min(0.0).sqrt()
            safe_j = torch.where(valid, norm_j, 1.0)
            w = norm_i * (target * sine - phi * target_sine)
            w = (w / (safe_j * target_sine.clamp_min(_MIN_TARGET_SINE))).clamp_min(0.0)
            w = torch.where(valid & (phi < target), w, 0.0)
            c_i = c_i.index_put((rows, j), c_i[rows, j] + w)
            c_gram = c_gram + w.unsqueeze(1) * gram[rows, j]
            moved = valid & live
            updated = torch.where(moved, (1.0 - beta64) * target + beta64 * phi, target)
            new_targets = new_targets.index_put((rows, torch.full_like(j, i), j), updated)
        coeff[:, i] = c_i
    weights = coeff.sum(dim=1)
    return torch.where(active, weights, 0.0), new_targets


@STRATEGIES.register("gradvac")
class GradVac(GradientWeighting[GradVacConfig]):
    """Pull each task gradient toward the cosine similarity the pair usually has.

    Wang, Tsvetkov, Firat & Cao, "Gradient Vaccine: Investigating and Improving Multi-task
    Optimization in Massively Multilingual Models", ICLR 2021. With g_t the gradient of
    scale_t · L_t on the shared parameters and φ̂_ij (init 0) an exponential moving average of
    cos(g_i, g_j): for each task i, in a random order of the other tasks (one
    ``randperm(T - 1)`` per task and step from the trial's generator), with
    φ = cos(g_i^PC, g_j) (g_i^PC the corrected g_i so far, g_j the original):

        if φ < φ̂_ij:  g_i^PC += ‖g_i^PC‖ (φ̂_ij √(1-φ²) - φ √(1-φ̂_ij²)) / (‖g_j‖ √(1-φ̂_ij²)) g_j
        φ̂_ij ← (1 - β) φ̂_ij + β φ

    and the update is Σ_i g_i^PC, a linear combination of the g_t (`vaccinate`, on the
    float64 Gram matrix, on the device, no host sync). β = 0.5 by default, as LibMTL and
    torchjd; torchjd adds ``eps = 1e-8`` to the norms in the cosine and the correction (a
    pair with a zero gradient gets φ = 0 there); here such a pair is skipped. PCGrad is the
    special case φ̂ = 0 without the EMA. Reported weights: the coefficients, normalised to
    Σ = T over the active tasks. With one active task its gradient is used as is.
    """

    name = "gradvac"
    config_cls = GradVacConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.beta = self._per_slot(0.5, torch.float64)
        self.targets = torch.zeros(
            num_slots, num_tasks, num_tasks, device=device, dtype=torch.float64
        )

    def _reset(self, slot: int, config: GradVacConfig) -> None:
        self.beta[slot] = config.beta
        self.targets[slot] = 0

    def _orders(self) -> Tensor:
        """``[K, T, T - 1]``: for each task, the other tasks in a random order."""
        t = self.num_tasks
        positions = torch.stack(
            [
                torch.stack([torch.randperm(t - 1, generator=ctx.generator) for _ in range(t)])
                if ctx is not None
                else torch.arange(t - 1).repeat(t, 1)
                for ctx in self.contexts
            ]
        )  # drawn on the CPU from each trial's own generator; free slots draw nothing
        # position p among the others of task i is task p, or p + 1 from i on
        return positions + (positions >= torch.arange(t).reshape(1, t, 1)).long()

    def coefficients(self, grads: Tensor, inputs: StepInputs) -> Tensor:
        orders = to_device(self._orders(), grads.device)
        active = inputs.scale > 0
        weights, self.targets = vaccinate(
            gram64(grads), active, orders, self.targets, self.beta, inputs.occupied
        )
        return weights.to(grads.dtype)
