"""The small simplex solvers behind MGDA and CAGrad, over K trials' T x T problems."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

FloatArray = npt.NDArray[np.float64]


def min_norm_weights(
    gram: Tensor, active: Tensor, max_iter: Tensor, tol: float = 1e-6, max_iter_host: int = 250
) -> Tensor:
    """Batched min-norm point ``[K, T]`` of ``[K, T, T]`` Gram matrices.

    Two tasks: the closed form of `mtl_core.weighting._gradients.min_norm_two_tasks`. More:
    Frank–Wolfe as in `frank_wolfe_min_norm` (uniform start over the active tasks, exact line
    search, stop when the L1 change < ``tol`` or after ``max_iter[k]`` iterations), run on
    all K at once with a per-trial "done" flag instead of an early ``break``; the loop runs
    ``max_iter_host`` (>= every ``max_iter[k]``, known on the host: no sync) times.
    """
    dtype = gram.dtype
    if gram.shape[-1] == 2:
        v11, v12, v22 = gram[:, 0, 0], gram[:, 0, 1], gram[:, 1, 1]
        denom = v11 + v22 - 2 * v12
        safe = torch.where(denom > 0, denom, torch.ones_like(denom))
        gamma = torch.where(denom > 0, (v22 - v12) / safe, torch.full_like(denom, 0.5))
        gamma = gamma.clamp(0.0, 1.0)
        both = torch.stack([gamma, 1 - gamma], dim=-1)
        return torch.where(active.all(dim=-1, keepdim=True), both, active.to(dtype))
    gram = gram.double()
    n_active = active.sum(dim=-1, keepdim=True)
    a = active.double() / n_active.clamp_min(1).double()
    done = n_active.squeeze(-1) <= 1
    big = torch.finfo(torch.float64).max
    limit = max_iter_host
    for it in range(limit):
        ga = torch.einsum("kij,kj->ki", gram, a)
        t = torch.where(active, ga, torch.full_like(ga, big)).argmin(dim=-1)
        v11 = (a * ga).sum(dim=-1)
        v12 = ga.gather(-1, t.unsqueeze(-1)).squeeze(-1)
        v22 = gram.diagonal(dim1=-2, dim2=-1).gather(-1, t.unsqueeze(-1)).squeeze(-1)
        denom = v11 + v22 - 2 * v12
        safe = torch.where(denom > 0, denom, torch.ones_like(denom))
        gamma = torch.where(denom > 0, ((v22 - v12) / safe).clamp(0.0, 1.0), 0.5 + 0 * denom)
        new = gamma.unsqueeze(-1) * a
        new = new.scatter_add(-1, t.unsqueeze(-1), (1 - gamma).unsqueeze(-1))
        change = (new - a).abs().sum(dim=-1)
        step = ~done & (it < max_iter)
        a = torch.where(step.unsqueeze(-1), new, a)
        done = done | (step & (change < tol))
    single = n_active.squeeze(-1) == 1
    a = torch.where(single.unsqueeze(-1), active.double(), a)
    return a.to(dtype)


def project_simplex(v: FloatArray) -> FloatArray:
    """Euclidean projection onto the probability simplex (sort-based)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    k = np.arange(1, v.size + 1)
    rho = int(np.nonzero(u - css / k > 0)[0][-1])
    theta = css[rho] / (rho + 1)
    return np.asarray(np.maximum(v - theta, 0.0), dtype=np.float64)


def cagrad_dual(gram: FloatArray, c: float, steps: int = 200) -> FloatArray:
    """Solve CAGrad's dual ``min_{w ∈ Δ} g_wᵀ g0 + c ‖g0‖ ‖g_w‖`` on the Gram matrix.

    ``g0`` is the mean of the task gradients, ``g_w = Σ w_t g_t``. The problem is convex;
    projected gradient descent with backtracking on the simplex, on the Gram matrix scaled
    by ``‖g0‖²`` (the minimiser does not change, the step sizes become scale-free).

    Args:
        gram: ``T x T`` Gram matrix of the (active) task gradients, float64.
        c: the radius factor (CAGrad's ``c``).
        steps: iteration cap of the inner optimisation.
    """
    n = gram.shape[0]
    b = np.full(n, 1.0 / n)
    g0_sq = float(b @ gram @ b)
    if g0_sq <= 0:
        return b
    a = gram / g0_sq
    ab = a @ b
    eps = 1e-12

    def objective(w: FloatArray) -> float:
        return float(w @ ab + c * np.sqrt(max(float(w @ a @ w), 0.0) + eps))

    w = b.copy()
    f = objective(w)
    lr = 1.0
    for _ in range(steps):
        aw = a @ w
        grad = ab + c * aw / np.sqrt(max(float(w @ aw), 0.0) + eps)
        while True:
            cand = project_simplex(w - lr * grad)
            f_cand = objective(cand)
            if f_cand <= f - 1e-4 * float(grad @ (w - cand)) or lr < 1e-10:
                break
            lr *= 0.5
        if float(np.abs(cand - w).sum()) < 1e-10:
            break
        w, f = cand, f_cand
        lr *= 2.0
    return w


def cagrad_coefficients(
    grads: Tensor, active: Tensor, c: list[float], rescale: list[int]
) -> Tensor:
    """``[K, T]`` coefficients of CAGrad's update on the rows of ``[K, T, P]`` ``grads``."""
    gram = grads @ grads.transpose(-1, -2)
    host_gram = gram.double().cpu().numpy()
    host_active = active.cpu().numpy()
    coeffs = np.zeros(active.shape, dtype=np.float64)
    for k in range(grads.shape[0]):  # the T x T solve only; gradients stay batched
        mask = host_active[k]
        idx = np.flatnonzero(mask)
        if c[k] == 0:
            coeffs[k] = mask / max(idx.size, 1)
        elif idx.size == 1:
            coeffs[k, idx[0]] = 1.0
        elif idx.size > 1:
            g = host_gram[k][np.ix_(idx, idx)]
            w = cagrad_dual(g, c[k])
            b = np.full(idx.size, 1.0 / idx.size)
            g0_norm = math.sqrt(max(float(b @ g @ b), 0.0))
            gw_norm = math.sqrt(max(float(w @ g @ w), 0.0))
            lam = c[k] * g0_norm / (gw_norm + 1e-8)
            divisor = {0: 1.0, 1: 1.0 + c[k] ** 2, 2: 1.0 + c[k]}[rescale[k]]
            coeffs[k, idx] = (b + lam * w) / divisor
    return torch.from_numpy(coeffs).to(grads.device, grads.dtype)
