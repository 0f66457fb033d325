"""Private helpers shared by the weighting strategies.

Per-task gradients on the shared parameters (flattened to one ``[T, P]`` matrix), writing a
combined gradient back into ``.grad``, masked softmax / normalisation, and the small simplex
solvers (min-norm point, CAGrad's dual) that run on a ``T x T`` Gram matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from mtl_core.errors import ConfigError

FloatArray = npt.NDArray[np.float64]


def require_shared(params: Sequence[nn.Parameter], strategy: str) -> list[nn.Parameter]:
    """The trainable shared parameters, or `ConfigError` when there are none."""
    shared = [p for p in params if p.requires_grad]
    if not shared:
        raise ConfigError(
            f"strategy {strategy!r} needs an architecture with shared parameters "
            "(hard sharing or MMoE); this model has none"
        )
    return shared


def active_mask(scale: Tensor) -> Tensor:
    """``[T]`` bool: the tasks that train this step (``scale > 0``)."""
    return scale > 0


def masked_softmax(logits: Tensor, active: Tensor) -> Tensor:
    """Softmax over the active entries; inactive ones (and an all-inactive vector) get 0."""
    masked = torch.where(active, logits, torch.full_like(logits, float("-inf")))
    return torch.nan_to_num(torch.softmax(masked, dim=0), nan=0.0)


def task_gradients(losses: Tensor, scale: Tensor, inputs: Sequence[Tensor]) -> Tensor:
    """Gradients of ``scale_t * L_t`` w.r.t. ``inputs`` for every task, as ``[T, P]``.

    Every task is differentiated (no host sync to find the active ones); an inactive task's
    row is exactly zero because its loss is multiplied by ``scale_t = 0``. The graph is
    retained so that the heads' backward (and further tasks) can follow.
    """
    rows = []
    weighted = losses * scale
    for t in range(losses.shape[0]):
        grads = torch.autograd.grad(
            weighted[t],
            list(inputs),
            retain_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def accumulate_flat_grad(params: Sequence[nn.Parameter], flat_grad: Tensor) -> None:
    """Add a flat gradient to ``.grad`` of ``params`` (accumulate so the trainer zeroes)."""
    offset = 0
    for p in params:
        n = p.numel()
        g = flat_grad[offset : offset + n].view_as(p).to(p.dtype)
        offset += n
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.add_(g)


def min_norm_2(v11: Tensor, v12: Tensor, v22: Tensor) -> Tensor:
    """gamma minimising ‖gamma a + (1 - gamma) b‖² given a·a, a·b, b·b (Sener & Koltun, Alg. 1)."""
    denom = v11 + v22 - 2 * v12
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    gamma = torch.where(denom > 0, (v22 - v12) / safe, torch.full_like(denom, 0.5))
    return gamma.clamp(0.0, 1.0)


def min_norm_two_tasks(gram: Tensor, active: Tensor) -> Tensor:
    """Exact min-norm weights ``[2]`` for two tasks, on the device (no host sync).

    With one active task all weight goes to it; with none the weights are zero.
    """
    gamma = min_norm_2(gram[0, 0], gram[0, 1], gram[1, 1])
    both = torch.stack([gamma, 1 - gamma])
    return torch.where(active.all(), both, active.to(gram.dtype))


def frank_wolfe_min_norm(
    gram: FloatArray, active: npt.NDArray[np.bool_], max_iter: int = 250, tol: float = 1e-6
) -> FloatArray:
    """Min-norm point of the convex hull of the active task gradients, by Frank-Wolfe.

    Sener & Koltun (NeurIPS 2018), Algorithm 2: start at the uniform point; each iteration
    moves toward the vertex with the smallest ``(G alpha)_t`` with the exact 2-point line search.
    Works on the ``T x T`` Gram matrix only.

    Args:
        gram: ``G = g gᵀ`` of the task gradients (float64).
        active: which tasks take part (the others keep weight 0).
        max_iter: iteration cap.
        tol: stop once the L1 change of the weights falls below this.
    """
    idx = np.flatnonzero(active)
    alpha = np.zeros(gram.shape[0], dtype=np.float64)
    if idx.size == 0:
        return alpha
    if idx.size == 1:
        alpha[idx[0]] = 1.0
        return alpha
    g = gram[np.ix_(idx, idx)]
    a = np.full(idx.size, 1.0 / idx.size)
    for _ in range(max_iter):
        ga = g @ a
        t = int(np.argmin(ga))
        v11 = float(a @ ga)
        v12 = float(ga[t])
        v22 = float(g[t, t])
        denom = v11 + v22 - 2 * v12
        gamma = 0.5 if denom <= 0 else min(max((v22 - v12) / denom, 0.0), 1.0)
        new = gamma * a
        new[t] += 1 - gamma
        change = float(np.abs(new - a).sum())
        a = new
        if change < tol:
            break
    alpha[idx] = a
    return alpha


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
