"""Loss balancing by inverse loss EMA with a boost for slow tasks (practitioner's rule)."""

from __future__ import annotations

import logging

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.context import StepContext, TaskContext
from mtl_core.weighting._base import (
    ParameterGroups,
    StrategyConfig,
    WeightingStrategy,
    normalise_weights,
)
from mtl_core.weighting._gradients import active_mask
from mtl_core.weighting._registry import STRATEGIES

logger = logging.getLogger(__name__)


class LossBalanceConfig(StrategyConfig):
    """Loss balancing's hyper-parameters.

    Args:
        beta: EMA decay of the per-task losses.
        gamma: strength of the boost for the task whose loss falls slowest (0: pure
            inverse-loss weighting).
    """

    beta: float = Field(0.9, ge=0, lt=1, description="EMA decay of the task losses.")
    gamma: float = Field(1.0, ge=0, description="Boost strength for slow tasks.")


@STRATEGIES.register("loss_balance")
class LossBalance(WeightingStrategy):
    """Weight each task by the inverse of its loss EMA, boosted for slowly falling losses.

    Common practice (a seed-level heuristic; cf. IMTL-L, Liu et al., "Towards Impartial
    Multi-task Learning", ICLR 2021, which also equalises the scaled losses). With ``n_t``
    the number of steps task t has been active so far:

        m_t ← β m_t + (1 - β) L_t                    (detached, only while t is active)
        m̂_t = m_t / (1 - β^{n_t})                     (bias-corrected EMA)
        rho_t = m̂_t / m̂_t⁰                               (m̂_t⁰: m̂_t at t's first active step,
                                                         i.e. its first loss)
        slowness_t = rho_t / mean_a(rho_a)
        w_t ∝ (1 + gamma · slowness_t) / m̂_t,   Σ_active w = T.

    1/m̂_t makes every w_t L_t about equal (no task's loss dominates by its units); the task
    whose loss has fallen least relative to its start (largest rho) gets the largest boost.
    The current loss enters the EMA before the weights are computed.

    Conventions: reported weights sum to T over the active tasks (0 for inactive ones);
    the model gets the gradient of Σ_t w_t scale_t L_t with w detached.

    Args:
        config: `LossBalanceConfig` (``beta``, ``gamma``).
        ctx: the task context (task count, device).
    """

    name = "loss_balance"
    config_cls = LossBalanceConfig

    def __init__(self, config: StrategyConfig, ctx: TaskContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, LossBalanceConfig)
        self.beta = config.beta
        self.gamma = config.gamma
        zeros = torch.zeros(ctx.num_tasks, device=ctx.device)
        self._ema = zeros.clone()
        self._count = zeros.clone()
        self._start = torch.ones(ctx.num_tasks, device=ctx.device)

    def update(self, losses: Tensor, active: Tensor) -> Tensor:
        """Fold this step's losses into the EMA; return the weights ``[T]`` (Σ = T active)."""
        detached = losses.detach().to(self._ema.dtype)
        tiny = torch.finfo(self._ema.dtype).tiny
        first = active & (self._count == 0)
        self._ema = torch.where(
            active, self.beta * self._ema + (1 - self.beta) * detached, self._ema
        )
        self._count = self._count + active.to(self._count.dtype)
        correction = 1 - torch.pow(torch.full_like(self._count, self.beta), self._count)
        ema = self._ema / correction.clamp_min(tiny)
        self._start = torch.where(first, ema, self._start)

        ema = ema.clamp_min(tiny)
        progress = ema / self._start.clamp_min(tiny)
        n_active = active.sum().clamp_min(1).to(progress.dtype)
        mean_progress = torch.where(active, progress, torch.zeros_like(progress)).sum() / n_active
        slowness = progress / mean_progress.clamp_min(tiny)
        raw = (1 + self.gamma * slowness) / ema
        return normalise_weights(raw, active)

    def backward(
        self, losses: Tensor, scale: Tensor, params: ParameterGroups, step: StepContext
    ) -> Tensor:
        active = active_mask(scale)
        weights = self.update(losses, active).to(losses.dtype)
        (weights * scale * losses).sum().backward()
        return weights
