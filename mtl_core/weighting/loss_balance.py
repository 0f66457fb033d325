"""Loss balancing by inverse loss EMA with a boost for slow tasks (practitioner's rule)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.components import searched
from mtl_core.weighting._base import LossWeighting, StepInputs, StrategyConfig, normalise
from mtl_core.weighting._registry import STRATEGIES

#: A task's loss EMA is floored at this fraction of the largest active one: a loss of exactly
#: 0 would otherwise get an infinite weight (and its partners none).
RELATIVE_FLOOR = 1e-6


class LossBalanceConfig(StrategyConfig):
    """Loss balancing's hyper-parameters.

    Args:
        beta: EMA decay of the per-task losses.
        gamma: strength of the boost for the task whose loss falls slowest (0: pure
            inverse-loss weighting).
    """

    beta: float = Field(
        0.9,
        ge=0,
        lt=1,
        description="EMA decay of the task losses.",
        json_schema_extra=searched(0.5, 0.99),
    )
    gamma: float = Field(
        1.0,
        ge=0,
        description="Boost strength for slow tasks.",
        json_schema_extra=searched(0.25, 4.0),
    )


@STRATEGIES.register("loss_balance")
class LossBalance(LossWeighting[LossBalanceConfig]):
    """Weight each task by the inverse of its loss EMA, boosted for slowly falling losses.

    Common practice (a seed-level heuristic; cf. IMTL-L, Liu et al., "Towards Impartial
    Multi-task Learning", ICLR 2021, which also equalises the scaled losses). With ``n_t``
    the number of steps task t has been active so far:

        m_t ← β m_t + (1 - β) L_t                    (detached, only while t is active)
        m̂_t = max(m_t / (1 - β^{n_t}), 1e-6 · max_a m̂_a)   (bias-corrected, floored)
        rho_t = m̂_t / m̂_t⁰                             (m̂_t⁰: m̂_t at t's first active step)
        slowness_t = rho_t / mean_a(rho_a)
        w_t ∝ (1 + gamma · slowness_t) / m̂_t,   Σ_active w = T.

    1/m̂_t makes every w_t L_t about equal (no task's loss dominates by its units); the task
    whose loss has fallen least relative to its start gets the largest boost. The floor caps
    the weight ratio at 1e6 (a task whose loss is exactly 0 needs no weight); when every
    active loss is 0 the weights are uniform. The current loss enters the EMA before the
    weights are computed. The model gets the gradient of Σ_t w_t scale_t L_t, w detached.
    """

    name = "loss_balance"
    config_cls = LossBalanceConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.beta = self._per_slot(0.9)
        self.gamma = self._per_slot(1.0)
        self.ema = self._zeros()
        self.count = self._zeros()
        self.start = torch.ones_like(self.ema)

    def _reset(self, slot: int, config: LossBalanceConfig) -> None:
        self.beta[slot] = config.beta
        self.gamma[slot] = config.gamma
        self.ema[slot] = 0
        self.count[slot] = 0
        self.start[slot] = 1

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        active = (inputs.scale > 0) & inputs.occupied.unsqueeze(-1)
        detached = inputs.losses.detach().to(self.ema.dtype)
        tiny = torch.finfo(self.ema.dtype).tiny
        beta = self.beta.unsqueeze(-1)
        first = active & (self.count == 0)
        self.ema = torch.where(active, beta * self.ema + (1 - beta) * detached, self.ema)
        self.count = self.count + active.to(self.count.dtype)
        correction = 1 - torch.pow(beta.expand_as(self.count), self.count)
        ema = self.ema / correction.clamp_min(tiny)
        largest = torch.where(active, ema, torch.zeros_like(ema)).amax(dim=-1, keepdim=True)
        ema = torch.maximum(ema, RELATIVE_FLOOR * largest)
        self.start = torch.where(first, ema, self.start)
        all_zero = largest <= 0
        ema = torch.where(all_zero, torch.ones_like(ema), ema).clamp_min(tiny)
        start = torch.where(all_zero, torch.ones_like(ema), self.start).clamp_min(tiny)
        progress = ema / start
        n_active = active.sum(dim=-1, keepdim=True).clamp_min(1).to(progress.dtype)
        mean_progress = (
            torch.where(active, progress, torch.zeros_like(progress)).sum(-1, keepdim=True)
            / n_active
        )
        slowness = progress / mean_progress.clamp_min(tiny)
        # Relative to the smallest EMA, so the inverse never overflows.
        smallest = torch.where(active, ema, torch.full_like(ema, float("inf"))).amin(-1, True)
        raw = (1 + self.gamma.unsqueeze(-1) * slowness) * (smallest.clamp_min(tiny) / ema)
        weights = normalise(raw, active).to(inputs.losses.dtype)
        objective = (weights * inputs.scale * inputs.losses).sum(dim=-1)
        return objective, weights
