"""FairGrad: fair resource allocation in multi-task learning (Ban & Ji, ICML 2024)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.components import searched
from mtl_core.weighting._base import (
    GradientWeighting,
    StepInputs,
    StrategyConfig,
    one_active_task_unit,
)
from mtl_core.weighting._gram import gram64
from mtl_core.weighting._nash import solve_power_equations
from mtl_core.weighting._registry import STRATEGIES


class FairGradConfig(StrategyConfig):
    """FairGrad's hyper-parameters.

    Args:
        alpha: the α of α-fairness: 0 is the plain mean of the gradients, 1 proportional
            fairness (Nash-MTL's weights), larger values move toward max-min fairness.
    """

    # Default: the official code's --alpha (OptMN-Lab/fairgrad, experiments/utils.py) and
    # LibMTL's FairGrad_alpha, both 1; its run scripts use 2 (QM9, CelebA, MT10, MT50). The
    # range spans both; its ends (0.5, 10) are ours: the paper's own sweep could not be checked.
    alpha: float = Field(
        1.0,
        ge=0,
        le=100,
        description="Alpha of alpha-fairness.",
        json_schema_extra=searched(0.5, 10.0, log=True),
    )


@STRATEGIES.register("fairgrad")
class FairGrad(GradientWeighting[FairGradConfig]):
    """Weight the task gradients so the update is α-fair between the tasks.

    Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024. With G the
    ``[T, P]`` gradients of scale_t · L_t on the shared parameters, the update d = Gᵀ w
    maximises Σ_t (g_tᵀ d)^(1-α) / (1-α) (Σ_t log(g_tᵀ d) at α = 1) over a ball; its weights are
    the positive solution of

        (G Gᵀ) w = w^(-1/α)     (elementwise),

    solved exactly on the device for all K trials (`_nash.solve_power_equations`, the
    solver Nash-MTL uses with p = 1/α: Newton with a line search on a strictly convex
    objective, relative residual 1e-10, at most 100 iterations, one host sync per 10). The
    paper, LibMTL and torchjd call ``scipy.optimize.least_squares`` on the host (which stops
    early on badly scaled problems). α = 0 gives w = 1/T (the mean, as torchjd). As for
    Nash-MTL, a Pareto-stationary set has no solution: the solve uses M + 1e-10 diag(M);
    a task with a zero gradient gets weight 0; with one active task its gradient is used
    as is. No norm clipping (LibMTL and torchjd have none). Unlike Nash-MTL (α = 1), the
    weights depend on each task's scale. Reported weights: w normalised to Σ = T.
    """

    name = "fairgrad"
    config_cls = FairGradConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.alpha = self._per_slot(1.0, torch.float64)

    def _reset(self, slot: int, config: FairGradConfig) -> None:
        self.alpha[slot] = config.alpha

    def coefficients(self, grads: Tensor, inputs: StepInputs) -> Tensor:
        active = inputs.scale > 0
        mean = (active.to(torch.float64) / active.sum(dim=1, keepdim=True).clamp_min(1)).to(
            self.alpha.dtype
        )
        plain = (self.alpha == 0) | ~inputs.occupied
        # free slots and α = 0 solve nothing: their power is a harmless 1
        power = torch.where(plain, 1.0, 1.0 / torch.where(plain, 1.0, self.alpha))
        w = solve_power_equations(gram64(grads), active & ~plain.unsqueeze(1), power)
        w = torch.where(plain.unsqueeze(1), mean, w)
        return one_active_task_unit(w, active).to(grads.dtype)
