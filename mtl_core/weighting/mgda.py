"""MGDA: multiple-gradient descent as multi-objective optimisation (Sener & Koltun, 2018)."""

from __future__ import annotations

import logging
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.context import StepContext, TaskContext
from mtl_core.errors import ConfigError
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
    frank_wolfe_min_norm,
    min_norm_two_tasks,
    require_shared,
    task_gradients,
)
from mtl_core.weighting._registry import STRATEGIES

logger = logging.getLogger(__name__)

Normalization = Literal["none", "l2", "loss", "loss+"]


class MGDAConfig(StrategyConfig):
    """MGDA's hyper-parameters.

    Args:
        normalization: how each task gradient is divided before solving: ``none``, ``l2``
            (by its norm), ``loss`` (by the task loss), ``loss+`` (by both).
        upper_bound: MGDA-UB: solve on the gradients w.r.t. the shared representation
            instead of the shared parameters (one backward instead of T).
        max_iter: Frank-Wolfe iteration cap (more than two tasks).
    """

    normalization: Normalization = Field("none", description="Task-gradient normalisation.")
    upper_bound: bool = Field(False, description="MGDA-UB on the shared representation.")
    max_iter: int = Field(250, ge=1, le=10_000, description="Frank-Wolfe iteration cap.")


@STRATEGIES.register("mgda")
class MGDA(WeightingStrategy):
    """Descend along the min-norm point of the convex hull of the task gradients.

    Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018.
    With ĝ_t = g_t / n_t the (normalised) gradient of scale_t · L_t:

        alpha = argmin_{alpha ∈ Δ} ‖Σ_t alpha_t ĝ_t‖²,
        update on the shared parameters: Σ_t alpha_t ĝ_t,

    exact for two tasks (closed form, on the device) and by Frank-Wolfe (the paper's
    Algorithm 2) for more, on the T x T Gram matrix copied to the host (one sync per step).
    ``normalization`` sets n_t: ``none`` (1, the default), ``l2`` (‖g_t‖), ``loss``
    (L_t) or ``loss+`` (L_t ‖g_t‖); the weights are applied to the normalised gradients
    they were solved on, so the effective weight on scale_t · L_t is λ_t = alpha_t / n_t.
    With ``l2`` / ``loss+`` the study's scale cancels out of ĝ_t.

    ``upper_bound`` (MGDA-UB): g_t is the gradient w.r.t. ``params.representation`` (the
    shared representation; `ConfigError` when the architecture has none), and the shared
    parameters get the gradient of Σ_t λ_t scale_t L_t back-propagated through the model.

    Conventions: gradients are combined on the shared parameters only; each task-specific
    parameter gets its own task's gradient of scale_t · L_t; inactive tasks are left out;
    with one active task its gradient is used as is. Reported weights are λ normalised to
    Σ = T over the active tasks.

    Args:
        config: `MGDAConfig` (``normalization``, ``upper_bound``, ``max_iter``).
        ctx: the task context (task count, device).
    """

    name = "mgda"
    config_cls = MGDAConfig
    uses_task_gradients = True

    def __init__(self, config: StrategyConfig, ctx: TaskContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, MGDAConfig)
        self.normalization: Normalization = config.normalization
        self.upper_bound = config.upper_bound
        self.max_iter = config.max_iter

    def _norms(self, grads: Tensor, losses: Tensor, active: Tensor) -> Tensor:
        ones = torch.ones_like(losses)
        if self.normalization == "none":
            return ones
        if self.normalization == "l2":
            norms = grads.norm(dim=1)
        elif self.normalization == "loss":
            norms = losses.detach()
        else:
            norms = losses.detach() * grads.norm(dim=1)
        return torch.where(active & (norms > 0), norms, ones)

    def solve(self, grads: Tensor, active: Tensor) -> Tensor:
        """Min-norm weights ``alpha`` ``[T]`` of the rows of ``grads`` (inactive rows get 0)."""
        gram = grads @ grads.T
        if grads.shape[0] == 2:
            return min_norm_two_tasks(gram, active)
        # One transfer for both the Gram matrix and the mask.
        host = torch.cat([gram.reshape(-1), active.to(gram.dtype)]).double().cpu().numpy()
        t = grads.shape[0]
        alpha = frank_wolfe_min_norm(
            host[: t * t].reshape(t, t), host[t * t :] > 0, max_iter=self.max_iter
        )
        return torch.from_numpy(alpha).to(grads.device, grads.dtype)

    def backward(
        self, losses: Tensor, scale: Tensor, params: ParameterGroups, step: StepContext
    ) -> Tensor:
        shared = require_shared(params.shared, self.name)
        active = active_mask(scale)
        if self.upper_bound:
            if params.representation is None:
                raise ConfigError(
                    "strategy 'mgda' with upper_bound=true needs an architecture that exposes "
                    "a shared representation (hard sharing or MMoE)"
                )
            grads = task_gradients(losses, scale, [params.representation])
        else:
            grads = task_gradients(losses, scale, shared)

        norms = self._norms(grads, losses, active)
        alpha = self.solve(grads / norms[:, None], active)
        single = active.sum() == 1
        coeff = torch.where(single, active.to(alpha.dtype), alpha / norms)

        if self.upper_bound:
            torch.autograd.backward(
                (coeff.detach() * scale * losses).sum(), inputs=shared, retain_graph=True
            )
        else:
            accumulate_flat_grad(shared, coeff @ grads)
        backward_task_parameters(losses * scale, params.task_specific)
        return normalise_weights(coeff, active)
