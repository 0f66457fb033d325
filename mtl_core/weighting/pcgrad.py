"""PCGrad: projecting conflicting gradients (Yu et al., NeurIPS 2020)."""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from mtl_core.context import StepContext
from mtl_core.weighting._base import (
    ParameterGroups,
    StrategyConfig,
    WeightingStrategy,
    backward_task_parameters,
    normalise_weights,
)
from mtl_core.weighting._gradients import (
    accumulate_flat_grad,
    active_mask,
    require_shared,
    task_gradients,
)
from mtl_core.weighting._registry import STRATEGIES

logger = logging.getLogger(__name__)


class PCGradConfig(StrategyConfig):
    """PCGrad has no hyper-parameters."""


def project_conflicting(grads: Tensor, generator: torch.Generator) -> Tensor:
    """PCGrad's projection of a ``[T, P]`` gradient matrix; returns the projected rows.

    For each task i, in a fresh random order of the other tasks j (drawn from
    ``generator``), whenever g_i·g_j < 0: g_i ← g_i - (g_i·g_j)/‖g_j‖² g_j, with g_j the
    *original* gradient of task j, as in the paper. All-zero rows (inactive tasks) never
    conflict and stay zero. No host sync: the test ``g_i·g_j < 0`` is a `torch.where`.
    """
    num_tasks = grads.shape[0]
    sq_norms = (grads * grads).sum(dim=1).clamp_min(torch.finfo(grads.dtype).tiny)
    rows = []
    for i in range(num_tasks):
        g = grads[i]
        order = torch.randperm(num_tasks, generator=generator).tolist()
        for j in order:
            if j == i:
                continue
            dot = g @ grads[j]
            coef = torch.where(dot < 0, dot / sq_norms[j], torch.zeros_like(dot))
            g = g - coef * grads[j]
        rows.append(g)
    return torch.stack(rows)


@STRATEGIES.register("pcgrad")
class PCGrad(WeightingStrategy):
    """Project each task gradient off the task gradients it conflicts with, then sum.

    Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020. With g_t the
    gradient of scale_t · L_t on the shared parameters: for each task i, in a random order
    of the other tasks (``ctx.generator``, one permutation per task and step), if
    g_i·g_j < 0 then g_i ← g_i - (g_i·g_j)/‖g_j‖² g_j (original g_j); the update is
    Σ_i g_i.

    Conventions: gradients are combined on the shared parameters only; each task-specific
    parameter gets its own task's gradient of scale_t · L_t; inactive tasks (scale 0) are
    left out. PCGrad has no per-task weights: the reported weights are 1 on the active
    tasks (Σ = T), 0 on inactive ones.

    Args:
        config: `PCGradConfig` (empty).
        ctx: the task context (task count, device, generator).
    """

    name = "pcgrad"
    config_cls = PCGradConfig
    uses_task_gradients = True

    def backward(
        self, losses: Tensor, scale: Tensor, params: ParameterGroups, step: StepContext
    ) -> Tensor:
        shared = require_shared(params.shared, self.name)
        active = active_mask(scale)
        grads = task_gradients(losses, scale, shared)
        combined = project_conflicting(grads, self.ctx.generator).sum(dim=0)
        accumulate_flat_grad(shared, combined)
        backward_task_parameters(losses * scale, params.task_specific)
        return normalise_weights(active.to(losses.dtype), active)
