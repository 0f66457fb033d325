"""CAGrad: conflict-averse gradient descent (Liu, Liu, Jin, Stone & Liu, NeurIPS 2021)."""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from mtl_core.context import StepContext, TaskContext
from mtl_core.weighting._base import (
    ParameterGroups,
    StrategyConfig,
    WeightingStrategy,
    backward_task_parameters,
    normalise_weights,
)
from mtl_core.weighting._gradients import (
    accumulate_flat_grad,
    active_mask,
    cagrad_dual,
    require_shared,
    task_gradients,
)
from mtl_core.weighting._registry import STRATEGIES

logger = logging.getLogger(__name__)


class CAGradConfig(StrategyConfig):
    """CAGrad's hyper-parameters.

    Args:
        c: radius of the ball around the mean gradient, relative to its norm (c = 0 is
            plain gradient descent on the mean loss).
        rescale: 0 keeps the direction, 1 divides it by 1 + c² (the paper's default), 2
            divides it by 1 + c.
    """

    c: float = Field(0.4, ge=0, description="Radius factor around the mean gradient.")
    rescale: Literal[0, 1, 2] = Field(1, description="0: none, 1: /(1+c^2), 2: /(1+c).")


@STRATEGIES.register("cagrad")
class CAGrad(WeightingStrategy):
    """Maximise the worst task improvement within a ball around the mean gradient.

    Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021.
    With g_t the gradient of scale_t · L_t on the shared parameters, g0 their mean over the
    active tasks and g_w = Σ_t w_t g_t, the dual

        w* = argmin_{w ∈ Δ} g_wᵀ g0 + c ‖g0‖ ‖g_w‖

    is solved by a small inner optimisation (projected gradient descent on the T x T Gram
    matrix, copied to the host: one sync per step; the paper uses SLSQP), and the update is

        d = (g0 + c ‖g0‖ / ‖g_w*‖ · g_w*) / r,   r = 1, 1 + c² or 1 + c (``rescale``).

    At c = 0 the update is g0 and no solve (nor sync) happens.

    Conventions: gradients are combined on the shared parameters only; each task-specific
    parameter gets its own task's gradient of scale_t · L_t; inactive tasks are left out;
    with one active task its gradient is used as is. The reported weights are the
    coefficients of d on the g_t normalised to Σ = T over the active tasks.

    Args:
        config: `CAGradConfig` (``c``, ``rescale``).
        ctx: the task context (task count, device).
    """

    name = "cagrad"
    config_cls = CAGradConfig
    uses_task_gradients = True

    def __init__(self, config: StrategyConfig, ctx: TaskContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, CAGradConfig)
        self.c = config.c
        self.rescale = config.rescale

    def coefficients(self, grads: Tensor, active: Tensor) -> Tensor:
        """Coefficients ``[T]`` of the CAGrad update on the rows of ``grads``."""
        mean_coeff = active.to(grads.dtype) / active.sum().clamp_min(1).to(grads.dtype)
        if self.c == 0:
            return mean_coeff
        gram = grads @ grads.T
        t = grads.shape[0]
        host = torch.cat([gram.reshape(-1), active.to(gram.dtype)]).double().cpu().numpy()
        mask = host[t * t :] > 0
        idx = np.flatnonzero(mask)
        coeff = np.zeros(t, dtype=np.float64)
        if idx.size == 1:
            coeff[idx[0]] = 1.0
        elif idx.size > 1:
            g = host[: t * t].reshape(t, t)[np.ix_(idx, idx)]
            w = cagrad_dual(g, self.c)
            b = np.full(idx.size, 1.0 / idx.size)
            g0_norm = math.sqrt(max(float(b @ g @ b), 0.0))
            gw_norm = math.sqrt(max(float(w @ g @ w), 0.0))
            lam = self.c * g0_norm / (gw_norm + 1e-8)
            divisor = {0: 1.0, 1: 1.0 + self.c**2, 2: 1.0 + self.c}[self.rescale]
            coeff[idx] = (b + lam * w) / divisor
        return torch.from_numpy(coeff).to(grads.device, grads.dtype)

    def backward(
        self, losses: Tensor, scale: Tensor, params: ParameterGroups, step: StepContext
    ) -> Tensor:
        shared = require_shared(params.shared, self.name)
        active = active_mask(scale)
        grads = task_gradients(losses, scale, shared)
        coeff = self.coefficients(grads, active)
        accumulate_flat_grad(shared, coeff @ grads)
        backward_task_parameters(losses * scale, params.task_specific)
        return normalise_weights(coeff, active)
