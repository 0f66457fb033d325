"""PCGrad: projecting conflicting gradients (Yu et al., NeurIPS 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_core.weighting._base import (
    GradientWeighting,
    StepInputs,
    StrategyConfig,
    normalise,
    to_device,
)
from mtl_core.weighting._registry import STRATEGIES


class PCGradConfig(StrategyConfig):
    """PCGrad has no hyper-parameters."""


def project_conflicting(grads: Tensor, orders: Tensor) -> Tensor:
    """PCGrad's projection of ``[K, T, P]`` task gradients; returns the projected ``[K, T, P]``.

    For each task i, in the order ``orders[k, i]`` (a permutation of the T tasks, i itself
    skipped), whenever g_i·g_j < 0: g_i ← g_i - (g_i·g_j)/‖g_j‖² g_j with g_j the *original*
    gradient of task j, as in the paper. All-zero rows (inactive tasks) never conflict and
    stay zero. No host sync: the conflict test is a `torch.where`; the loop runs over the
    T x T task pairs only, all K trials at once.
    """
    k, t = grads.shape[0], grads.shape[1]
    sq_norms = (grads * grads).sum(dim=-1).clamp_min(torch.finfo(grads.dtype).tiny)
    rows = torch.arange(k, device=grads.device)
    projected = []
    for i in range(t):
        g = grads[:, i]
        for pos in range(t):
            j = orders[:, i, pos]
            g_j = grads[rows, j]
            dot = (g * g_j).sum(dim=-1)
            conflict = (dot < 0) & (j != i)
            coef = torch.where(conflict, dot / sq_norms[rows, j], torch.zeros_like(dot))
            g = g - coef.unsqueeze(-1) * g_j
        projected.append(g)
    return torch.stack(projected, dim=1)


@STRATEGIES.register("pcgrad")
class PCGrad(GradientWeighting[PCGradConfig]):
    """Project each task gradient off the task gradients it conflicts with, then sum.

    Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020. With g_t the
    gradient of scale_t · L_t on the shared parameters: for each task i, in a random order
    of the other tasks (one ``randperm(T)`` per task and step from the trial's generator),
    if g_i·g_j < 0 then g_i ← g_i - (g_i·g_j)/‖g_j‖² g_j (original g_j); the update is
    Σ_i g_i. PCGrad has no per-task weights: reported weights are 1 on the active tasks.
    """

    name = "pcgrad"
    config_cls = PCGradConfig

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        t = grads.shape[1]
        orders = torch.stack(
            [
                torch.stack([torch.randperm(t, generator=ctx.generator) for _ in range(t)])
                if ctx is not None
                else torch.arange(t).repeat(t, 1)
                for ctx in self.contexts
            ]
        )  # [K, T(i), T(position)], drawn on the CPU from each trial's own generator
        combined = project_conflicting(grads, to_device(orders, grads.device)).sum(dim=1)
        active = inputs.scale > 0
        return combined, normalise(active.to(inputs.losses.dtype), active)
