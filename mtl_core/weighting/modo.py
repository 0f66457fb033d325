"""MoDo: multi-objective gradient with double sampling (Chen, Fernando, Ying, Chen, 2023)."""

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
from mtl_core.weighting._projection import restrict_to_active, simplex_weight_step
from mtl_core.weighting._registry import STRATEGIES


class MoDoConfig(StrategyConfig):
    """MoDo's hyper-parameters.

    Args:
        gamma: step of the projected gradient update of the task weights.
        rho: the l2 regulariser of that update (ρ ‖λ‖² / 2 in its objective).
    """

    # Default: torchjd 0.18's MoDoWeighting. The ranges are ours, around it: the paper's own
    # sweep could not be checked.
    gamma: float = Field(
        0.1,
        gt=0,
        description="Step of the task-weight update.",
        json_schema_extra=searched(0.001, 1.0, log=True),
    )
    rho: float = Field(
        0.1,
        ge=0,
        description="l2 regulariser of the task-weight update.",
        json_schema_extra=searched(0.0, 1.0),
    )


@STRATEGIES.register("modo")
class MoDo(GradientWeighting[MoDoConfig]):
    """Move the task weights by a doubly sampled MGDA step; descend on a third batch.

    Chen, Fernando, Ying & Chen, "Three-Way Trade-Off in Multi-Objective Learning:
    Optimization, Generalization and Conflict-Avoidance", NeurIPS 2023 / JMLR 2024
    (Algorithm 1). Each step reads three independent batches z₁, z₂, z₃ (the trainer's
    ``batches_per_step = 3``); with J_i the ``[T, P]`` gradients of scale_t · L_t on the
    shared parameters on batch z_i, over the active tasks:

        λ ← Π_Δ(λ - γ (J₁ J₂ᵀ λ + ρ λ))        (λ(0) uniform)
        update: d = J₃ᵀ λ = Σ_t λ_t g_t(z₃)

    The product of two independent batches' gradients is an unbiased estimate of J Jᵀ,
    which one batch's Gram matrix is not (the paper's point; torchjd warns against J₁ J₁ᵀ).
    Π_Δ is the Euclidean projection onto the simplex of the active tasks (on the device, no
    host sync), from the last λ restricted to the active tasks and renormalised; an inactive
    task gets λ_t = 0; with one active task its gradient on z₃ is
    the update. Each task's own parameters get their task's gradient on z₃.

    Defaults γ = 0.1, ρ = 0.1 (torchjd 0.18's ``MoDoWeighting``). As the paper, the official
    code's ``three_grads`` mode and LibMTL, the update uses a third batch (the JMLR version's
    two-batch variant, the update on the mean of z₁ and z₂, is not offered). An epoch has a
    third of the steps of a one-batch method (each step reads three batches). Reported
    weights: λ normalised to Σ = T over the active tasks.
    """

    name = "modo"
    config_cls = MoDoConfig
    batches_per_step = 3

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.gamma = self._per_slot(0.1, torch.float64)
        self.rho = self._per_slot(0.1, torch.float64)
        self.lam = torch.full((num_slots, num_tasks), 1.0 / num_tasks, device=device).double()

    def _reset(self, slot: int, config: MoDoConfig) -> None:
        self.gamma[slot] = config.gamma
        self.rho[slot] = config.rho
        self.lam[slot] = 1.0 / self.num_tasks

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        cross = cross_batch_gram(inputs, self.name)
        active = inputs.scale > 0
        lam = restrict_to_active(self.lam, active)
        new_lam = simplex_weight_step(lam, cross, self.gamma, self.rho, active)
        # A non-finite step (a diverged trial) leaves a NaN the trainer reports.
        self.lam = torch.where(inputs.occupied.unsqueeze(-1), new_lam, self.lam)

        combined = torch.einsum("kt,ktp->kp", new_lam.to(grads.dtype), grads)
        combined = one_active_task_as_is(combined, grads, active)
        return combined, normalise(new_lam, active).to(inputs.losses.dtype)
