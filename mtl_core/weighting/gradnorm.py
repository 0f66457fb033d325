"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018)."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from mtl_core.components import searched
from mtl_core.errors import ConfigError
from mtl_core.weighting._base import LossWeighting, StepInputs, StrategyConfig, normalise
from mtl_core.weighting._registry import STRATEGIES


class GradNormConfig(StrategyConfig):
    """GradNorm's hyper-parameters.

    Args:
        alpha: restoring-force strength (the paper's alpha; 1.5 for its NYUv2 runs, 0 asks for
            equal gradient norms).
    """

    alpha: float = Field(
        1.5,
        ge=0,
        description="Strength of the pull toward equal rates.",
        json_schema_extra=searched(0.5, 3.0),
    )


@STRATEGIES.register("gradnorm")
class GradNorm(LossWeighting[GradNormConfig]):
    """Learn task weights that balance the gradient norms on the last shared layer.

    Chen et al., "GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep
    Multitask Networks", ICML 2018. With learnable w_t (init 1) and W the last shared layer
    (``inputs.last_shared``):

        G_t = ‖∇_W w_t L_t‖,   L̃_t = L_t / L_t(0),   r_t = L̃_t / mean_a(L̃_a),
        target_t = mean_a(G_a) · r_t^alpha   (detached),
        L_grad = Σ_t |G_t - target_t|.

    The objective is Σ_t w_t scale_t L_t with w detached, plus L_grad, whose gradient
    reaches w only (G_t = |w_t| ‖∇_W L_t‖ keeps the graph to w). L_t(0) is a task's loss
    at the first step it is active. G_t is taken on the unscaled loss so that the study's
    fixed weights stay relative multipliers on top of the balanced w. Means run over the
    active tasks; one backward per task reaches all K trials.

    Renormalisation: the paper renormalises w to Σ w = T after each optimizer step; the
    trainer steps after the objective, so w is clamped positive and renormalised at the
    *start* of the next step: the weights a step uses are always renormalised. The first
    step is GradNorm's warm-up (it records L_t(0)). Reported weights: w (Σ = T).
    """

    name = "gradnorm"
    config_cls = GradNormConfig
    #: The first epoch holds the step that records L_t(0).
    warmup_epochs: ClassVar[int] = 1
    needs_shared_parameters: ClassVar[bool] = True
    #: Lower bound applied to w before renormalising, so no task weight turns negative.
    min_weight = 1e-4

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.alpha = self._per_slot(1.5)
        self.weights = nn.Parameter(torch.ones(num_slots, num_tasks, device=device))
        self.initial = torch.ones(num_slots, num_tasks, device=device)
        self.has_initial = self._zeros(torch.bool)

    def _reset(self, slot: int, config: GradNormConfig) -> None:
        self.alpha[slot] = config.alpha
        with torch.no_grad():
            self.weights[slot] = 1
        self.initial[slot] = 1
        self.has_initial[slot] = False

    def parameters(self) -> list[Tensor]:
        return [self.weights]

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        if not inputs.last_shared:
            raise ConfigError(
                "strategy 'gradnorm' needs an architecture with shared parameters "
                "(hard sharing or MMoE); this model has none"
            )
        losses, scale = inputs.losses, inputs.scale
        with torch.no_grad():
            w = self.weights
            w.clamp_(min=self.min_weight)
            w.mul_(self.num_tasks / w.sum(dim=-1, keepdim=True))
        active = scale > 0
        detached = losses.detach()
        first = active & ~self.has_initial
        self.initial = torch.where(first, detached, self.initial)
        self.has_initial = self.has_initial | active
        norms = []
        for t in range(self.num_tasks):
            # One backward per task reaches all K trials (their losses are independent).
            grads = torch.autograd.grad(
                losses[:, t].sum(),
                list(inputs.last_shared),
                retain_graph=True,
                allow_unused=True,
                materialize_grads=True,
            )
            sq = torch.stack([g.pow(2).reshape(self.num_slots, -1).sum(-1) for g in grads]).sum(0)
            norms.append(sq.sqrt())
        grad_norms = torch.stack(norms, dim=-1).to(losses.dtype)
        tiny = torch.finfo(detached.dtype).tiny
        n_active = active.sum(-1, keepdim=True).clamp_min(1).to(losses.dtype)
        zero = torch.zeros_like(detached)
        g_w = self.weights.abs() * grad_norms
        g_mean = torch.where(active, g_w.detach(), zero).sum(-1, keepdim=True) / n_active
        rel_loss = detached / self.initial.clamp_min(tiny)
        rel_mean = torch.where(active, rel_loss, zero).sum(-1, keepdim=True) / n_active
        rate = rel_loss / rel_mean.clamp_min(tiny)
        target = (g_mean * rate.pow(self.alpha.unsqueeze(-1))).detach()
        gradnorm_loss = torch.where(active, (g_w - target).abs(), zero).sum(-1)
        w_det = self.weights.detach()
        objective = (w_det * scale * losses).sum(-1) + gradnorm_loss
        return objective, normalise(w_det, active)
