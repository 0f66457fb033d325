"""FAMO: Fast Adaptive Multitask Optimization (Liu, Feng, Stone & Liu, NeurIPS 2023)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.components import searched
from mtl_core.optim import StackedOptimizer
from mtl_core.weighting._base import (
    LossWeighting,
    StepInputs,
    StrategyConfig,
    masked_softmax,
    normalise,
)
from mtl_core.weighting._registry import STRATEGIES


class FAMOConfig(StrategyConfig):
    """FAMO's hyper-parameters.

    Args:
        lr: step size of the task logits ξ (the paper's β; Adam on ξ).
        weight_decay: decay of ξ toward 0 (the paper's gamma), which keeps the weights
            from drifting to a corner.
        eps: added to each loss before the log (losses are assumed >= 0).
    """

    lr: float = Field(
        0.025,
        gt=0,
        description="Step size of the task logits.",
        json_schema_extra=searched(0.005, 0.1, log=True),
    )
    weight_decay: float = Field(1e-3, ge=0, description="Decay of the task logits.")
    eps: float = Field(1e-8, gt=0, description="Added to the losses before the log.")


@STRATEGIES.register("famo")
class FAMO(LossWeighting[FAMOConfig]):
    """Balance the rates of loss decrease in O(1) memory and time per step.

    Liu et al., "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023 (Algorithm 1).
    With logits ξ (init 0), z = softmax(ξ) and D_t = L_t + ε:

        c = Σ_t z_t / D_t                                  (detached)
        L = Σ_t scale_t · z_t · log D_t / c,   so ∇L = Σ_t scale_t λ_t ∇L_t,  λ_t = z_t/(c D_t)
        ξ ← Adam step on  J_softmax(ξ)ᵀ δ,   δ_t = log D_t(k-1) - log D_t(k)

    (the ξ update moves weight toward the tasks whose loss fell least). ξ has its own Adam
    (lr ``lr``, L2 weight decay ``weight_decay``, betas 0.9/0.999) as in the paper, so it
    is *not* in `parameters()`.

    One-step lag: the paper compares the losses of the same batch before and after the
    model update; here the trainer owns the forward pass, so the decrease is measured at the
    next step, between the previous step's losses and this step's (a different batch). ξ is
    updated first, then this step's weights are formed. Tasks not active in both steps get
    δ = 0; the softmax runs over the active tasks. The loss uses λ (Σ λ = 1 over the active
    tasks, as in the paper); reported weights are λ normalised to Σ = T.
    """

    name = "famo"
    config_cls = FAMOConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.eps = self._per_slot(1e-8)
        self.logits = self._zeros()
        # ξ's own Adam, per slot (the trials' optimizer's arithmetic, its own state).
        self._optimizer = StackedOptimizer(
            "adam", [self.logits], lr=self._per_slot(0.025), weight_decay=self._per_slot(1e-3)
        )
        self.prev_log_losses = self._zeros()
        self.prev_active = self._zeros(torch.bool)
        self.has_prev = torch.zeros(num_slots, device=device, dtype=torch.bool)

    def _reset(self, slot: int, config: FAMOConfig) -> None:
        self.eps[slot] = config.eps
        self._optimizer.reset_slot(slot, config.lr, config.weight_decay)
        self.logits[slot] = 0
        self.prev_log_losses[slot] = 0
        self.prev_active[slot] = False
        self.has_prev[slot] = False

    def _update_logits(self, log_losses: Tensor, active: Tensor, occupied: Tensor) -> None:
        both = active & self.prev_active
        delta = torch.where(both, self.prev_log_losses - log_losses, torch.zeros_like(log_losses))
        z = masked_softmax(self.logits, both)
        # Jᵀδ of the softmax, the gradient the paper's autograd call produces.
        grad = z * (delta - (z * delta).sum(dim=-1, keepdim=True))
        # Only live slots that have a previous step move; free slots stay as they are.
        self._optimizer.step([grad], self.has_prev & occupied)

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        losses, scale = inputs.losses, inputs.scale
        active = scale > 0
        eps = self.eps.unsqueeze(-1).to(losses.dtype)
        log_losses = torch.log(losses.detach() + eps)
        self._update_logits(log_losses.float(), active, inputs.occupied)
        occupied = inputs.occupied
        # A free slot keeps its state (it restarts when a trial fills it).
        live = occupied.unsqueeze(-1)
        self.prev_log_losses = torch.where(live, log_losses.float(), self.prev_log_losses)
        self.prev_active = torch.where(live, active, self.prev_active)
        self.has_prev = self.has_prev | occupied
        z = masked_softmax(self.logits, active).to(losses.dtype)
        shifted = losses + eps
        c = (z / shifted.detach()).sum(dim=-1, keepdim=True)
        tiny = torch.finfo(losses.dtype).tiny
        objective = (scale * z * torch.log(shifted) / c.clamp_min(tiny)).sum(dim=-1)
        return objective, normalise(z / (c.clamp_min(tiny) * shifted.detach()), active)
