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
