"""FAMO: Fast Adaptive Multitask Optimization (Liu, Feng, Stone & Liu, NeurIPS 2023)."""

from __future__ import annotations

import logging

import torch
from pydantic import Field
from torch import Tensor, nn

from mtl_core.context import StepContext, TaskContext
from mtl_core.weighting._base import (
    ParameterGroups,
    StrategyConfig,
    WeightingStrategy,
    normalise_weights,
)
from mtl_core.weighting._gradients import active_mask, masked_softmax
from mtl_core.weighting._registry import STRATEGIES

logger = logging.getLogger(__name__)


class FAMOConfig(StrategyConfig):
    """FAMO's hyper-parameters.

    Args:
        lr: step size of the task logits ξ (the paper's β; Adam on ξ).
        weight_decay: decay of ξ toward 0 (the paper's gamma), which keeps the weights
            from drifting to a corner.
        eps: added to each loss before the log (losses are assumed >= 0).
    """

    lr: float = Field(0.025, gt=0, description="Step size of the task logits.")
    weight_decay: float = Field(1e-3, ge=0, description="Decay of the task logits.")
    eps: float = Field(1e-8, gt=0, description="Added to the losses before the log.")


@STRATEGIES.register("famo")
class FAMO(WeightingStrategy):
    """Balance the rates of loss decrease in O(1) memory and time per step.

    Liu et al., "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023 (Algorithm 1).
    With logits ξ (init 0), z = softmax(ξ) and D_t = L_t + ε:

        c = Σ_t z_t / D_t                                  (detached)
        L = Σ_t scale_t · z_t · log D_t / c,   so ∇L = Σ_t scale_t λ_t ∇L_t,  λ_t = z_t/(c D_t)
        ξ ← Adam step on  J_softmax(ξ)ᵀ δ,   δ_t = log D_t(k-1) - log D_t(k)

    (the paper's ``δ`` is the log-loss decrease of step k; the ξ update moves weight toward
    the tasks whose loss fell least). ξ has its own Adam (lr ``lr``, weight decay
    ``weight_decay``) as in the paper, so it is *not* in `parameters()`.

    One-step lag: the paper compares the losses of the same batch before and after the
    model update; here the trainer owns the forward pass, so the decrease is measured at the
    next `backward` call, between the previous step's losses and this step's (a different
    batch). ξ is updated first, then this step's weights are formed. Tasks not active in
    both steps get δ = 0; the softmax runs over the active tasks.

    Conventions: the loss uses λ (Σ λ = 1 over the active tasks, as in the paper); the
    reported weights are λ normalised to Σ = T over the active tasks (0 for inactive ones).

    Args:
        config: `FAMOConfig` (``lr``, ``weight_decay``, ``eps``).
        ctx: the task context (task count, device).
    """

    name = "famo"
    config_cls = FAMOConfig

    def __init__(self, config: StrategyConfig, ctx: TaskContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, FAMOConfig)
        self.eps = config.eps
        self.logits = nn.Parameter(torch.zeros(ctx.num_tasks, device=ctx.device))
        self._optimizer = torch.optim.Adam(
            [self.logits], lr=config.lr, weight_decay=config.weight_decay
        )
        self._prev_log_losses: Tensor | None = None
        self._prev_active: Tensor | None = None

    def task_distribution(self, active: Tensor) -> Tensor:
        """z = softmax(ξ) over the active tasks (0 elsewhere), detached."""
        return masked_softmax(self.logits.detach(), active)

    def _update_logits(self, log_losses: Tensor, active: Tensor) -> None:
        if self._prev_log_losses is None or self._prev_active is None:
            return
        both = active & self._prev_active
        delta = torch.where(both, self._prev_log_losses - log_losses, torch.zeros_like(log_losses))
        z = self.task_distribution(both)
        # Jᵀδ of the softmax, the gradient the paper's autograd call produces.
        self.logits.grad = (z * (delta - (z * delta).sum())).to(self.logits.dtype)
        self._optimizer.step()
        self.logits.grad = None

    def backward(
        self, losses: Tensor, scale: Tensor, params: ParameterGroups, step: StepContext
    ) -> Tensor:
        active = active_mask(scale)
        log_losses = torch.log(losses.detach() + self.eps)
        self._update_logits(log_losses, active)
        self._prev_log_losses = log_losses
        self._prev_active = active

        z = self.task_distribution(active).to(losses.dtype)
        shifted = losses + self.eps
        c = (z / shifted.detach()).sum()
        tiny = torch.finfo(losses.dtype).tiny
        (scale * z * torch.log(shifted) / c.clamp_min(tiny)).sum().backward()
        return normalise_weights(z / (c.clamp_min(tiny) * shifted.detach()), active)
