"""MoCo: stochastic multi-objective gradient correction (Fernando et al., ICLR 2023)."""

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
from mtl_core.weighting._projection import simplex_weight_step
from mtl_core.weighting._registry import STRATEGIES


class MoCoConfig(StrategyConfig):
    """MoCo's hyper-parameters.

    Args:
        beta: step of the tracking variables toward the new task gradients (1: no tracking).
        gamma: step of the projected gradient update of the task weights.
        rho: the l2 regulariser of that update (ρ ‖λ‖² / 2 in its objective).
    """

    # Default: LibMTL's MoCo_beta (LibMTL/config.py; there β / k^0.5, MoCo_beta_sigma 0.5).
    # The range is ours, around it: the paper's own sweep could not be checked.
    beta: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Tracking step of the gradient estimates.",
        json_schema_extra=searched(0.05, 0.95),
    )
    # Default: LibMTL's MoCo_gamma (LibMTL/config.py; there γ / k^0.5, MoCo_gamma_sigma 0.5).
    # The range is ours, a decade either side: the paper's own sweep could not be checked.
    gamma: float = Field(
        0.1,
        gt=0,
        description="Step of the task-weight update.",
        json_schema_extra=searched(0.01, 1.0, log=True),
    )
    # Default: LibMTL's MoCo_rho = 0 (LibMTL/config.py); not searched.
    rho: float = Field(0.0, ge=0, description="l2 regulariser of the task-weight update.")


@STRATEGIES.register("moco")
class MoCo(GradientWeighting[MoCoConfig]):
    """Descend along tracked task gradients weighted by a slowly moving MGDA solution.

    Fernando, Shen, Liu, Chaudhury, Murugesan & Chen, "Mitigating Gradient Bias in
    Multi-objective Learning: A Provably Convergent Approach", ICLR 2023 (Algorithm 1). With
    g_t the gradient of scale_t · L_t on the shared parameters, per step and over the active
    tasks:

        y_t ← y_t - β (y_t - g_t)                         (y_t = g_t the first time t is active)
        λ ← Π_Δ(λ - γ (Y Yᵀ + ρ I) λ)                       (Y: the rows y_t; λ(0) uniform)
        update: d = Yᵀ λ = Σ_t λ_t y_t

    Π_Δ is the Euclidean projection onto the simplex of the active tasks (on the device, no
    host sync). An inactive task keeps its y_t and gets λ_t = 0 this step; with one active
    task its current gradient is the update (y_t still tracks it). State: Y is
    ``[K, T, P]`` (one copy of the shared gradients per task and trial), λ ``[K, T]``.

    Defaults β = 0.5, γ = 0.1, ρ = 0 (LibMTL's). Where we differ: constant β and γ (the
    paper's analysis, and LibMTL, decay them as k^-½), the paper's projection of y_t onto a
    ball of radius L_t (a bound for the analysis) is left out, and λ is projected onto the
    simplex as in the paper (LibMTL applies a softmax instead). Reported weights: λ normalised
    to Σ = T over the active tasks.
    """

    name = "moco"
    config_cls = MoCoConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.beta = self._per_slot(0.5, torch.float64)
        self.gamma = self._per_slot(0.1, torch.float64)
        self.rho = self._per_slot(0.0, torch.float64)
        self.lam = torch.full((num_slots, num_tasks), 1.0 / num_tasks, device=device).double()
        self.seen = torch.zeros(num_slots, num_tasks, dtype=torch.bool, device=device)
        self.tracked: Tensor | None = None  # [K, T, P], allocated at the first step

    def _reset(self, slot: int, config: MoCoConfig) -> None:
        self.beta[slot] = config.beta
        self.gamma[slot] = config.gamma
        self.rho[slot] = config.rho
        self.lam[slot] = 1.0 / self.num_tasks
        self.seen[slot] = False
        if self.tracked is not None:
            self.tracked[slot] = 0

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        if self.tracked is None or self.tracked.shape != grads.shape:
            self.tracked = torch.zeros_like(grads)
        active = inputs.scale > 0
        live = inputs.occupied.unsqueeze(-1) & active  # [K, T]: the y_t that move
        beta = self.beta.to(grads.dtype).reshape(-1, 1, 1)
        fresh = (live & ~self.seen).unsqueeze(-1)
        stepped = torch.where(fresh, grads, self.tracked - beta * (self.tracked - grads))
        self.tracked = torch.where(live.unsqueeze(-1), stepped, self.tracked).detach()
        self.seen = self.seen | live

        y = torch.where(active.unsqueeze(-1), self.tracked, torch.zeros_like(self.tracked))
        gram = (y @ y.transpose(-1, -2)).double()
        lam = torch.where(active, self.lam, torch.zeros_like(self.lam))
        new_lam = simplex_weight_step(lam, gram, self.gamma, self.rho, active)
        self.lam = torch.where(inputs.occupied.unsqueeze(-1), new_lam, self.lam)

        combined = torch.einsum("kt,ktp->kp", new_lam.to(grads.dtype), y)
        # One active task: its current gradient (Y still tracks it).
        combined = one_active_task_as_is(combined, grads, active)
        return combined, normalise(new_lam, active).to(inputs.losses.dtype)
