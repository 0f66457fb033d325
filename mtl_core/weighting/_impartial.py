"""IMTL-G's closed form (Liu et al., ICLR 2021), batched over K trials, from the Gram matrix."""

from __future__ import annotations

import torch
from torch import Tensor


def impartial_coefficients(gram: Tensor, active: Tensor) -> Tensor:
    """``[K, T]`` coefficients α of IMTL-G on task gradients with Gram matrix ``gram [K, T, T]``.

    The update d = Σ_t α_t g_t, Σ_t α_t = 1, has the same projection on every active task's
    unit gradient u_t = g_t / ‖g_t‖. The paper's closed form, α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹ with
    D and U the differences g_1 - g_t and u_1 - u_t, is the same as α = v / Σ_t v_t with
    v = G⁺ n, n_t = ‖g_t‖ (then G v = n, i.e. g_tᵀ d ∝ ‖g_t‖); the pseudo-inverse also
    covers linearly dependent gradients (identical, zero). Inactive tasks (zero rows) get 0;
    a row whose Σ v vanishes relative to Σ |v| gets α = 0. Solved in float64 on the device
    (an eigendecomposition of the T x T matrices; no host sync). α may be negative for
    T >= 3: the closed form does not constrain it.
    """
    g = torch.where(active.unsqueeze(-1) & active.unsqueeze(-2), gram, torch.zeros_like(gram))
    g = g.double()
    norms = torch.diagonal(g, dim1=-2, dim2=-1).clamp_min(0).sqrt()
    v = (torch.linalg.pinv(g, hermitian=True) @ norms.unsqueeze(-1)).squeeze(-1)
    v = torch.where(active, v, torch.zeros_like(v))
    total = v.sum(dim=-1, keepdim=True)
    usable = total.abs() > 1e-12 * v.abs().sum(dim=-1, keepdim=True)
    alpha = v / torch.where(usable, total, torch.ones_like(total))
    return torch.where(usable, alpha, torch.zeros_like(alpha)).to(gram.dtype)
