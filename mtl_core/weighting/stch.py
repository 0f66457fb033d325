"""Smooth Tchebycheff scalarization (Lin et al., ICML 2024)."""

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
from mtl_core.weighting._log_losses import floored_log, loss_floor
from mtl_core.weighting._registry import STRATEGIES

#: Default warm-up: LibMTL's ``STCH_warmup_epoch = 4`` counts from 0, i.e. five epochs.
DEFAULT_WARMUP = 5


class STCHConfig(StrategyConfig):
    """STCH's hyper-parameters.

    Args:
        mu: smoothing μ; the smooth maximum tends to the Tchebycheff maximum as μ → 0.
        warmup_epochs: epochs trained on Σ_t log L_t before STCH acts; the last one's
            epoch-mean losses are the reference (nadir) point. 0: no warm-up, reference 1.
    """

    mu: float = Field(
        1.0,
        gt=0,
        description="Smoothing of the Tchebycheff maximum (smaller is closer to the max).",
        json_schema_extra=searched(0.01, 1.0, log=True),
    )
    warmup_epochs: int = Field(
        DEFAULT_WARMUP,
        ge=0,
        le=1000,
        description="Epochs of log-loss training before STCH; the last sets the reference.",
    )


@STRATEGIES.register("stch")
class STCH(LossWeighting[STCHConfig]):
    """Minimise a smooth maximum of the log task losses relative to a reference point.

    Lin, Zhang, Yang, Liu, Wang & Zhang, "Smooth Tchebycheff Scalarization for
    Multi-Objective Optimization", ICML 2024: g_μ = μ log Σ_t exp(λ_t (f_t - z_t) / μ), a
    smooth upper bound of max_t λ_t (f_t - z_t) within μ log T. In multi-task learning, as
    in the paper's experiments (its official code, which LibMTL copies), the objectives are
    the log losses, the reference point is the log of the epoch-mean losses at the end of a
    warm-up, and λ_t = 1. With x_t = scale_t · L_t, n active tasks and N_t the warm-up's
    last epoch-mean (unscaled) loss:

        warm-up (first ``warmup_epochs`` epochs):  L = Σ_t log x_t
        then:  L = n · μ · log Σ_t exp(u_t / μ),   u_t = log x_t - log N_t

    so ∂L/∂x_t = n · softmax_t(u / μ) / x_t: the task furthest above its reference gets the
    most weight. ``scale`` enters inside the log, so a study's fixed weight w_t is a
    preference on the normalised loss (the maximum is over w_t L_t / N_t); as a factor on
    u_t it would *lower* a task's weight once its loss is below the reference. The factor n
    (LibMTL's ``task_num``) keeps the gradient's size through the end of the warm-up
    (the softmax sums to 1, the warm-up's weights to n); torchjd's ``STCH`` scalarizer is
    the bare g_μ, with λ uniform summing to 1 by default.

    Defaults: μ = 1 and a five-epoch warm-up, as LibMTL (``STCH_mu = 1``,
    ``STCH_warmup_epoch = 4``, counted from epoch 0). μ is searched over 0.01 – 1 (log), the
    paper's values. A reference loss that is not finite or is at or below the log floor
    (`_log_losses.loss_floor`) counts as 1; so does every reference with no warm-up. Losses
    at or below the floor get no gradient (see `_log_losses.floored_log`).

    Reported weights: the effective weights λ_t = ∂L/∂x_t, normalised to Σ = T over the
    active tasks. No host sync (the logsumexp is stabilised by its maximum).
    """

    name = "stch"
    config_cls = STCHConfig
    #: Epochs of the default config's warm-up (a longer configured one is not seen here).
    warmup_epochs: ClassVar[int] = DEFAULT_WARMUP
    #: Log losses: one active task gets ∇(scale_t L_t) / (scale_t L_t).
    single_task_as_is: ClassVar[bool] = False

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.mu = self._per_slot(1.0)
        self.warmup = torch.full((num_slots,), DEFAULT_WARMUP, device=device, dtype=torch.long)
        self.epochs_seen = torch.zeros(num_slots, device=device, dtype=torch.long)
        self.log_reference = self._zeros()

    def _reset(self, slot: int, config: STCHConfig) -> None:
        self.mu[slot] = config.mu
        self.warmup[slot] = config.warmup_epochs
        self.epochs_seen[slot] = 0
        self.log_reference[slot] = 0

    def on_epoch_end(self, ended: Tensor, mean_losses: Tensor) -> None:
        losses = mean_losses.detach().to(self.device, torch.float32)
        self.epochs_seen = self.epochs_seen + ended.long()
        last_warmup = (ended & (self.epochs_seen == self.warmup)).unsqueeze(-1)
        usable = torch.isfinite(losses) & (losses > loss_floor(losses.dtype))
        log_losses = torch.log(torch.where(usable, losses, torch.ones_like(losses)))
        self.log_reference = torch.where(last_warmup, log_losses, self.log_reference)

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        losses = inputs.losses
        dtype = losses.dtype
        scale = inputs.scale.to(dtype)
        active = scale > 0
        logs, usable = floored_log(scale * losses, active)
        mu = self.mu.to(dtype).unsqueeze(-1)
        logits = (logs - self.log_reference.to(dtype)) / mu
        any_active = active.any(dim=-1, keepdim=True)
        # Inactive tasks leave the sum; a row without any active task sums zeros (then * 0).
        masked = torch.where(active, logits, torch.full_like(logits, float("-inf")))
        masked = torch.where(any_active, masked, torch.zeros_like(masked))
        n_active = active.sum(dim=-1).to(dtype)
        smooth_max = n_active * mu.squeeze(-1) * torch.logsumexp(masked, dim=-1)
        warm = self.epochs_seen >= self.warmup
        objective = torch.where(warm, smooth_max, logs.sum(dim=-1))
        # log λ_t = log softmax_t(u/μ) - log x_t (+ a constant), or -log x_t in the warm-up.
        scores = torch.where(warm.unsqueeze(-1), logits, torch.zeros_like(logits)) - logs
        return objective, normalise(masked_softmax(scores.detach(), usable), active)
