"""Projections onto the dual cone of the task gradients, batched over any leading dimensions.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization" (2024), Proposition 1: with
``J`` the ``[T, P]`` matrix of task gradients and ``G = J Jᵀ`` its Gram matrix, the projection of
``Jᵀ u`` onto the dual cone ``{d: J d >= 0}`` is ``Jᵀ v`` with

    ``v = argmin_{v >= u} vᵀ G v``.

`dual_cone_weights` solves that ``T x T`` problem exactly for many ``u`` and many ``G`` at once,
on the device, in float64, by block principal pivoting (Júdice & Pires, Computers & OR 1994;
Portugal, Júdice & Vicente, Math. Comp. 1994) with Murty's single pivot as the finite fallback.
No ``T x T`` problem ever reaches the host.

The Gram matrices come from `_gram.gram64` (float64, on the device).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: KKT tolerance of `dual_cone_weights`, on the trace-normalised problem (``tr G = 1``).
KKT_TOL = 1e-12
#: Full exchanges allowed without fewer infeasibilities before Murty's single pivot is used.
_EXCHANGES = 3


def mean_preferences(active: Tensor) -> Tensor:
    """``[K, T]`` float64 preference vector: ``1 / n`` on the ``n`` active tasks, 0 elsewhere."""
    act = active.to(torch.float64)
    return act / act.sum(-1, keepdim=True).clamp_min(1.0)


def normalised_gram(gram: Tensor, reg_eps: float | Tensor) -> Tensor:
    """``G / tr G + reg_eps I`` (``reg_eps I`` alone where ``tr G = 0``), the regularised problem.

    Dividing by the trace makes the weights independent of the gradients' scale; the ridge
    makes the problem strictly convex (``G`` may be singular, or a little indefinite after
    rounding), so each solve below is a positive definite system.
    """
    trace = gram.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
    safe = torch.where(trace > 0, trace, torch.ones_like(trace))
    scaled = torch.where(trace > 0, gram / safe, torch.zeros_like(gram))
    ridge = torch.as_tensor(reg_eps, dtype=gram.dtype, device=gram.device)
    if ridge.dim() > 0:
        ridge = ridge[..., None, None]
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return scaled + ridge * eye


def dual_cone_weights(gram: Tensor, prefs: Tensor, max_iter: int | None = None) -> Tensor:
    """``v = argmin_{v >= u} vᵀ G v`` for every ``u`` of ``prefs [..., M, T]``, ``G [..., T, T]``.

    ``G`` must be symmetric positive definite (`normalised_gram`) and float64. With ``x = v - u``
    this is the linear complementarity problem ``x >= 0, y = G x + G u >= 0, xᵀ y = 0``
    (`solve_lcp`). The answer is ``u + x``: always ``>= u``, and where the KKT residual is met
    (``<= KKT_TOL`` on ``tr G ≈ 1``), optimal to it. Never raises: a non-finite ``G`` or ``u``
    gives a non-finite ``v``.

    Args:
        gram: ``[..., T, T]`` float64 positive definite matrices.
        prefs: ``[..., M, T]`` float64 lower bounds ``u``, ``M`` per matrix.
        max_iter: iteration cap (default ``10 T + 10``).

    Returns:
        ``[..., M, T]`` float64 weights ``v``.
    """
    g = gram.unsqueeze(-3).expand(*prefs.shape[:-1], gram.shape[-1], gram.shape[-1])
    q = (g @ prefs.unsqueeze(-1)).squeeze(-1)
    return prefs + solve_lcp(g, q, max_iter)


def solve_lcp(matrix: Tensor, q: Tensor, max_iter: int | None = None) -> Tensor:
    """``x >= 0`` with ``y = M x + q >= 0`` and ``xᵀ y = 0``, for ``M [..., T, T]``, ``q [..., T]``.

    ``M`` symmetric positive definite, float64 (then ``x`` minimises ``½ xᵀ M x + qᵀ x`` over
    ``x >= 0`` and is unique). Block principal pivoting: on the free set ``F`` solve
    ``M_FF x_F = -q_F`` (``x = 0`` elsewhere; Cholesky, `cholesky_ex`, which never raises),
    flip every index where ``x_F < 0`` or ``y_B < 0``; after ``3`` full exchanges that do not
    reduce the number of such indices, flip only the largest (Murty's rule, finite for a
    positive definite ``M``). A problem stops when its KKT residual is within ``KKT_TOL``
    (``x_F >= -KKT_TOL``, ``y_B >= -KKT_TOL``); a stopped problem is a fixed point, and the
    loop ends when every problem has stopped (one host sync per iteration to ask; in practice
    two or three iterations) or after ``max_iter`` iterations (default ``10 T + 10``). Returns
    ``max(x, 0)``. Non-finite input gives non-finite output.
    """
    num_tasks = matrix.shape[-1]
    if max_iter is None:
        max_iter = 10 * num_tasks + 10
    eye = torch.eye(num_tasks, dtype=matrix.dtype, device=matrix.device)
    free = torch.zeros_like(q, dtype=torch.bool)
    x = torch.zeros_like(q)
    best = torch.full(q.shape[:-1], num_tasks + 1, dtype=torch.long, device=q.device)
    patience = torch.full_like(best, _EXCHANGES)
    index = torch.arange(num_tasks, device=q.device)
    for _ in range(max_iter):
        pair = free.unsqueeze(-1) & free.unsqueeze(-2)
        system = torch.where(pair, matrix, eye)
        rhs = torch.where(free, -q, torch.zeros_like(q))
        factor, _ = torch.linalg.cholesky_ex(system)
        x = torch.where(free, torch.cholesky_solve(rhs.unsqueeze(-1), factor).squeeze(-1), 0.0)
        y = (matrix @ x.unsqueeze(-1)).squeeze(-1) + q
        bad = torch.where(free, x < -KKT_TOL, y < -KKT_TOL)
        count = bad.sum(-1)
        pending = count > 0
        if not bool(pending.any()):
            break
        fewer = count < best
        best = torch.where(fewer, count, best)
        patience = torch.where(fewer, _EXCHANGES, patience - (~fewer).long())
        single = (patience < 0).unsqueeze(-1)
        last = torch.where(bad, index, -1).amax(-1, keepdim=True)
        flip = torch.where(single, index == last, bad) & pending.unsqueeze(-1)
        free = free ^ flip
    return x.clamp_min(0.0)
