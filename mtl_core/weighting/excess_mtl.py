"""ExcessMTL: robust multi-task learning with excess risks (He et al., ICML 2024)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.components import searched
from mtl_core.weighting._base import (
    GradientWeighting,
    StepInputs,
    StrategyConfig,
    masked_softmax,
    one_active_task_unit,
)
from mtl_core.weighting._registry import STRATEGIES

# Added to the accumulated squared gradients before the square root (the paper's AdaGrad ε),
# and to the baseline excess risk before dividing by it.
_EPS = 1e-7


class ExcessMTLConfig(StrategyConfig):
    """ExcessMTL's hyper-parameters.

    Args:
        robust_step_size: step size η of the exponentiated-gradient update of the weights.
        warmup_steps: steps at the start with uniform weights whose mean excess risk becomes
            each task's baseline (the paper's appendix uses 3 epochs); 0 takes the first
            step's excess risk as the baseline, as the paper's code and LibMTL do.
    """

    robust_step_size: float = Field(
        1e-2,
        gt=0,
        description="Step size of the weights' exponentiated-gradient update.",
        json_schema_extra=searched(1e-3, 1.0, log=True),
    )
    warmup_steps: int = Field(0, ge=0, description="Uniform steps that set the baseline.")


@STRATEGIES.register("excess_mtl")
class ExcessMTL(GradientWeighting[ExcessMTLConfig]):
    """Move weight toward the tasks with the largest estimated excess risk.

    He, Zhou, Sun, Zhang, Dang, Kumar & Zhao, "Robust Multi-Task Learning with Excess
    Risks", ICML 2024. With g_t the gradient of scale_t · L_t on the shared parameters and
    S_t = Σ_steps g_t² (elementwise, an AdaGrad-like diagonal Hessian estimate, state
    ``[K, T, P]``):

        E_t = Σ_p g_t² / √(S_t + 1e-7)                 (≈ g_tᵀ H_t⁻¹ g_t, the excess risk)
        r_t = E_t / (E_t(0) + 1e-7)                    (relative to the task's baseline)
        w ← softmax(log w + η r)   over the active tasks, w(0) = 1/T
        update: Σ_t w_t g_t

    The baseline E_t(0) is the mean over ``warmup_steps`` uniform steps; with none, the
    first step's E_t is the baseline and that step uses E_t itself (unscaled), as the paper's
    code, LibMTL and torchjd. Weights start on the simplex (1/T, as the paper and torchjd;
    LibMTL starts from 1 and renormalises to Σ = T, a step T times larger): the update is a
    weighted mean. η = 1e-2 by default as LibMTL (torchjd: 1). Tasks inactive at a step
    keep their weight's logit and take no part in the softmax; a task's baseline is set the
    first time it is active after the warm-up. No host sync. Reported weights: w normalised
    to Σ = T over the active tasks; with one active task its gradient is used as is.
    """

    name = "excess_mtl"
    config_cls = ExcessMTLConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.step_size = self._per_slot(1e-2, torch.float64)
        self.warmup = torch.zeros(num_slots, dtype=torch.long, device=device)
        self.steps = torch.zeros(num_slots, dtype=torch.long, device=device)
        self.logits = self._zeros(torch.float64)  # log w up to a constant per slot
        self.baseline = self._zeros(torch.float64)
        self.has_baseline = self._zeros(torch.bool)
        self.warmup_sum = self._zeros(torch.float64)
        self.sq_sum: Tensor | None = None  # [K, T, P], allocated at the first step

    def _reset(self, slot: int, config: ExcessMTLConfig) -> None:
        self.step_size[slot] = config.robust_step_size
        self.warmup[slot] = config.warmup_steps
        self.steps[slot] = 0
        self.logits[slot] = 0
        self.baseline[slot] = 0
        self.has_baseline[slot] = False
        self.warmup_sum[slot] = 0
        if self.sq_sum is not None:
            self.sq_sum[slot] = 0

    def coefficients(self, grads: Tensor, inputs: StepInputs) -> Tensor:
        active = inputs.scale > 0
        live = inputs.occupied
        if self.sq_sum is None or self.sq_sum.shape != grads.shape:
            self.sq_sum = torch.zeros_like(grads)
        sq = grads.detach().to(self.sq_sum.dtype) ** 2
        self.sq_sum = torch.where(live[:, None, None], self.sq_sum + sq, self.sq_sum)
        excess = (sq / torch.sqrt(self.sq_sum + _EPS)).sum(dim=2).to(torch.float64)
        warming = live & (self.steps < self.warmup)
        self.warmup_sum = torch.where(
            warming.unsqueeze(1), self.warmup_sum + excess, self.warmup_sum
        )
        acting = (live & ~warming).unsqueeze(1) & active
        first = acting & ~self.has_baseline
        warmed = (self.warmup > 0).unsqueeze(1)
        mean_warm = self.warmup_sum / self.warmup.clamp_min(1).unsqueeze(1).to(torch.float64)
        self.baseline = torch.where(first, torch.where(warmed, mean_warm, excess), self.baseline)
        # without a warm-up the first step uses the raw excess risk (the paper's code)
        relative = torch.where(first & ~warmed, excess, excess / (self.baseline + _EPS))
        self.has_baseline = self.has_baseline | first
        step = self.step_size.unsqueeze(1) * relative
        logits = torch.where(acting, self.logits + step, self.logits)
        # kept as log w (log-softmax over the active tasks) so the logits stay bounded
        shift = torch.logsumexp(logits.masked_fill(~active, -torch.inf), dim=1, keepdim=True)
        moved = acting.any(dim=1, keepdim=True)
        self.logits = torch.where(moved, logits - torch.where(moved, shift, 0.0), logits)
        self.steps = self.steps + live.long()
        w = masked_softmax(self.logits, active)
        return one_active_task_unit(w, active).to(grads.dtype)
