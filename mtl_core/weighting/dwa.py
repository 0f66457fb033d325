"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019)."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.components import searched
from mtl_core.weighting._base import (
    LossWeighting,
    StepInputs,
    StrategyConfig,
    masked_softmax,
    normalise,
)
from mtl_core.weighting._registry import STRATEGIES


class DWAConfig(StrategyConfig):
    """DWA's hyper-parameters.

    Args:
        tau: softmax temperature (the paper's T = 2); larger is closer to uniform.
    """

    tau: float = Field(
        2.0,
        gt=0,
        description="Softmax temperature over the loss ratios.",
        json_schema_extra=searched(0.5, 5.0, log=True),
    )


@STRATEGIES.register("dwa")
class DWA(LossWeighting[DWAConfig]):
    """Weight each task by how slowly its epoch-mean training loss fell.

    Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019:

        w_t = T · softmax_t(r_t / τ),   r_t = L_t(e-1) / L_t(e-2),

    with L_t(e) the epoch-mean (unscaled) training loss given to `on_epoch_end`; w = 1
    during the first two epochs (no two previous epochs yet: its warm-up). The softmax runs
    over the active tasks and T is their number. The model gets the gradient of
    Σ_t w_t scale_t L_t; reported weights are w (Σ = T over the active tasks).
    """

    name = "dwa"
    config_cls = DWAConfig
    #: Epochs during which DWA is uniform by definition.
    warmup_epochs: ClassVar[int] = 2

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.tau = self._per_slot(2.0)
        self.before = self._zeros()
        self.last = self._zeros()
        self.epochs_seen = torch.zeros(num_slots, device=device, dtype=torch.long)

    def _reset(self, slot: int, config: DWAConfig) -> None:
        self.tau[slot] = config.tau
        self.before[slot] = 0
        self.last[slot] = 0
        self.epochs_seen[slot] = 0

    def on_epoch_end(self, ended: Tensor, mean_losses: Tensor) -> None:
        mask = ended.unsqueeze(-1)
        losses = mean_losses.detach().to(self.device, torch.float32)
        self.before = torch.where(mask, self.last, self.before)
        self.last = torch.where(mask, losses, self.last)
        self.epochs_seen = self.epochs_seen + ended.long()

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        active = inputs.scale > 0
        ratio = self.last / self.before.clamp_min(torch.finfo(self.before.dtype).tiny)
        # A task that never trained has no meaningful ratio: treat it as neutral.
        ratio = torch.where(torch.isfinite(ratio), ratio, torch.ones_like(ratio))
        n_active = active.sum(dim=-1, keepdim=True)
        dynamic = masked_softmax(ratio / self.tau.unsqueeze(-1), active) * n_active
        warm = (self.epochs_seen >= self.warmup_epochs).unsqueeze(-1)
        weights = torch.where(warm, dynamic, active.to(torch.float32)).to(inputs.losses.dtype)
        objective = (weights * inputs.scale * inputs.losses).sum(dim=-1)
        return objective, normalise(weights, active)
