"""Aligned-MTL: independent component alignment (Senushkin et al., CVPR 2023)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.weighting._base import GradientWeighting, StepInputs, StrategyConfig, normalise
from mtl_core.weighting._dual_cone import mean_preferences
from mtl_core.weighting._gram import gram64, symmetric_eig
from mtl_core.weighting._registry import STRATEGIES

ScaleMode = Literal["min", "median", "rmse"]
_MODES: tuple[ScaleMode, ...] = ("min", "median", "rmse")


class AlignedMTLConfig(StrategyConfig):
    """Aligned-MTL's hyper-parameters.

    Args:
        scale_mode: the eigenvalue the aligned gradients are scaled to: ``min`` (the smallest
            non-zero one, the paper's Algorithm 1), ``median`` or ``rmse`` (their mean, as
            the authors' code).
    """

    scale_mode: ScaleMode = Field("min", description="Eigenvalue the aligned system keeps.")


@STRATEGIES.register("aligned_mtl")
class AlignedMTL(GradientWeighting[AlignedMTLConfig]):
    """Combine the task gradients after making their system orthogonal and equally scaled.

    Senushkin et al., "Independent Component Alignment for Multi-Task Learning", CVPR 2023
    (Algorithm 1). With g_t the gradient of scale_t · L_t on the shared parameters, J their
    ``[T, P]`` matrix and G = J Jᵀ = V Λ Vᵀ (a batched float64 `eigh`, on the device, no host
    sync), keeping the r eigenvalues above T · eps · λ_max (eps of the gradients' dtype):

        B = sqrt(σ) V_r Λ_r^(-1/2) V_rᵀ,   α = B w,   d = Σ_t α_t g_t,

    w = 1/n on the n active tasks (the preference vector; the study's scale_t enters through
    g_t) and σ = λ_min of the kept eigenvalues (``min``, the paper), their median (lower
    median, ``median``) or their mean (``rmse``, the authors' code). Bᵀ J has orthogonal rows
    of equal norm sqrt(σ) on the span of the gradients: the condition number of the aligned
    system is 1, so no task dominates the update. With no eigenvalue kept (all gradients 0)
    B = I and the update is 0.

    Defaults and conventions as torchjd's `AlignedMTL` (mean preference, ``min``), whose
    preference divides by every row: with m rows of which n active its update is n/m times
    ours. LibMTL's `Aligned_MTL` uses σ = λ_min and its own cutoff. α may be negative. One
    active task: its own gradient. Reported weights: |α| normalised to Σ = T over the active
    tasks (the signs are in the update).
    """

    name = "aligned_mtl"
    config_cls = AlignedMTLConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.mode = torch.zeros(num_slots, dtype=torch.long, device=device)

    def _reset(self, slot: int, config: AlignedMTLConfig) -> None:
        self.mode[slot] = _MODES.index(config.scale_mode)

    def coefficients(self, grads: Tensor, inputs: StepInputs) -> Tensor:
        active = inputs.scale > 0
        num_tasks = grads.shape[1]
        values, vectors = symmetric_eig(gram64(grads, active))  # ascending
        top = values[:, -1:]
        kept = values > top * num_tasks * torch.finfo(grads.dtype).eps
        rank = kept.sum(-1, keepdim=True)
        smallest = torch.where(kept, values, torch.inf).amin(-1, keepdim=True)
        # the kept eigenvalues are the last r: the lower median is at (T - r) + (r - 1) // 2
        at = (num_tasks - rank + (rank - 1).clamp_min(0) // 2).clamp(0, num_tasks - 1)
        median = values.gather(-1, at)
        mean = torch.where(kept, values, 0.0).sum(-1, keepdim=True) / rank.clamp_min(1)
        mode = self.mode.to(grads.device).unsqueeze(-1)
        sigma = torch.where(mode == 0, smallest, torch.where(mode == 1, median, mean))
        inv_sqrt = torch.where(kept, torch.where(kept, values, 1.0).rsqrt(), 0.0)
        w = mean_preferences(active)
        coords = (vectors.transpose(-1, -2) @ w.unsqueeze(-1)).squeeze(-1)
        alpha = sigma.sqrt() * (vectors @ (inv_sqrt * coords).unsqueeze(-1)).squeeze(-1)
        alpha = torch.where(rank > 0, alpha, w)
        alpha = torch.where(values.isnan().any(-1, keepdim=True), torch.nan, alpha)
        return torch.where(active, alpha, 0.0).to(grads.dtype)

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        coeff = self.coefficients(grads, inputs)
        combined = torch.einsum("kt,ktp->kp", coeff, grads)
        return combined, normalise(coeff.abs(), inputs.scale > 0)
