"""PCD: priority-constrained descent (TMLR 2026, arXiv 2606.29521)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.weighting._base import GradientWeighting, StepInputs, StrategyConfig
from mtl_core.weighting._dual_cone import solve_lcp
from mtl_core.weighting._gram import gram64
from mtl_core.weighting._registry import STRATEGIES

#: Ridge on the constraints' Gram matrix, relative to its largest diagonal entry.
_RIDGE = 1e-10
#: A constraint still violated by more than this (relative to the largest diagonal entry)
#: after the solve cannot be met together with the others: the constraints are dropped.
_INFEASIBLE = 1e-6


class PCDConfig(StrategyConfig):
    """PCD's hyper-parameters.

    Args:
        tau: the fraction of its normalised first-order progress each secondary task is
            guaranteed.
        beta: decay of the moving average of the squared gradient norms.
        eps: added to that average before its inverse square root.
    """

    tau: float = Field(0.02, ge=0, le=1, description="Guaranteed fraction of progress.")
    beta: float = Field(0.999, ge=0, lt=1, description="Decay of the squared-norm average.")
    eps: float = Field(1e-8, ge=0, description="Added to the average before the inverse root.")


@STRATEGIES.register("pcd")
class PCD(GradientWeighting[PCDConfig]):
    """Follow the primary task's gradient, guaranteeing every other task some progress.

        "Not All Objectives Are Born Equal: Priority-Constrained Descent for Hierarchical
        Multi-Objective Optimization", TMLR 2026 (arXiv 2606.29521; the authors' code is
        github.com/DaraVaram/priority-constrained-descent). The primary task
        is the first active one (task 0 unless it is inactive this step). With g_t the gradient of
        scale_t · L_t on the shared parameters, v_t the bias-corrected moving average (decay
        ``beta``) of ‖g_t‖², s_t = 1 / sqrt(v_t + eps) and g̃_t = s_t g_t:

            d̃ = argmin_d ½ ‖d - g̃_p‖²   s.t.   ⟨g̃_j, d⟩ >= tau ‖g̃_j‖² for every active j != p,
            d = d̃ · ‖g_p‖ / ‖d̃‖.

        d̃ = g̃_p + Σ_j μ_j g̃_j with μ >= 0 the constraints' multipliers, the solution of the
        linear complementarity problem μ >= 0, (G̃ μ - b) >= 0, μᵀ (G̃ μ - b) = 0,
        b_j = tau G̃_jj - G̃_jp, on the float64 Gram matrix G̃ of the g̃_t, solved for all K at once
        on the device (`_dual_cone.solve_lcp`: block principal pivoting, KKT residual <= 1e-12,
        one host sync per iteration to stop) with a ridge of 1e-10 · max_t G̃_tt, which keeps it
        well posed when secondary gradients are dependent (then re-solved unridged on the support
    found, where that factorisation succeeds). When the constraints cannot hold
        together (e.g. two opposite secondary gradients) the ridged solve leaves one violated by
        more than 1e-6 · max_t G̃_tt, and they are dropped: d = g_p. d = 0 when g_p = 0 or when
        ‖d̃‖² <= 10 eps_dtype (Σ_t |w_t| ‖g̃_t‖)², zero up to rounding (eps of the gradients'
        dtype).

        Defaults as torchjd's `PCD` (tau 0.02, beta 0.999, eps 1e-8), which solves the same
        problem by Goldfarb & Idnani's dual active set on the host (same d̃; its multipliers may
        differ when secondary gradients are dependent, as μ is not unique then); LibMTL has no
        PCD. torchjd's primary is row 0 even when it is zero (its update is then 0); here the
        first active task leads. The moving average is per trial and per task, updated at every
        step of an occupied slot (0 for an inactive task, as torchjd does for a zero row), and
        restarts with the slot. Reported weights: the coefficients (1 on the primary, μ_j on the
        others, times s_t ‖g_p‖ / ‖d̃‖, all >= 0) normalised to Σ = T over the active tasks.
    """

    name = "pcd"
    config_cls = PCDConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.tau = self._per_slot(0.02, torch.float64)
        self.beta = self._per_slot(0.999, torch.float64)
        self.eps = self._per_slot(1e-8, torch.float64)
        self.sq_norm_ema = self._zeros(torch.float64)
        self.steps = torch.zeros(num_slots, dtype=torch.long, device=device)

    def _reset(self, slot: int, config: PCDConfig) -> None:
        self.tau[slot] = config.tau
        self.beta[slot] = config.beta
        self.eps[slot] = config.eps
        self.sq_norm_ema[slot] = 0.0
        self.steps[slot] = 0

    def _scales(self, sq_norms: Tensor, occupied: Tensor) -> Tensor:
        """Update the moving average of the occupied slots; ``[K, T]`` scales ``s_t``."""
        beta = self.beta.unsqueeze(-1)
        ema = torch.where(
            occupied.unsqueeze(-1),
            beta * self.sq_norm_ema + (1 - beta) * sq_norms,
            self.sq_norm_ema,
        )
        steps = self.steps + occupied.long()
        self.sq_norm_ema, self.steps = ema, steps
        correction = 1.0 - beta ** steps.clamp_min(1).unsqueeze(-1).to(beta.dtype)
        denominators = (ema / correction + self.eps.unsqueeze(-1)).sqrt()
        positive = denominators > 0
        return torch.where(positive, 1.0 / torch.where(positive, denominators, 1.0), 0.0)

    def coefficients(self, grads: Tensor, inputs: StepInputs) -> Tensor:
        active = inputs.scale > 0
        num_tasks = grads.shape[1]
        gram = gram64(grads, active)
        sq_norms = gram.diagonal(dim1=-2, dim2=-1)
        s = self._scales(sq_norms, inputs.occupied.to(grads.device))
        scaled = gram * s.unsqueeze(-1) * s.unsqueeze(-2)
        diag = scaled.diagonal(dim1=-2, dim2=-1)
        # the primary: the first active task
        index = torch.arange(num_tasks, device=grads.device)
        primary = torch.where(active, index, num_tasks).amin(-1, keepdim=True)
        is_primary = index == primary
        secondary = active & ~is_primary
        top = diag.amax(-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        col_p = scaled.gather(-1, primary.clamp_max(num_tasks - 1).unsqueeze(-1).expand_as(scaled))
        b = self.tau.unsqueeze(-1) * diag - col_p[..., 0]
        pair = secondary.unsqueeze(-1) & secondary.unsqueeze(-2)
        eye = torch.eye(num_tasks, dtype=gram.dtype, device=gram.device)
        system = torch.where(pair, scaled, eye) + (_RIDGE * top).unsqueeze(-1) * eye
        mu = solve_lcp(system, torch.where(secondary, -b, 0.0))
        mu = _polish(scaled, b, torch.where(secondary, mu, 0.0), eye)
        slack = (scaled @ mu.unsqueeze(-1)).squeeze(-1) - b
        violated = (secondary & (slack < -_INFEASIBLE * top)).any(-1, keepdim=True)
        mu = torch.where(violated, 0.0, mu)
        w = is_primary.to(gram.dtype) + mu
        direction_sq = (w.unsqueeze(-2) @ scaled @ w.unsqueeze(-1)).squeeze(-1)
        magnitude = (w.abs() * diag.clamp_min(0.0).sqrt()).sum(-1, keepdim=True) ** 2
        precision = 10.0 * torch.finfo(grads.dtype).eps
        sq_p = (sq_norms * is_primary).sum(-1, keepdim=True)
        ok = (sq_p > 0) & (direction_sq > precision * magnitude)
        rescale = torch.where(ok, sq_p / torch.where(ok, direction_sq, 1.0), 0.0).sqrt()
        coeff = w * s * rescale
        coeff = torch.where(torch.isfinite(gram).flatten(1).all(-1, keepdim=True), coeff, torch.nan)
        single = active.sum(-1, keepdim=True) == 1
        coeff = torch.where(single, active.to(coeff.dtype), coeff)
        return torch.where(active, coeff, 0.0).to(grads.dtype)


def _polish(gram: Tensor, b: Tensor, mu: Tensor, eye: Tensor) -> Tensor:
    """``μ`` re-solved without the ridge on its support, where that is well posed.

    The ridge moves μ by about ridge / λ_min of the support's Gram matrix, a lot when the
    secondary gradients are nearly parallel; on the support found, ``G_FF μ_F = b_F`` is
    solved again unridged and kept where the factorisation succeeds and μ_F stays > 0.
    """
    support = mu > 0
    pair = support.unsqueeze(-1) & support.unsqueeze(-2)
    factor, info = torch.linalg.cholesky_ex(torch.where(pair, gram, eye))
    rhs = torch.where(support, b, 0.0).unsqueeze(-1)
    exact = torch.where(support, torch.cholesky_solve(rhs, factor).squeeze(-1), 0.0)
    good = (info == 0).unsqueeze(-1) & torch.where(support, exact > 0, True).all(-1, keepdim=True)
    return torch.where(good & torch.isfinite(exact).all(-1, keepdim=True), exact, mu)
