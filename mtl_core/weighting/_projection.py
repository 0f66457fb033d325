"""Batched Euclidean projection onto the probability simplex of the active tasks (on device)."""

from __future__ import annotations

import torch
from torch import Tensor


def project_active_simplex(values: Tensor, active: Tensor) -> Tensor:
    """Row-wise projection of ``values [K, T]`` onto {w >= 0, Σ_active w = 1, w_inactive = 0}.

    The sort-based method of Duchi, Shalev-Shwartz, Singer & Chandra (ICML 2008), on the
    active entries only: with u the active values sorted in decreasing order and
    r = max{j : u_j - (Σ_{i<=j} u_i - 1) / j > 0}, w = max(v - θ, 0), θ = (Σ_{i<=r} u_i - 1) / r.
    A row without active tasks gets 0. No host sync.
    """
    low = torch.finfo(values.dtype).min
    masked = torch.where(active, values, torch.full_like(values, low))
    ordered, _ = torch.sort(masked, dim=-1, descending=True)
    valid = torch.sort(active.to(torch.int8), dim=-1, descending=True)[0].bool()
    cumulative = torch.cumsum(torch.where(valid, ordered, torch.zeros_like(ordered)), dim=-1) - 1
    index = torch.arange(1, values.shape[-1] + 1, device=values.device, dtype=values.dtype)
    support = valid & (ordered - cumulative / index > 0)
    count = support.sum(dim=-1, keepdim=True)
    last = (count - 1).clamp_min(0)
    theta = cumulative.gather(-1, last) / count.clamp_min(1).to(values.dtype)
    projected = (values - theta).clamp_min(0)
    return torch.where(active & (count > 0), projected, torch.zeros_like(values))


def restrict_to_active(weights: Tensor, active: Tensor) -> Tensor:
    """Row-wise: ``weights [K, T]`` on the active tasks, rescaled to sum to 1 there.

    A method's carried simplex weights after a task turns inactive (or active again): the
    active part, renormalised, or uniform over the active tasks where that part is all 0.
    """
    kept = torch.where(active, weights, torch.zeros_like(weights))
    total = kept.sum(dim=-1, keepdim=True)
    uniform = active.to(weights.dtype) / active.sum(dim=-1, keepdim=True).clamp_min(1)
    return torch.where(total > 0, kept / torch.where(total > 0, total, 1.0), uniform)


def simplex_weight_step(
    lam: Tensor, matrix: Tensor, gamma: Tensor, rho: Tensor, active: Tensor
) -> Tensor:
    """One projected gradient step of task weights: ``Π_Δ(λ - γ (A λ + ρ λ))``, row-wise.

    The stochastic-MGDA weight update (MoCo on its tracked Gram matrix, MoDo on the cross
    Gram matrix of two batches): ``lam [K, T]``, ``matrix [K, T, T]``, ``gamma`` and ``rho``
    ``[K]``; projected onto the simplex of the ``active [K, T]`` tasks.
    """
    step = (matrix @ lam.unsqueeze(-1)).squeeze(-1) + rho.unsqueeze(-1) * lam
    return project_active_simplex(lam - gamma.unsqueeze(-1) * step, active)
