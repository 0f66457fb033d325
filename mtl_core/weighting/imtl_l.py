"""IMTL-L: the loss-balancing half of Impartial Multi-Task Learning (Liu et al., ICLR 2021)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from mtl_core.weighting._base import (
    LossWeighting,
    StepInputs,
    StrategyConfig,
    masked_softmax,
    normalise,
)
from mtl_core.weighting._registry import STRATEGIES


class IMTLLConfig(StrategyConfig):
    """IMTL-L has no hyper-parameters (``s`` starts at 0, i.e. the plain sum)."""


@STRATEGIES.register("imtl_l")
class IMTLL(LossWeighting[IMTLLConfig]):
    """Learn one log-scale per task so that every scaled loss tends to the same value, 1.

    Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021 (IMTL-L). With
    x_t = scale_t · L_t, summed over the active tasks:

        L = Σ_t (e^{s_t} · x_t - s_t),   s_t(0) = 0,
        ∂L/∂s_t = e^{s_t} x_t - 1,       ∂L/∂x_t = e^{s_t}.

    ``s`` (``[K, T]``) is returned by `parameters()` and trained by the trials' optimizer,
    as the paper trains it with the model (its gradient-balancing half, IMTL-G, is a separate
    method). At s's stationary point e^{s_t} x_t = 1: every task's scaled loss counts the
    same whatever its scale, so the study's fixed weights in ``scale`` act through the
    path of s (and the start), not at equilibrium; `uncertainty` keeps them (its scale
    multiplies its whole term). This is torchjd's ``IMTLL`` scalarizer on x (same init);
    LibMTL's IMTL implements the hybrid of IMTL-L and IMTL-G.

    An inactive task's term, ``-s_t`` included, leaves the sum: its s gets no gradient.
    Reported weights: e^{s_t} (∂L/∂x_t) normalised to Σ = T over the active tasks.
    """

    name = "imtl_l"
    config_cls = IMTLLConfig
    #: One active task gets e^{s_t} times its gradient (exactly it while s = 0).
    single_task_as_is: ClassVar[bool] = False

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.log_scales = nn.Parameter(self._zeros())

    def _reset(self, slot: int, config: IMTLLConfig) -> None:
        with torch.no_grad():
            self.log_scales[slot].zero_()

    def parameters(self) -> list[Tensor]:
        return [self.log_scales]

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        losses = inputs.losses
        scale = inputs.scale.to(losses.dtype)
        active = scale > 0
        s = self.log_scales.to(losses.dtype)
        terms = torch.exp(s) * scale * losses - s
        objective = torch.where(active, terms, torch.zeros_like(terms)).sum(dim=-1)
        # e^s normalised: a softmax of s over the active tasks (no overflow for large s).
        return objective, normalise(masked_softmax(s.detach(), active), active)
