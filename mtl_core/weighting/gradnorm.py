"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018)."""

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
from mtl_core.weighting._gradients import active_mask, require_shared
from mtl_core.weighting._registry import STRATEGIES

logger = logging.getLogger(__name__)


class GradNormConfig(StrategyConfig):
    """GradNorm's hyper-parameters.

    Args:
        alpha: restoring-force strength (the paper's alpha; 1.5 for its NYUv2 runs, 0 asks for
            equal gradient norms).
    """

    alpha: float = Field(1.5, ge=0, description="Strength of the pull toward equal rates.")


@STRATEGIES.register("gradnorm")
class GradNorm(WeightingStrategy):
    """Learn task weights that balance the gradient norms on the last shared layer.

    Chen et al., "GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep
    Multitask Networks", ICML 2018. With learnable w_t (init 1) and W the last shared layer
    (``params.last_shared``):

        G_t = ‖∇_W w_t L_t‖,   L̃_t = L_t / L_t(0),   r_t = L̃_t / mean_a(L̃_a),
        target_t = mean_a(G_a) · r_t^alpha   (detached),
        L_grad = Σ_t |G_t - target_t|.

    ∇_w L_grad is added to ``w.grad`` (L_grad updates only w); the model gets the gradient
    of Σ_t w_t scale_t L_t with w detached. L_t(0) is a task's loss at the first step it is
    active. G_t is taken on the unscaled loss so that the study's fixed weights (``scale``)
    stay relative multipliers on top of the balanced w. Means run over the active tasks.

    Renormalisation: the paper renormalises w to Σ w = T after each optimizer step. The
    trainer steps the optimizer after `backward`, so w is renormalised (and clamped to
    stay positive) at the *start* of the next `backward` call; the weights a step uses are
    therefore always renormalised.

    Conventions: reported weights are w normalised to Σ = T over the active tasks (0 for
    inactive ones); no per-task gradient combination on the shared parameters.

    Args:
        config: `GradNormConfig` (``alpha``).
        ctx: the task context (task count, device).
    """

    name = "gradnorm"
    config_cls = GradNormConfig

    #: Lower bound applied to w before renormalising, so no task weight turns negative.
    min_weight = 1e-4

    def __init__(self, config: StrategyConfig, ctx: TaskContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, GradNormConfig)
        self.alpha = config.alpha
        self.weights = nn.Parameter(torch.ones(ctx.num_tasks, device=ctx.device))
        self._initial_losses = torch.ones(ctx.num_tasks, device=ctx.device)
        self._has_initial = torch.zeros(ctx.num_tasks, dtype=torch.bool, device=ctx.device)

    def parameters(self) -> list[nn.Parameter]:
        return [self.weights]

    @torch.no_grad()
    def renormalise(self) -> None:
        """Clamp w positive and rescale it to Σ w = T (done before every step's use)."""
        w = self.weights
        w.clamp_(min=self.min_weight)
        w.mul_(self.ctx.num_tasks / w.sum())

    def backward(
        self, losses: Tensor, scale: Tensor, params: ParameterGroups, step: StepContext
    ) -> Tensor:
        last_shared = require_shared(params.last_shared, self.name)
        self.renormalise()
        active = active_mask(scale)
        detached = losses.detach()

        first = active & ~self._has_initial
        self._initial_losses = torch.where(first, detached, self._initial_losses)
        self._has_initial = self._has_initial | active

        norms = []
        for t in range(losses.shape[0]):
            grads = torch.autograd.grad(
                losses[t], last_shared, retain_graph=True, allow_unused=True, materialize_grads=True
            )
            norms.append(torch.stack([g.pow(2).sum() for g in grads]).sum().sqrt())
        grad_norms = torch.stack(norms).to(losses.dtype)

        n_active = active.sum().clamp_min(1).to(losses.dtype)
        zero = torch.zeros_like(detached)
        # G_t = |w_t| ‖∇_W L_t‖ equals ‖∇_W w_t L_t‖ and keeps the graph to w only.
        g_w = self.weights.abs() * grad_norms
        g_mean = torch.where(active, g_w.detach(), zero).sum() / n_active
        rel_loss = detached / self._initial_losses.clamp_min(torch.finfo(detached.dtype).tiny)
        rel_mean = torch.where(active, rel_loss, zero).sum() / n_active
        rate = rel_loss / rel_mean.clamp_min(torch.finfo(detached.dtype).tiny)
        target = (g_mean * rate.pow(self.alpha)).detach()
        gradnorm_loss = torch.where(active, (g_w - target).abs(), zero).sum()
        (w_grad,) = torch.autograd.grad(gradnorm_loss, [self.weights])
        if self.weights.grad is None:
            self.weights.grad = w_grad
        else:
            self.weights.grad.add_(w_grad)

        w = self.weights.detach()
        (w * scale * losses).sum().backward()
        return normalise_weights(w, active)
