"""SDMGrad: stochastic direction-oriented multi-objective gradient (Xiao, Ban, Ji, 2023)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.components import searched
from mtl_core.weighting._base import (
    GradientWeighting,
    StepInputs,
    StrategyConfig,
    normalise,
    one_active_task_as_is,
)
from mtl_core.weighting._cross_batch import cross_batch_gram
from mtl_core.weighting._projection import project_active_simplex, restrict_to_active
from mtl_core.weighting._registry import STRATEGIES


class SDMGradConfig(StrategyConfig):
    """SDMGrad's hyper-parameters.

    Args:
        lambda_: how far the direction is pulled toward the uniform combination (λ in the
            paper; 0 is a doubly sampled MGDA, large values average the gradients).
        lr: step of the inner projected gradient descent on the weights.
        momentum: momentum of that descent.
        iterations: inner steps per training step.
    """

    # Default: torchjd 0.18's SDMGradWeighting and the official code's. The range is ours,
    # around it: the paper's own sweep could not be checked.
    lambda_: float = Field(
        0.3,
        ge=0,
        description="Pull toward the uniform combination.",
        json_schema_extra=searched(0.05, 1.0),
    )
    lr: float = Field(10.0, gt=0, description="Step of the inner weight descent.")
    momentum: float = Field(0.5, ge=0, lt=1, description="Momentum of the inner descent.")
    iterations: int = Field(20, ge=1, le=1000, description="Inner steps per training step.")


@STRATEGIES.register("sdmgrad")
class SDMGrad(GradientWeighting[SDMGradConfig]):
    """A direction near the average gradient that improves every task, from three batches.

    Xiao, Ban & Ji, "Direction-oriented Multi-objective Learning: Simple and Provable
    Stochastic Algorithms", NeurIPS 2023 (Algorithm 1). Each step reads three independent
    batches (the trainer's ``batches_per_step = 3``); with J_i the ``[T, P]`` gradients of
    scale_t · L_t on the shared parameters on batch i, w̃ uniform over the active tasks and
    A = J₁ J₂ᵀ / s², s the mean of √A_tt (so the step ``lr`` is scale-free), ``iterations``
    steps of projected descent with momentum, from the previous step's w:

        v ← momentum · v + A (w + λ w̃)          (v = 0 at the first inner step)
        w ← Π_Δ(w - lr · v)
        update: d = J₃ᵀ (w + λ w̃) / (1 + λ)

    Π_Δ is the Euclidean projection onto the simplex of the active tasks (on the device, no
    host sync), from the last w restricted to the active tasks and renormalised. An inactive
    task gets 0; with one active task its gradient on the third
    batch is the update. Each task's own parameters get their task's gradient on it.

    Defaults λ = 0.3, lr = 10, momentum 0.5, 20 inner steps: torchjd 0.18's
    ``SDMGradWeighting`` and the official code's. As the paper, w starts uniform and is
    carried from step to step, and the update uses the third batch. An epoch has a third of
    the steps of a one-batch method. Reported weights: (w + λ w̃) / (1 + λ) normalised to
    Σ = T over the active tasks.
    """

    name = "sdmgrad"
    config_cls = SDMGradConfig
    batches_per_step = 3

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.pull = self._per_slot(0.3, torch.float64)
        self.lr = self._per_slot(10.0, torch.float64)
        self.momentum = self._per_slot(0.5, torch.float64)
        # Host-side: the inner loop's length is the largest of the batch's trials'; a trial
        # with fewer iterations stops moving after its own (masked steps).
        self.iterations = [20] * num_slots
        self.w = torch.full((num_slots, num_tasks), 1.0 / num_tasks, device=device).double()

    def _reset(self, slot: int, config: SDMGradConfig) -> None:
        self.pull[slot] = config.lambda_
        self.lr[slot] = config.lr
        self.momentum[slot] = config.momentum
        self.iterations[slot] = config.iterations
        self.w[slot] = 1.0 / self.num_tasks

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        active = inputs.scale > 0
        cross = cross_batch_gram(inputs, self.name)
        diagonal = torch.diagonal(cross, dim1=-2, dim2=-1).clamp_min(0.0)
        count = active.sum(dim=-1, keepdim=True).clamp_min(1)
        size = diagonal.sqrt().sum(dim=-1, keepdim=True) / count
        scaled = cross / (size.square() + 1e-8).unsqueeze(-1)

        uniform = active.double() / count.double()
        pull = self.pull.unsqueeze(-1)
        w = restrict_to_active(self.w, active)
        velocity = torch.zeros_like(w)
        limits = torch.tensor(self.iterations, device=w.device).unsqueeze(-1)
        for step in range(max(self.iterations)):
            grad = (scaled @ (w + pull * uniform).unsqueeze(-1)).squeeze(-1)
            velocity = self.momentum.unsqueeze(-1) * velocity + grad
            moved = project_active_simplex(w - self.lr.unsqueeze(-1) * velocity, active)
            w = torch.where(limits > step, moved, w)
        self.w = torch.where(inputs.occupied.unsqueeze(-1), w, self.w)

        direction = (w + pull * uniform) / (1.0 + pull)
        combined = torch.einsum("kt,ktp->kp", direction.to(grads.dtype), grads)
        combined = one_active_task_as_is(combined, grads, active)
        return combined, normalise(direction, active).to(inputs.losses.dtype)
