"""DB-MTL: dual balancing of loss scales and gradient magnitudes (Lin et al., 2023)."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.components import searched
from mtl_core.weighting._base import (
    GradientWeighting,
    StepInputs,
    StrategyConfig,
    masked_softmax,
    normalise,
)
from mtl_core.weighting._registry import STRATEGIES


class DBMTLConfig(StrategyConfig):
    """DB-MTL's hyper-parameters.

    Args:
        beta: EMA factor β of the task gradients (0: this step's gradients only).
        beta_sigma: decay exponent σ of the EMA factor, β_k = β / k^σ at step k.
        eps: added to each loss before the log (a negative loss counts as 0).
    """

    # Default: LibMTL's DB_beta (LibMTL/config.py, LibMTL/weighting/DB_MTL.py). The range
    # is ours, around it: the paper's own sweep could not be checked.
    beta: float = Field(
        0.9,
        ge=0,
        lt=1,
        description="EMA factor of the task gradients of the log losses.",
        json_schema_extra=searched(0.1, 0.99),
    )
    # Default: LibMTL's DB_beta_sigma = 0, a constant β (LibMTL/config.py). The range is ours,
    # from no decay to 1 / k: the paper's own sweep could not be checked.
    beta_sigma: float = Field(
        0.0,
        ge=0,
        description="Decay exponent of the EMA factor: beta / step**beta_sigma.",
        json_schema_extra=searched(0.0, 1.0),
    )
    eps: float = Field(1e-8, gt=0, description="Added to the losses before the log.")


@STRATEGIES.register("db_mtl")
class DBMTL(GradientWeighting[DBMTLConfig]):
    """Balance the loss scales with a log, then the gradient magnitudes by rescaling.

    Lin, Ye, Xu, Shi & Kwok, "Dual-Balancing for Multi-Task Learning", arXiv 2308.12029,
    2023. With g_t the gradient of scale_t · L_t on the shared parameters, at the trial's
    step k (counted from 1):

        h_t = g_t / (L_t + ε)              (the gradient of scale_t · log(L_t + ε))
        ĝ_t ← β_k ĝ_t + (1 - β_k) h_t,     β_k = β / k^σ,  ĝ_t(0) = 0
        α_t = max_s ‖ĝ_s‖ / ‖ĝ_t‖,         update = Σ_t α_t ĝ_t

    so every task's (averaged) gradient enters with the largest one's norm. Defaults as
    LibMTL (β = 0.9, σ = 0, ε = 1e-8); β is searched over 0.1 - 0.99 and σ over 0 - 1,
    around them (the paper's own sweep could not be checked). Where LibMTL divides by
    ‖ĝ_t‖ + 1e-8 (which stops balancing gradients whose norm is near 1e-8), we divide
    exactly and give α_t = 0 to a task whose ĝ_t is zero (it adds nothing either way).
    torchjd has no DB-MTL.

    The max and the sum run over the tasks active this step: an inactive task adds nothing
    and its ĝ_t stays as it was (a schedule may switch it on again). ĝ is ``[K, T, P]``
    state, allocated at the first step; a free slot's ĝ and step count do not change.
    With one active task the update is ĝ_t, a positive multiple of g_t while g_t keeps its
    direction. Reported weights: α_t / (L_t + ε), the weight of this step's g_t in the
    update up to the factor (1 - β_k) common to all tasks, normalised to Σ = T over the
    active tasks. No host sync.
    """

    name = "db_mtl"
    config_cls = DBMTLConfig
    single_task_as_is: ClassVar[bool] = False

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.beta = self._per_slot(0.9)
        self.beta_sigma = self._per_slot(0.0)
        self.eps = self._per_slot(1e-8)
        self.steps = torch.zeros(num_slots, device=device, dtype=torch.long)
        #: ĝ, ``[K, T, P]``; empty until the first step gives P.
        self.averages = torch.zeros(num_slots, num_tasks, 0, device=device)

    def _reset(self, slot: int, config: DBMTLConfig) -> None:
        self.beta[slot] = config.beta
        self.beta_sigma[slot] = config.beta_sigma
        self.eps[slot] = config.eps
        self.steps[slot] = 0
        self.averages[slot] = 0

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        dtype = grads.dtype
        active = inputs.scale > 0
        if self.averages.shape != grads.shape:
            self.averages = torch.zeros_like(grads)
        averages = self.averages.to(dtype)
        occupied = inputs.occupied.to(grads.device)
        steps = self.steps + occupied.long()
        shifted = inputs.losses.detach().to(dtype).clamp_min(0) + self.eps.to(dtype).unsqueeze(-1)
        log_grads = grads / shifted.unsqueeze(-1)
        factor = self.beta.to(dtype) / steps.clamp_min(1).to(dtype) ** self.beta_sigma.to(dtype)
        factor = factor.reshape(-1, 1, 1)
        moved = factor * averages + (1 - factor) * log_grads
        update = (occupied.unsqueeze(-1) & active).unsqueeze(-1)
        averages = torch.where(update, moved, averages)
        self.averages = averages
        self.steps = steps

        norms = torch.linalg.vector_norm(averages, dim=-1)
        usable = active & (norms > 0)
        largest = torch.where(usable, norms, torch.zeros_like(norms)).amax(dim=-1, keepdim=True)
        safe_norms = torch.where(usable, norms, torch.ones_like(norms))
        # α_t ĝ_t = largest · ĝ_t / ‖ĝ_t‖: unit vectors, so a tiny ‖ĝ_t‖ cannot overflow α_t.
        units = torch.where(usable.unsqueeze(-1), averages / safe_norms.unsqueeze(-1), 0.0)
        combined = largest * units.sum(dim=1)
        # α_t / (L_t + ε) ∝ 1 / (‖ĝ_t‖ (L_t + ε)), formed in log space.
        scores = -torch.log(safe_norms) - torch.log(shifted)
        return combined, normalise(masked_softmax(scores, usable), active)
