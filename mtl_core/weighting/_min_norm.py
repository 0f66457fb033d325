"""Min-norm problems over the task gradients, batched over a leading trial dimension K.

Two problems share one active-set loop (Wolfe, Math. Programming 1976; Lawson & Hanson,
*Solving Least Squares Problems*, 1974, for the cone):

* the min-norm point of the convex hull of the gradients (MGDA, Sener & Koltun, NeurIPS
  2018), exact for two tasks by a closed form and otherwise by Wolfe's algorithm;
* the projection of a vector onto the dual cone ``{d: ⟨g_t, d⟩ >= 0 for all t}`` of the
  gradients (CAGrad's step when its best combination is 0, see `_solvers.cagrad_weights`).

Both stop on a stated duality gap, never on an iteration count alone, and never raise on finite
input: the origin (in the hull) is detected as such, and a vertex that rounding keeps from
entering ends the solve at the point reached, which is optimal up to that rounding.

Conventions: ``active [K, T]`` bool; inactive tasks get weight 0, a single active task weight
1, no active task all zeros; a trial whose input is not finite gets an all-NaN row and the
other rows are unaffected.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Rounding, relative to ``max_t ‖v_t‖``: a duality gap at or below this times ``‖x‖`` is the
#: rounding of the inner products ``⟨v_t, x⟩``, and a point ``x`` of norm at or below this is
#: the origin (in the hull) up to the rounding of the combination that reached it.
GAP_FLOOR = 1e-14


def min_norm_weights(gram: Tensor, active: Tensor, tol: float = 1e-10) -> Tensor:
    """Min-norm point ``alpha [K, T]`` of the convex hull of the active task gradients.

    ``alpha = argmin_{alpha ∈ Δ(active)} alphaᵀ G alpha`` (MGDA; Sener & Koltun, NeurIPS 2018).
    At the optimum ``d = Σ_t alpha_t g_t`` satisfies ``⟨g_t, d⟩ ≥ ‖d‖²`` for every active
    ``t``, with equality where ``alpha_t > 0``: no active task is hurt by a step along ``-d``.

    Two tasks: the closed form ``gamma = clip((G22 - G12) / (G11 + G22 - 2 G12), 0, 1)``,
    computed on the device without a host sync. More: Wolfe's min-norm-point algorithm
    (`wolfe_min_norm`) in float64 on the host (one transfer for all K), on points ``v_t``
    rebuilt from ``G`` by its eigen-decomposition, stopped when

        ``‖d‖² - min_t ⟨g_t, d⟩ ≤ max(tol · ‖d‖², 1e-14 · ‖d‖ · max_t ‖g_t‖)``

    or ``‖d‖ ≤ 1e-14 max_t ‖g_t‖``: the optimality conditions hold to that much on the ``G``
    given, up to the rounding of rebuilding points from it (``~1e-15 max_t G_tt``). On the
    vectors add the rounding of ``G`` and of the weights in ``gram``'s dtype (unit roundoff
    ``u``, ``P`` parameters): within ``(2P + 3T + 8) u max_t ‖g_t‖²`` in all
    (`tests/mtl_core/weighting/test_degenerate_gradients.py` checks it). When the origin is in
    the hull (two opposite gradients, a zero gradient) the answer is ``d = 0`` to that
    tolerance, with the weights of a combination that reaches it. Each inner step solves the
    affine min-norm problem on the current support exactly, so weights that are exactly 0 at
    the optimum come out exactly 0.

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

    Returns weights ``alpha`` on the simplex whose point ``x = Σ_t alpha_t v_t`` has the
    duality gap ``‖x‖² - min_t ⟨v_t, x⟩ ≤ max(tol · ‖x‖², GAP_FLOOR · ‖x‖ · max_t ‖v_t‖)``,
    or is the origin: ``‖x‖ ≤ GAP_FLOOR · max_t ‖v_t‖``. Major step: add the vertex ``j``
    off the support with the least ``⟨v_j, x⟩`` unless that holds; minor steps: move to the
    affine min-norm point of the support, dropping vertices whose weight would turn negative.
    Working on the points, not their Gram matrix, keeps the digits of nearly cancelling
    combinations.

    Degenerate cases: when the origin is in the hull (opposite or zero rows) ``x`` ends at 0 up
    to rounding, where every gap is rounding too, and the origin test stops there. A vertex
    that rounding keeps from entering (its affine weight is not positive although its gap is
    above the floor: in exact arithmetic it would enter) also ends the solve, at a point
    optimal up to that rounding; so nothing divides 0 by 0 and the support never empties.
    All-zero points give the uniform weights.

    ``start``, a guess of the optimal support, is used when its affine min-norm point has
    positive weights (a valid starting corral); otherwise the solve starts from one vertex.
    """
    n = points.shape[0]
    sq_norms = np.einsum("ij,ij->i", points, points)
    scale = float(np.max(sq_norms))
    if scale <= 0:
        return np.full(n, 1.0 / n)
    v = points / math.sqrt(scale)
    support, lam = [int(np.argmin(sq_norms))], np.ones(1)
    if start:
        mu = _affine_min_norm(v[start])
        if np.all(mu > 0):
            support, lam = list(start), mu
    support, lam = _active_set(v, None, tol, support, lam)
    alpha = np.zeros(n)
    alpha[support] = np.maximum(lam, 0.0)
    return alpha / alpha.sum()


def project_dual_cone(
    points: FloatArray, target: FloatArray, tol: float = 1e-12, ridge: float = 0.0
) -> FloatArray:
    """``β >= 0`` such that ``target + Σ_t β_t v_t`` is the projection of ``target`` onto
    ``{d: ⟨v_t, d⟩ >= 0 for every t}`` (rows of ``points [n, m]``, float64, finite).

    The dual of that projection is the non-negative least-squares problem ``min_{β >= 0}
    ‖target + Σ_t β_t v_t‖² + ridge Σ_t ‖v_t‖² β_t²`` (at ``ridge = 0``; Lawson & Hanson's
    active set, the same loop as `wolfe_min_norm` without ``Σ β = 1``); it stops when ``x =
    target + Σ β v`` is in the cone to ``-min_t ⟨v_t, x⟩ ≤ max(tol · ‖x‖², GAP_FLOOR · ‖x‖ ·
    max_t ‖v_t‖)``, or ``x`` is 0 to ``GAP_FLOOR · max_t ‖v_t‖``. ``ridge > 0`` (the precision
    of the inner products, for gradients known only to their dtype) keeps ``β`` from the huge
    cancelling combinations by which nearly opposite rows reach into a wedge thinner than that
    precision: the constraints then hold to ``⟨v_t, x⟩ >= -ridge ‖v_t‖² β_t``. ``β`` is one
    solution when several give the same ``x`` (opposite or repeated rows); all-zero points give
    ``β = 0``.
    """
    n = points.shape[0]
    norms = np.sqrt(np.einsum("ij,ij->i", points, points))
    top = float(np.max(norms))
    beta = np.zeros(n)
    if top <= 0:
        return beta
    if ridge > 0:  # ‖x‖² + ridge Σ ‖v_t‖² β_t² is the plain problem on rows (v_t, √ridge ‖v_t‖ e_t)
        points = np.concatenate([points, np.diag(math.sqrt(ridge) * norms)], axis=1)
        target = np.concatenate([target, np.zeros(n)])
    support, coef = _active_set(points / top, target / top, tol, [], np.zeros(0))
    beta[support] = np.maximum(coef, 0.0)
    return beta


def _active_set(
    v: FloatArray, target: FloatArray | None, tol: float, support: list[int], coef: FloatArray
) -> tuple[list[int], FloatArray]:
    """Minimise ``‖x‖``, ``x = target + Σ_{t ∈ support} coef_t v_t``, over ``coef >= 0``.

    ``target is None``: the hull (``Σ coef = 1``, optimality ``⟨v_t, x⟩ >= ‖x‖²``, Wolfe);
    otherwise the cone (optimality ``⟨v_t, x⟩ >= 0``, Lawson-Hanson). ``v`` is scaled to
    ``max_t ‖v_t‖ = 1``. Each pass lowers ``‖x‖`` strictly in exact arithmetic; the pass
    count is a safeguard, the stops are the gap, the origin and a vertex that cannot enter.
    """
    hull = target is None
    base = np.zeros(v.shape[1]) if target is None else target
    for _ in range(20 * v.shape[0] + 20):
        x = base + coef @ v[support]
        sq = float(x @ x)
        vx = v @ x
        vx[support] = np.inf  # on the support ⟨v_t, x⟩ is at its level by construction
        j = int(np.argmin(vx))
        gap = (sq if hull else 0.0) - float(vx[j])  # -inf when every vertex is in
        norm = math.sqrt(sq)
        if not gap > max(tol * sq, GAP_FLOOR * norm) or norm <= GAP_FLOOR:
            break
        entered = _minor_cycle(v, base, hull, [*support, j], np.append(coef, 0.0))
        if entered is None:
            break
        support, coef = entered
    return support, coef


def _minor_cycle(
    v: FloatArray, base: FloatArray, hull: bool, support: list[int], coef: FloatArray
) -> tuple[list[int], FloatArray] | None:
    """Wolfe's minor cycle after the last vertex of ``support`` entered with ``coef`` 0.

    Moves towards the unconstrained (hull: affine) minimiser on the support, dropping the
    first vertex whose coefficient reaches 0, until that minimiser has positive coefficients.
    ``None`` when the new vertex's own coefficient there is not positive: in exact arithmetic
    a vertex with a positive gap always enters, so the gap was rounding and nothing moves.
    """
    for _ in range(len(support)):
        if hull:
            mu = _affine_min_norm(v[support])
        else:
            mu = np.asarray(np.linalg.lstsq(v[support].T, -base, rcond=None)[0], np.float64)
        if np.all(mu > 0):
            return support, mu
        if coef[-1] == 0.0 and mu[-1] <= 0:
            return None
        # every coef on the support but a new vertex's is > 0, so each ratio is in (0, 1]
        neg = (mu <= 0) & (coef > 0)
        ratios = coef[neg] / (coef[neg] - mu[neg])
        coef = coef + float(np.min(ratios)) * (mu - coef)
        drop = int(np.flatnonzero(neg)[np.argmin(ratios)])
        keep = [i for i in range(len(support)) if i != drop and coef[i] > 0]
        support = [support[i] for i in keep]
        coef = coef[keep] / coef[keep].sum() if hull else coef[keep]
        if not support:  # the cone's minimiser is the target itself
            break
    return support, coef


def _affine_min_norm(points: FloatArray) -> FloatArray:
    """``argmin_{Σ mu = 1} ‖Σ mu_i v_i‖``, as least squares on the points themselves.

    With ``mu_0 = 1 - Σ z`` the point is ``v_0 + Σ z_i (v_i - v_0)``: one least-squares solve
    whose conditioning is that of the points, not its square (as with the Gram matrix).
    Affinely dependent points get the least-norm ``z`` (the point itself is unique).
    """
    if points.shape[0] == 1:
        return np.ones(1)
    base = points[0]
    z = np.linalg.lstsq((points[1:] - base).T, -base, rcond=None)[0]
    return np.asarray(np.concatenate([[1.0 - z.sum()], z]), dtype=np.float64)
