"""The bargaining equations of Nash-MTL and FairGrad, solved over a leading trial dimension K.

Both methods weight the task gradients by the positive solution ``w`` of

    ``M w = w^(-p)``     (elementwise power; ``M = G Gᵀ`` the Gram matrix of the task gradients)

with ``p = 1`` for Nash-MTL (Navon et al., ICML 2022) and ``p = 1/α`` for α-fair FairGrad (Ban &
Ji, ICML 2024). It is the stationarity condition of the strictly convex problem

    ``min_{w > 0} ½ wᵀ M w - Σ_t H(w_t)``,   ``H' = w^(-p)``   (``H = log`` at ``p = 1``),

which `solve_power_equations` solves by Newton's method with a backtracking line search on
that objective, on the device, all K trials at once (a batched ``T x T`` solve per iteration).

A solution exists exactly when the origin is not in the convex hull of the gradients: at a
Pareto-stationary set (two opposite gradients, a zero gradient) the weights grow without bound.
The solver therefore works on ``M + ρ diag(M)`` with ``ρ = 1e-10``: a positive definite matrix,
so a unique solution always exists. Where the origin is in the hull, the weights of the tasks
that block each other grow to about ``ρ^(-1/2) / ‖g_t‖``, their products ``g_tᵀ d`` of the
combined step ``d = Σ_t w_t g_t`` go to about 0, and the other tasks share what is left (``d`` is
0 when every task is blocked, e.g. rank one with both signs); elsewhere ``w`` moves by a
relative ``ρ w_t² M_tt`` at most. Tasks whose gradient is zero have no stake and get weight 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Relative ridge added to the Gram matrix's diagonal (see the module docstring).
RIDGE = 1e-10
#: Relative residual at which a trial's solve stops.
TOLERANCE = 1e-10
#: Newton iterations at most, and how many run between two checks of the stop test.
MAX_ITERATIONS = 100
CHECK_EVERY = 10
#: A trial whose weights moved by a relative amount below this over 10 iterations stops.
STALL = 1e-8
# Step lengths the line search tries, longest first.
_MAX_LOG_STEP = 30.0
_STEPS = (1.0, 0.5, 0.25, 0.125, 1 / 16, 1 / 64, 1 / 256, 1 / 1024, 1 / 4096, 0.0)


def solve_power_equations(gram: Tensor, active: Tensor, power: Tensor) -> Tensor:
    """The positive ``w`` of ``(M + ρ diag M) w = w^(-p)`` on the active tasks, ``[K, T]``.

    Solved in the variables ``β = w √diag(M)``, in which the matrix ``C = D M D + ρ I``
    (``D = diag(M)^(-1/2)``) has a unit diagonal and the equations read ``C β = c β^(-p)``,
    ``c_t = M_tt^((p-1)/2)`` (all 1 for Nash-MTL, which is invariant to each task's scale):
    started from ``β_t = c_t^(1/(1+p))`` (the solution for orthogonal gradients) rescaled
    along its ray to the best multiple, each iteration takes the Newton step
    ``Δ = -(C + diag(p c β^(-p-1)))⁻¹ (C β - c β^(-p))``, taken in the log-parametrisation
    ``β ← β exp(s Δ / β)`` (positive for any ``s``, Newton's step to second order) with the
    longest ``s`` of 1, ½, ¼, … that decreases the objective by at least ``1e-4`` of the
    predicted decrease (else, the decrease being below the objective's rounding, the point
    tried with the smallest relative residual), then the best multiple along the ray. A
    trial stops (its ``β`` no longer changes) once every active task meets

        ``|(C β)_t β_t^p / c_t - 1| <= 1e-10 + 8 u (|C| β)_t β_t^p / c_t``

    (``u`` float64's unit roundoff: the second term is the rounding of ``C β``, which only
    matters when large weights nearly cancel in ``(C β)_t``: task norms many orders apart at
    a small ``p``, where the weights of the best-served tasks are below what the Gram matrix
    resolves), or when its weights moved by less than a relative ``1e-8`` over the last 10
    iterations (at a Pareto-stationary set the ridge leaves the Newton system a condition
    number near ``1/ρ``, and the residual stalls near ``1e-6``), or after 100 iterations. The
    tests run every 10 iterations, one host sync each; the usual solve stops at the first.

    Args:
        gram: ``[K, T, T]`` float64 Gram matrices of the task gradients.
        active: ``[K, T]`` bool; inactive tasks and tasks with a zero gradient get 0.
        power: ``[K]`` the exponent ``p > 0``.

    Returns:
        ``[K, T]`` float64 weights; all-NaN rows where ``gram`` is not finite.
    """
    num_slots, num_tasks, _ = gram.shape
    finite = torch.isfinite(gram).flatten(1).all(dim=1)
    diag = torch.diagonal(gram, dim1=1, dim2=2)
    used = active & finite.unsqueeze(1) & (diag > 0)
    pair = used.unsqueeze(2) & used.unsqueeze(1)
    eye = torch.eye(num_tasks, dtype=gram.dtype, device=gram.device).expand_as(gram)
    inv_sqrt = torch.where(used, diag, 1.0).rsqrt()
    scaled = gram * inv_sqrt.unsqueeze(2) * inv_sqrt.unsqueeze(1)
    # unused tasks: an identity block with c = 1, solved by β = 1 and dropped at the end
    c_mat = torch.where(pair, scaled, 0.0) * (1 - eye) + eye * (1 + RIDGE)
    p = power.to(gram.dtype).unsqueeze(1)
    log_c = torch.where(used, (1 - p) * torch.log(inv_sqrt), 0.0)
    # c's common factor γ scales β by γ^(1/(1+p)): solve with max c = 1, scale back after
    top = log_c.masked_fill(~used, -math.inf).amax(dim=1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, 0.0)
    c = torch.where(used, torch.exp(log_c - top), 1.0)
    beta = _along_ray(c_mat, c ** (1 / (1 + p)), c, p)
    done = torch.zeros(num_slots, dtype=torch.bool, device=gram.device)
    for start in range(0, MAX_ITERATIONS, CHECK_EVERY):
        before = beta
        for _ in range(CHECK_EVERY):
            done = done | _converged(c_mat, beta, c, p)
            stepped = _along_ray(c_mat, _newton(c_mat, beta, c, p), c, p)
            beta = torch.where(done.unsqueeze(1), beta, stepped)
        # stalled: the residual is at what the conditioning allows (see the docstring)
        moved = torch.log(beta / before).abs().amax(dim=1)
        done = done | _converged(c_mat, beta, c, p) | (moved <= STALL)
        if start + CHECK_EVERY < MAX_ITERATIONS and bool(done.all()):
            break
    w = beta * torch.exp(top / (1 + p)) * inv_sqrt
    w = torch.where(used, w, 0.0)
    return torch.where(finite.unsqueeze(1), w, math.nan)


def _barrier(beta: Tensor, p: Tensor) -> Tensor:
    """``H(β)`` up to a constant: ``(β^(1-p) - 1) / (1 - p)``, ``log β`` at ``p = 1``."""
    a = 1 - p
    log_beta = torch.log(beta)
    near_one = a.abs() < 1e-8
    safe_a = torch.where(near_one, 1.0, a)
    return torch.where(
        near_one, log_beta * (1 + 0.5 * a * log_beta), torch.expm1(a * log_beta) / safe_a
    )


def _objective(c_mat: Tensor, beta: Tensor, c: Tensor, p: Tensor) -> Tensor:
    """``½ βᵀ C β - Σ_t c_t H(β_t)`` for ``beta [..., T]`` (``+inf`` where some β <= 0)."""
    quad = 0.5 * (beta * (c_mat @ beta.unsqueeze(-1)).squeeze(-1)).sum(-1)
    positive = (beta > 0).all(dim=-1)
    value = quad - (c * _barrier(torch.where(beta > 0, beta, 1.0), p)).sum(-1)
    return torch.where(positive, value, math.inf)


def _converged(c_mat: Tensor, beta: Tensor, c: Tensor, p: Tensor) -> Tensor:
    """``[K]`` the stop test of `solve_power_equations`."""
    ratio = beta**p / c
    lhs = (c_mat @ beta.unsqueeze(-1)).squeeze(-1) * ratio
    rounding = (c_mat.abs() @ beta.unsqueeze(-1)).squeeze(-1) * ratio
    unit = torch.finfo(beta.dtype).eps / 2
    return ((lhs - 1).abs() <= TOLERANCE + 8 * unit * rounding).all(dim=1)


def _newton(c_mat: Tensor, beta: Tensor, c: Tensor, p: Tensor) -> Tensor:
    """One safeguarded Newton step on the objective (see `solve_power_equations`)."""
    pull = c * beta ** (-p)
    grad = (c_mat @ beta.unsqueeze(-1)).squeeze(-1) - pull
    hess = c_mat + torch.diag_embed(p * pull / beta)
    delta, info = torch.linalg.solve_ex(hess, -grad.unsqueeze(-1))
    delta = torch.where((info == 0).unsqueeze(1), delta.squeeze(-1), 0.0)
    delta = torch.where(torch.isfinite(delta), delta, 0.0)
    steps = torch.tensor(_STEPS, dtype=beta.dtype, device=beta.device)
    # a step s along Δ moves β to β exp(s Δ / β): positive whatever s, and β + s Δ to first
    # order (to second order near the solution, where Δ / β is small: Newton's rate is kept)
    rel = (delta / beta).unsqueeze(1) * steps.reshape(1, -1, 1)
    trial = beta.unsqueeze(1) * torch.exp(rel.clamp(-_MAX_LOG_STEP, _MAX_LOG_STEP))  # [K, S, T]
    values = _objective(c_mat.unsqueeze(1), trial, c.unsqueeze(1), p.unsqueeze(1))
    current = values[:, -1:]  # step 0
    slope = (grad * delta).sum(dim=1, keepdim=True)  # <= 0: H is positive definite
    enough = (values <= current + 1e-4 * steps * slope) & (steps > 0)
    first = torch.argmax(enough.to(torch.int8), dim=1)  # the longest step that is enough
    # no step is enough once the decrease is below the objective's rounding (near the
    # solution): then the point with the smallest relative residual, which Newton shrinks
    lhs = (c_mat.unsqueeze(1) @ trial.unsqueeze(-1)).squeeze(-1) * trial ** p.unsqueeze(1)
    residual = (lhs / c.unsqueeze(1) - 1).abs().amax(dim=2)
    residual = torch.where(torch.isfinite(values), residual, math.inf)
    pick = torch.where(enough.any(dim=1), first, torch.argmin(residual, dim=1))
    return trial[torch.arange(beta.shape[0], device=beta.device), pick]


def _along_ray(c_mat: Tensor, beta: Tensor, c: Tensor, p: Tensor) -> Tensor:
    """``t β`` for the best ``t > 0``: ``t^(1+p) = Σ_t c_t β_t^(1-p) / βᵀ C β``."""
    quad = (beta * (c_mat @ beta.unsqueeze(-1)).squeeze(-1)).sum(-1, keepdim=True)
    pull = (c * beta ** (1 - p)).sum(-1, keepdim=True)
    scale = (pull / quad) ** (1 / (1 + p))
    ok = torch.isfinite(scale) & (scale > 0)
    return torch.where(ok, beta * torch.where(ok, scale, 1.0), beta)
