"""Nash-MTL: multi-task learning as a bargaining game (Navon et al., ICML 2022)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.weighting._base import GradientWeighting, StepInputs, StrategyConfig
from mtl_core.weighting._gram import gram64
from mtl_core.weighting._nash import solve_power_equations
from mtl_core.weighting._registry import STRATEGIES


class NashMTLConfig(StrategyConfig):
    """Nash-MTL's hyper-parameters.

    Args:
        update_weights_every: solve for new weights every this many steps and reuse the
            last ones in between (the paper's cheaper variants, e.g. 50 or 100).
        max_norm: the shared update's norm is clipped to this (0: no clipping), as the
            paper's code and LibMTL clip the shared parameters' gradient.
    """

    update_weights_every: int = Field(1, ge=1, description="Steps between two solves.")
    max_norm: float = Field(1.0, ge=0, description="Clip of the shared update's norm (0: off).")


@STRATEGIES.register("nash_mtl")
class NashMTL(GradientWeighting[NashMTLConfig]):
    """Weight the task gradients by the Nash bargaining solution between the tasks.

    Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya, "Multi-Task Learning as a
    Bargaining Game", ICML 2022. With G the ``[T, P]`` gradients of scale_t · L_t on the shared
    parameters, the update d = Gᵀ α maximises Σ_t log(g_tᵀ d) over a ball; its weights are
    the positive solution of

        (G Gᵀ) α = 1 / α     (elementwise),  so  g_tᵀ d = 1 / α_t  and  ‖d‖² = T,

    solved exactly on the device for all K trials (`_nash.solve_power_equations`: Newton's
    method with a line search on the strictly convex ½ αᵀ M α - Σ log α, stopped at a
    relative residual of 1e-10, at most 100 iterations, one host sync per 10). The paper and
    LibMTL run 20 convex-concave iterations of cvxpy on the host instead. Then d is clipped
    to ``max_norm`` (1 by default as in the paper's code, LibMTL and torchjd; since ‖d‖ = √T
    it always applies for T >= 2 then). ``update_weights_every`` reuses the last α in between
    (also re-solved when the set of active tasks changes). The paper's ``optim_niter`` has no
    counterpart: the solve runs to its tolerance.

    α scales as 1 / ‖g_t‖ (d has a fixed norm), so with large gradients the weights look
    tiny and with small ones huge; both are the method. At a Pareto-stationary set (the
    origin in the hull of the gradients) no solution exists and α grows without bound: the
    solve uses M + 1e-10 diag(M): the tasks that block each other get g_tᵀ d ≈ 0 and the
    others share the rest (d = 0 when all are blocked). A task with a zero
    gradient gets weight 0. With one active task its gradient is used as is. Reported
    weights: α normalised to Σ = T over the active tasks.
    """

    name = "nash_mtl"
    config_cls = NashMTLConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.max_norm = self._per_slot(1.0, torch.float64)
        self.every = [1] * num_slots
        self.steps = [0] * num_slots  # host-side counters: deciding a solve needs no sync
        self.alpha = self._zeros(torch.float64)
        self.solved_for = self._zeros(torch.bool)

    def _reset(self, slot: int, config: NashMTLConfig) -> None:
        self.max_norm[slot] = config.max_norm
        self.every[slot] = config.update_weights_every
        self.steps[slot] = 0
        self.alpha[slot] = 0
        self.solved_for[slot] = False

    def coefficients(self, grads: Tensor, inputs: StepInputs) -> Tensor:
        active = inputs.scale > 0
        gram = gram64(grads)
        live = [ctx is not None for ctx in self.contexts]
        due = [
            on and step % every == 0
            for on, step, every in zip(live, self.steps, self.every, strict=True)
        ]
        due_dev = torch.tensor(due, device=grads.device)
        need = inputs.occupied & (due_dev | (active != self.solved_for).any(dim=1))
        if all(d or not on for d, on in zip(due, live, strict=True)) or bool(need.any()):
            fresh = solve_power_equations(gram, active, torch.ones_like(self.max_norm))
            self.alpha = torch.where(need.unsqueeze(1), fresh, self.alpha)
            self.solved_for = torch.where(need.unsqueeze(1), active, self.solved_for)
        self.steps = [step + on for step, on in zip(self.steps, live, strict=True)]
        alpha = torch.where(active, self.alpha, 0.0)
        norm = (alpha * (gram @ alpha.unsqueeze(-1)).squeeze(-1)).sum(1).clamp_min(0).sqrt()
        clip = (self.max_norm > 0) & (norm > self.max_norm)
        alpha = (
            alpha * torch.where(clip, self.max_norm / torch.where(clip, norm, 1.0), 1.0)[:, None]
        )
        single = active.sum(dim=1, keepdim=True) == 1
        return torch.where(single, active.to(alpha.dtype), alpha).to(grads.dtype)
