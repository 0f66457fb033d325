"""IMTL-G: impartial multi-task learning, gradient balance (Liu et al., ICLR 2021)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_core.weighting._base import GradientWeighting, StepInputs, StrategyConfig, normalise
from mtl_core.weighting._gram import gram64, pinv_apply
from mtl_core.weighting._registry import STRATEGIES

#: |Σ_t v_t| at or below this times Σ_t |v_t| counts as 0: no combination of Σ = 1 exists.
_SUM_TOL = 1e-10


class IMTLGConfig(StrategyConfig):
    """IMTL-G has no hyper-parameters."""


def impartial_coefficients(grads: Tensor, active: Tensor) -> Tensor:
    """``[K, T]`` IMTL-G coefficients α (Σ α = 1) of ``grads [K, T, P]`` over the ``active``
    tasks: α = v / Σ v, v = G⁺ n (see `IMTLG`); 0 for inactive tasks and where Σ v vanishes,
    NaN for a trial with non-finite gradients. Shared by ``imtl_g`` and the hybrid ``imtl``."""
    gram = gram64(grads, active)
    norms = gram.diagonal(dim1=-2, dim2=-1).clamp_min(0.0).sqrt()
    # scale-free: G / tr G and n / sqrt(tr G) give the same α
    trace = (norms * norms).sum(-1, keepdim=True)
    safe = torch.where(trace > 0, trace, torch.ones_like(trace))
    v = pinv_apply(gram / safe.unsqueeze(-1), norms / safe.sqrt())
    v = torch.where(active, v, 0.0)
    total = v.sum(-1, keepdim=True)
    usable = total.abs() > _SUM_TOL * v.abs().sum(-1, keepdim=True)
    alpha = torch.where(usable, v / torch.where(usable, total, 1.0), 0.0)
    alpha = torch.where(total.isnan(), torch.nan, alpha)
    single = active.sum(-1, keepdim=True) == 1
    return torch.where(single, active.to(alpha.dtype), alpha).to(grads.dtype)


@STRATEGIES.register("imtl_g")
class IMTLG(GradientWeighting[IMTLGConfig]):
    """The combination of the task gradients with equal projections on every unit gradient.

    Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021 (IMTL-G). With g_t the
    gradient of scale_t · L_t on the shared parameters and u_t = g_t / ‖g_t‖, the paper asks
    for d = Σ_t α_t g_t, Σ_t α_t = 1, with ⟨d, u_t⟩ equal for every task, and gives, with
    D = (g_1 - g_t)_{t >= 2} and U = (u_1 - u_t)_{t >= 2},

        α_{2:} = g_1 Uᵀ (D Uᵀ)⁻¹,   α_1 = 1 - Σ_{t >= 2} α_t.

    Written on the Gram matrix G = J Jᵀ (float64, on the device) this is

        α = v / Σ_t v_t,   v = G⁺ n,   n_t = ‖g_t‖,

    since J Jᵀ v = n gives ⟨d, u_t⟩ = 1 / Σ v for every t: the same α whenever the active
    gradients are linearly independent (then D Uᵀ is invertible and the conditions have one
    solution). When they are not (duplicates, opposite pairs, more tasks than parameters) the
    paper's (D Uᵀ)⁻¹ does not exist; the pseudo-inverse G⁺ (eigenvalues below T · eps · λ_max
    of the batched `eigh` dropped; Quinton & Rey's generalisation, 2024) gives the least-squares
    answer and never raises. No host sync.

    Same maths as torchjd's `IMTLG`; LibMTL's `IMTL` (``IMTL-G`` part) solves the paper's
    system with ``torch.inverse`` and fails on a singular one. torchjd returns zero weights when
    |Σ v| < 1e-12 (absolute, so scale-dependent); here when |Σ v| <= 1e-10 Σ |v| (the update
    is then 0). Inactive tasks (zero rows) get α = 0, one active task its own gradient.
    α may be negative with three or more tasks (and Σ v < 0 makes every ⟨d, u_t⟩ negative: the
    paper's normalisation, kept as in torchjd). Reported weights: |α| normalised to Σ = T
    over the active tasks (the signs are in the update).
    """

    name = "imtl_g"
    config_cls = IMTLGConfig

    def coefficients(self, grads: Tensor, inputs: StepInputs) -> Tensor:
        return impartial_coefficients(grads, inputs.scale > 0)

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        coeff = self.coefficients(grads, inputs)
        combined = torch.einsum("kt,ktp->kp", coeff, grads)
        return combined, normalise(coeff.abs(), inputs.scale > 0)
