"""Geometric Loss Strategy (Chennupati et al., CVPR Workshops 2019)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_core.weighting._base import (
    LossWeighting,
    StepInputs,
    StrategyConfig,
    masked_softmax,
    normalise,
)
from mtl_core.weighting._log_losses import floored_log
from mtl_core.weighting._registry import STRATEGIES


class GLSConfig(StrategyConfig):
    """GLS has no hyper-parameters."""


@STRATEGIES.register("gls")
class GLS(LossWeighting[GLSConfig]):
    """Minimise the geometric mean of the task losses.

    Chennupati et al., "MultiNet++: Multi-Stream Feature Aggregation and Geometric Loss
    Strategy for Multi-Task Learning", CVPR Workshops 2019. With x_t = scale_t · L_t and n
    the number of active tasks:

        L = (Π_t x_t)^(1/n) = exp((1/n) Σ_t log x_t),   ∂L/∂x_t = L / (n · x_t),

    computed in log space. The gradient on task t is inversely proportional to its loss:
    GLS balances tasks by their relative, not absolute, progress. torchjd's
    ``GeometricMean`` scalarizer is the same formula over all its values (it raises on a
    negative value); LibMTL's GLS takes the product directly (it under- or overflows for
    many tasks or extreme losses) and reports L_t / (T · Π L), which is not the gradient's
    weighting (that is ∝ 1/L_t).

    Losses are assumed > 0. A scaled loss at or below `_log_losses.loss_floor` (sqrt of the
    dtype's smallest normal, about 1e-19 in float32), including a zero or negative one,
    enters the product as the floor, a constant: it gets no gradient and weight 0 (at
    x_t → 0 the true gradient is infinite), so the step stays finite.

    Reported weights: the effective weights λ_t = ∂L/∂x_t (the objective's gradient is
    Σ_t λ_t ∇(scale_t L_t), the same convention as the other loss-based strategies), i.e.
    λ ∝ 1/x_t, normalised to Σ = T over the active tasks.
    """

    name = "gls"
    config_cls = GLSConfig

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        losses = inputs.losses
        scale = inputs.scale.to(losses.dtype)
        active = scale > 0
        logs, usable = floored_log(scale * losses, active)
        n_active = active.sum(dim=-1)
        mean_log = logs.sum(dim=-1) / n_active.clamp_min(1).to(losses.dtype)
        objective = torch.where(n_active > 0, torch.exp(mean_log), torch.zeros_like(mean_log))
        # λ_t ∝ 1/x_t: a softmax of -log x_t over the tasks that get a gradient.
        weights = masked_softmax(-logs.detach(), usable)
        return objective, normalise(weights, active)
