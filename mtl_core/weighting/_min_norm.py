"""The min-norm point of the convex hull of the task gradients, batched over K trials.

MGDA's problem (Sener & Koltun, NeurIPS 2018), exact to a stated tolerance (not "good enough
after N steps"): the closed form for two tasks, Wolfe's min-norm-point algorithm (Wolfe, Math.
Programming 1976) otherwise. CAGrad's dual (`_solvers`) solves its min-norm problems here too.

Conventions: ``active [K, T]`` bool; inactive tasks get weight 0, a single active task gets
weight 1, no active task gives all zeros. A non-finite value anywhere in a trial's input makes
that trial's row all-NaN (the caller marks the trial diverged); the other rows are unaffected
and nothing raises. The host only ever sees the ``T x T`` problems, moved in one transfer for
all K.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Duality gaps below this times ‖d‖ max_t ‖g_t‖ are rounding noise.
_GAP_FLOOR = 1e-14


def min_norm_weights(gram: Tensor, active: Tensor, tol: float = 1e-10) -> Tensor:
    """Min-norm point ``alpha [K, T]`` of the convex hull of the active task gradients.

    ``alpha = argmin_{alpha ∈ Δ(active)} alphaᵀ G alpha`` (MGDA; Sener & Koltun, NeurIPS 2018).
    At the optimum ``d = Σ_t alpha_t g_t`` satisfies ``⟨g_t, d⟩ ≥ ‖d‖²`` for every active
    ``t``, with equality where ``alpha_t > 0``: no active task is hurt by a step along ``-d``.

    Two tasks: the closed form ``gamma = clip((G22 - G12) / (G11 + G22 - 2 G12), 0, 1)``,
    computed on the device without a host sync. More: Wolfe's min-norm-point algorithm in
    float64 on the host (one transfer for all K), stopped on the duality gap
    ``‖d‖² - min_t ⟨g_t, d⟩ ≤ tol · ‖d‖²`` (or ``≤ 1e-14 ‖d‖ max_t ‖g_t‖``, rounding, when
    ``d ≈ 0``); it runs on points ``v_t`` rebuilt from ``G`` by its eigen-decomposition.
    Each inner step solves the affine min-norm problem on the current support exactly, so
    weights that are exactly 0 at the optimum come out exactly 0.

    Args:
        gram: ``[K, T, T]`` Gram matrices ``G = g gᵀ``, any float dtype and device.
        active: ``[K, T]`` bool, the tasks that take part.
        tol: relative duality gap at which Wolfe's algorithm stops.

    Returns:
        ``[K, T]`` weights in ``gram``'s dtype and device; all-NaN rows where ``gram`` is not
        finite.
    """
    if tol <= 0:
        raise ValueError(f"tol must be > 0, got {tol=}")
    finite = torch.isfinite(gram).flatten(1).all(dim=1, keepdim=True)
    if gram.shape[-1] <= 2:
        alpha = _min_norm_closed_form(gram, active)
    else:
        num_slots, num_tasks, _ = gram.shape
        # one transfer carries every trial's Gram matrix and mask
        packed = torch.cat([gram.detach().flatten(1), active.to(gram.dtype)], dim=1)
        flat = packed.to("cpu", torch.float64).numpy()
        host = flat[:, : num_tasks * num_tasks].reshape(num_slots, num_tasks, num_tasks)
        mask = flat[:, num_tasks * num_tasks :] > 0.5
        rows = [_min_norm_row(host[k], mask[k], tol) for k in range(host.shape[0])]
        solved = np.stack(rows) if rows else np.zeros(host.shape[:2])
        alpha = torch.from_numpy(solved).to(gram.device, gram.dtype)
    return torch.where(finite, alpha, torch.full_like(alpha, math.nan))


def _min_norm_closed_form(gram: Tensor, active: Tensor) -> Tensor:
    """Sener & Koltun's Algorithm 1 for ``T <= 2``, on the device."""
    if gram.shape[-1] == 1:
        return active.to(gram.dtype)
    v11, v12, v22 = gram[:, 0, 0], gram[:, 0, 1], gram[:, 1, 1]
    denom = v11 + v22 - 2 * v12
    ok = denom > 0
    gamma = torch.where(ok, (v22 - v12) / torch.where(ok, denom, 1.0), 0.5).clamp(0.0, 1.0)
    both = torch.stack([gamma, 1 - gamma], dim=-1)
    return torch.where(active.all(dim=-1, keepdim=True), both, active.to(gram.dtype))


def _min_norm_row(gram: FloatArray, active: BoolArray, tol: float) -> FloatArray:
    """One trial's min-norm weights ``[T]`` (NaN when ``gram`` is not finite)."""
    alpha = np.zeros(gram.shape[0])
    if not np.all(np.isfinite(gram)):
        return np.full(gram.shape[0], math.nan)
    idx = np.flatnonzero(active)
    if idx.size == 1:
        alpha[idx] = 1.0
    elif idx.size > 1:
        alpha[idx] = wolfe_min_norm(_points_of_gram(gram[np.ix_(idx, idx)]), tol)
    return alpha


def _points_of_gram(gram: FloatArray) -> FloatArray:
    """Rows ``v_t`` with ``⟨v_s, v_t⟩ = G_st``, from the eigen-decomposition of ``G``."""
    vals, vecs = np.linalg.eigh((gram + gram.T) / 2)
    return np.asarray(vecs * np.sqrt(np.maximum(vals, 0.0)), dtype=np.float64)


def wolfe_min_norm(
    points: FloatArray, tol: float = 1e-10, start: list[int] | None = None
) -> FloatArray:
    """Wolfe's min-norm-point algorithm on the rows of ``points [n, m]`` (float64, finite).

    Major step: add the vertex ``j = argmin_t ⟨v_t, x⟩`` unless the duality gap
    ``‖x‖² - ⟨v_j, x⟩`` is within ``tol · ‖x‖²`` (or rounding, ``1e-14 ‖x‖ max_t ‖v_t‖``).
    Minor steps: move to the affine min-norm point of the support, dropping vertices whose
    weight would turn negative. Working on the points, not their Gram matrix, keeps the
    digits of nearly cancelling combinations. All-zero points give the uniform weights.

    ``start``, a guess of the optimal support, is used when its affine min-norm point has
    positive weights (a valid starting corral); otherwise the solve starts from one vertex.
    """
    n = points.shape[0]
    sq_norms = np.einsum("ij,ij->i", points, points)
    scale = float(np.max(sq_norms))
    if scale <= 0:
        return np.full(n, 1.0 / n)
    v = points / math.sqrt(scale)
    support = [int(np.argmin(sq_norms))]
    lam = np.ones(1)
    if start:
        mu = _affine_min_norm(v[start])
        if np.all(mu > 0):
            support, lam = list(start), mu
    for _ in range(20 * n + 20):
        x = lam @ v[support]
        sq = float(x @ x)
        vx = v @ x
        j = int(np.argmin(vx))
        gap = sq - float(vx[j])
        if gap <= tol * sq or gap <= _GAP_FLOOR * math.sqrt(sq) or j in support:
            break
        support.append(j)
        lam = np.append(lam, 0.0)
        for _ in range(len(support)):
            mu = _affine_min_norm(v[support])
            if np.all(mu > 0):
                lam = mu
                break
            neg = mu <= 0
            ratios = lam[neg] / (lam[neg] - mu[neg])
            theta = float(np.min(ratios))
            lam = lam + theta * (mu - lam)
            drop = int(np.flatnonzero(neg)[np.argmin(ratios)])
            keep = [i for i in range(len(support)) if i != drop and lam[i] > 0]
            support = [support[i] for i in keep]
            lam = lam[keep] / lam[keep].sum()
    alpha = np.zeros(n)
    alpha[support] = np.maximum(lam, 0.0)
    return alpha / alpha.sum()


def _affine_min_norm(points: FloatArray) -> FloatArray:
    """``argmin_{Σ mu = 1} ‖Σ mu_i v_i‖``, as least squares on the points themselves.

    With ``mu_0 = 1 - Σ z`` the point is ``v_0 + Σ z_i (v_i - v_0)``: one least-squares solve
    whose conditioning is that of the points, not its square (as with the Gram matrix).
    """
    if points.shape[0] == 1:
        return np.ones(1)
    base = points[0]
    z = np.linalg.lstsq((points[1:] - base).T, -base, rcond=None)[0]
    return np.asarray(np.concatenate([[1.0 - z.sum()], z]), dtype=np.float64)
