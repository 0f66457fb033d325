"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019)."""

from __future__ import annotations

import logging

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.context import StepContext, TaskContext
from mtl_core.weighting._base import (
    ParameterGroups,
    StrategyConfig,
    WeightingStrategy,
    normalise_weights,
)
from mtl_core.weighting._gradients import active_mask, masked_softmax
from mtl_core.weighting._registry import STRATEGIES

logger = logging.getLogger(__name__)


class DWAConfig(StrategyConfig):
    """DWA's hyper-parameters.

    Args:
        tau: softmax temperature (the paper's T = 2); larger is closer to uniform.
    """

    tau: float = Field(2.0, gt=0, description="Softmax temperature over the loss ratios.")


@STRATEGIES.register("dwa")
class DWA(WeightingStrategy):
    """Weight each task by how slowly its epoch-mean training loss fell.

    Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019:

        w_t = T · softmax_t(r_t / τ),   r_t = L_t(e-1) / L_t(e-2),

    with L_t(e) the epoch-mean (unscaled) training loss given to `on_epoch_end`; w = 1
    during the first two epochs (no two previous epochs yet). The softmax runs over the
    active tasks and T is their number.

    Conventions: reported weights sum to T over the active tasks (0 for inactive ones);
    the model gets the gradient of Σ_t w_t scale_t L_t.

    Args:
        config: `DWAConfig` (``tau``).
        ctx: the task context.
    """

    name = "dwa"
    config_cls = DWAConfig

    def __init__(self, config: StrategyConfig, ctx: TaskContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, DWAConfig)
        self.tau = config.tau
        self._history: list[Tensor] = []

    def on_epoch_end(self, epoch: int, mean_train_losses: Tensor) -> None:
        self._history.append(mean_train_losses.detach().to(self.ctx.device, torch.float32))
        self._history = self._history[-2:]

    def current_weights(self, active: Tensor) -> Tensor:
        """This epoch's weights ``[T]`` (Σ = number of active tasks)."""
        if len(self._history) < 2:
            return active.to(torch.float32)
        before, last = self._history
        ratio = last / before.clamp_min(torch.finfo(before.dtype).tiny)
        # A task that never trained has no meaningful ratio: treat it as neutral.
        ratio = torch.where(torch.isfinite(ratio), ratio, torch.ones_like(ratio))
        return masked_softmax(ratio / self.tau, active) * active.sum()

    def backward(
        self, losses: Tensor, scale: Tensor, params: ParameterGroups, step: StepContext
    ) -> Tensor:
        active = active_mask(scale)
        weights = self.current_weights(active).to(losses.dtype)
        (weights * scale * losses).sum().backward()
        return normalise_weights(weights, active)
