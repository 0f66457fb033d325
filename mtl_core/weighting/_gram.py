"""Gram matrices of the task gradients and their eigen-decompositions, batched over K.

Shared by the gradient methods that work on ``G = J Jᵀ`` (UPGrad, DualProj, IMTL-G, GradVac,
Aligned-MTL): formed in float64 on the device, chunked over the parameters so memory stays
bounded; decomposed by a batched `torch.linalg.eigh` that never sees a non-finite matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: float64 elements per chunk when reducing over the parameter dimension P on the device.
_CHUNK_ELEMENTS = 1 << 24


def gram64(grads: Tensor, active: Tensor | None = None) -> Tensor:
    """``[K, T, T]`` Gram matrices ``G_st = ⟨g_s, g_t⟩`` of ``grads [K, T, P]``, in float64.

    Rows and columns of tasks outside ``active [K, T]`` (when given) are 0.
    """
    return cross_gram64(grads, grads, active)


def cross_gram64(left: Tensor, right: Tensor, active: Tensor | None = None) -> Tensor:
    """``[K, T, T]`` matrices ``A_st = ⟨l_s, r_t⟩`` of two ``[K, T, P]`` gradient sets, float64.

    With ``left`` and ``right`` from independent batches ``A`` is an unbiased estimate of the
    Gram matrix (MoDo, SDMGrad); not symmetric in general. Rows and columns of tasks outside
    ``active [K, T]`` (when given) are 0.
    """
    num_slots, num_tasks, _ = left.shape
    chunk = max(1, _CHUNK_ELEMENTS // max(1, num_slots * num_tasks))
    gram = left.new_zeros((num_slots, num_tasks, num_tasks), dtype=torch.float64)
    for part_l, part_r in zip(
        left.detach().split(chunk, dim=2), right.detach().split(chunk, dim=2), strict=True
    ):
        gram += part_l.to(torch.float64) @ part_r.to(torch.float64).transpose(1, 2)
    if active is not None:
        act = active.to(torch.float64)
        gram = gram * act.unsqueeze(-1) * act.unsqueeze(-2)
    return gram


def finite_rows(gram: Tensor) -> Tensor:
    """``[K]`` bool: the trials whose Gram matrix is finite."""
    return torch.isfinite(gram).flatten(1).all(dim=1)


def symmetric_eig(gram: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues ``[K, T]`` (ascending) and eigenvectors ``[K, T, T]`` of symmetric ``gram``.

    A non-finite matrix is replaced by the identity before the decomposition (LAPACK may
    raise on it) and its trial's eigenvalues come back NaN, so its result is NaN downstream.
    """
    finite = finite_rows(gram)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    values, vectors = torch.linalg.eigh(torch.where(finite[:, None, None], gram, eye))
    return torch.where(finite[:, None], values, torch.nan), vectors


def pinv_apply(gram: Tensor, rhs: Tensor) -> Tensor:
    """``G⁺ rhs`` for symmetric positive semi-definite ``gram [K, T, T]`` and ``rhs [K, T]``.

    The pseudo-inverse drops eigenvalues at or below ``T · eps · λ_max`` (float64 ``eps``; the
    cutoff of `torch.linalg.pinv`), so singular ``G`` (dependent or zero gradients) never
    raises. Non-finite trials give NaN.
    """
    values, vectors = symmetric_eig(gram)
    top = values.amax(dim=-1, keepdim=True)
    keep = values > gram.shape[-1] * torch.finfo(gram.dtype).eps * top
    inverse = torch.where(keep, 1.0 / torch.where(keep, values, 1.0), 0.0)
    inverse = torch.where(torch.isfinite(values), inverse, torch.nan)
    coords = (vectors.transpose(-1, -2) @ rhs.unsqueeze(-1)).squeeze(-1)
    return (vectors @ (inverse * coords).unsqueeze(-1)).squeeze(-1)
