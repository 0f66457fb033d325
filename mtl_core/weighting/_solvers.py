"""CAGrad's dual solver, batched over a leading trial dimension K.

CAGrad's dual (Liu et al., NeurIPS 2021) is reduced to a one-dimensional root search over
min-norm problems on shifted gradients (`_min_norm`), exact to a stated tolerance (not "good
enough after N steps"). The host only ever sees the ``T x T`` problems, moved in one transfer
for all K; the norms the step is built from are measured on the gradient vectors on the device.

Conventions: ``active [K, T]`` bool; inactive tasks get weight 0, a single active task gets
weight 1, no active task gives all zeros. A non-finite value anywhere in a trial's input makes
that trial's row all-NaN (the caller marks the trial diverged); the other rows are unaffected
and nothing raises on finite input.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from mtl_core.weighting._min_norm import project_dual_cone, wolfe_min_norm

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# float64 elements per chunk when reducing over the parameter dimension P on the device.
_CHUNK_ELEMENTS = 1 << 24


def cagrad_weights(
    grads: Tensor, active: Tensor, c: Tensor, rescale: Tensor, tol: float = 1e-8
) -> Tensor:
    """Coefficients ``[K, T]`` of the CAGrad step ``d = Σ_t coeff_t g_t``.

    Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning" (NeurIPS 2021):
    with ``g0`` the mean of the active gradients and ``g_w = Σ_t w_t g_t``,

        ``w* = argmin_{w ∈ Δ(active)} g_wᵀ g0 + c ‖g0‖ ‖g_w‖``,
        ``d = (g0 + c ‖g0‖ / ‖g_w*‖ · g_w*) / r``,

    ``r`` being 1, ``1 + c²`` or ``1 + c`` (``rescale`` 0, 1, 2). Unrescaled, ``d`` is a
    point of the ball ``‖d - g0‖ ≤ c ‖g0‖`` that maximises ``min_t ⟨g_t, d⟩``.

    The dual is solved exactly up to ``tol``: its optimum is the min-norm point of the hull
    of the shifted gradients ``g_t + λ g0`` at the root of ``c ‖g0‖ λ = ‖g_w(λ)‖`` (the two
    problems share their stationarity condition there), found to the residual
    ``|c ‖g0‖ λ - ‖g_w(λ)‖| ≤ tol · c ‖g0‖ λ`` (or a bracket of relative width ``tol``) with
    each min-norm problem solved by Wolfe's algorithm.
    The host gets, instead of a Gram matrix, the ``T x T`` factor ``R`` of ``gradsᵀ = QR``
    (float64 on the device): points isometric to the gradients, on which nearly cancelling
    combinations keep their digits. ``‖g0‖`` and ``‖g_w*‖`` are measured on the gradient
    vectors themselves (float64 accumulation on the device).

    When ``g_w* = 0`` (the origin is in the hull and no combination does better, e.g. two
    opposite gradients) the formula is 0/0: the best any ``d`` of the ball achieves is
    ``min_t ⟨g_t, d⟩ = 0``, reached by every ``d`` of the ball with ``⟨g_t, d⟩ >= 0`` for all
    active ``t``. The step is then the one of them nearest ``g0``: the projection of ``g0``
    onto that cone (`project_dual_cone`), which is the ball's point of contact with the cone
    at the smallest radius that reaches 0. ``g_w*`` below the rounding of the gradients'
    dtype counts as 0 (see `_cagrad_dual_row`).

    The step stays inside its ball: the coefficients are returned in ``grads``' dtype, and
    the step they give, measured on the vectors in float64 after that rounding, satisfies
    ``‖Σ_t (r coeff_t - 1/n) g_t‖ ≤ c ‖g0‖`` (``n`` active tasks; see `_inside_ball`, which
    pulls the step in by what rounding pushed out; only a ball finer than the dtype's rounding
    of ``1/n``, ``c`` below its unit roundoff ``u``, is missed). Forming ``Σ_t coeff_t g_t``
    in a low-precision dtype adds that dtype's rounding of the sum to the step. So the worst
    task change ``min_t ⟨g_t, d⟩`` is the optimum's within about
    ``1e-7 max_t ‖g_t‖ ‖g0‖ + 4 u max_t ‖g_t‖ Σ_t |r coeff_t| ‖g_t‖``: the second term is
    what coefficients of that dtype can resolve, large when ``g_w*`` is small.

    ``c = 0`` gives the mean without a solve; one active task gives that task's gradient
    (coefficient 1, no rescaling); ``g0 = 0`` gives ``g0 / r`` (the ball is one point).

    Args:
        grads: ``[K, T, P]`` task gradients.
        active: ``[K, T]`` bool, the tasks that take part.
        c: ``[K]`` radius factors, ``>= 0``.
        rescale: ``[K]`` integer rescaling mode, 0, 1 or 2.
        tol: relative accuracy of the root ``λ*``.

    Returns:
        ``[K, T]`` coefficients in ``grads``' dtype and device; all-NaN rows where ``grads``
        or ``c`` is not finite.
    """
    if tol <= 0:
        raise ValueError(f"tol must be > 0, got {tol=}")
    num_slots, num_tasks, _ = grads.shape
    c64 = c.to(grads.device, torch.float64)
    finite = torch.isfinite(grads).flatten(1).all(dim=1) & torch.isfinite(c64)
    # non-finite trials would break the QR; their rows are NaN in the end anyway
    grads = torch.where(finite[:, None, None], grads, 0.0)
    points = _r_factor(grads)
    # one transfer carries every trial's T x T problem
    packed = torch.cat(
        [
            points.flatten(1),
            active.to(torch.float64),
            c64.unsqueeze(1),
            rescale.to(grads.device, torch.float64).unsqueeze(1),
        ],
        dim=1,
    ).cpu()
    host = packed.numpy()
    t2 = num_tasks * num_tasks
    host_points = host[:, :t2].reshape(num_slots, num_tasks, num_tasks)
    host_active = host[:, t2 : t2 + num_tasks] > 0.5
    host_c = host[:, t2 + num_tasks]
    host_rescale = host[:, t2 + num_tasks + 1]
    if np.any(host_c < 0):
        raise ValueError(f"c must be >= 0, got {host_c.tolist()}")
    if not np.all(np.isin(host_rescale, (0.0, 1.0, 2.0))):
        raise ValueError(f"rescale must be 0, 1 or 2, got {host_rescale.tolist()}")
    w = np.zeros((num_slots, num_tasks))
    stationary = np.zeros(num_slots, dtype=bool)
    unit = float(torch.finfo(grads.dtype).eps) / 2
    for k in range(num_slots):
        if np.isfinite(host_c[k]) and host_c[k] > 0 and host_active[k].sum() > 1:
            w[k], stationary[k] = _cagrad_dual_row(
                host_points[k], host_active[k], float(host_c[k]), tol, unit
            )
    w_dev = torch.from_numpy(w).to(grads.device)
    at_zero = torch.from_numpy(stationary).to(grads.device).unsqueeze(1)

    act = active.to(torch.float64)
    count = act.sum(dim=1, keepdim=True)
    mean = act / count.clamp_min(1.0)
    eye = torch.eye(num_tasks, dtype=torch.float64, device=grads.device)
    norms = _combination_norms(
        grads, torch.cat([mean.unsqueeze(1), w_dev.unsqueeze(1), eye.expand(num_slots, -1, -1)], 1)
    )
    g0_norm, w_norm = norms[:, 0], norms[:, 1]
    radius = c64 * g0_norm
    # the formula's c ‖g0‖ g_w* / ‖g_w*‖, or (g_w* = 0) the projection's own step from g0
    lam = torch.where(w_norm > 0, radius / torch.where(w_norm > 0, w_norm, 1.0), 0.0)
    dev = torch.where(at_zero, w_dev, lam.unsqueeze(1) * w_dev)
    dev_norm = torch.where(at_zero.squeeze(1), w_norm, lam * w_norm)
    mode = rescale.to(grads.device)
    r = torch.where(mode == 1, 1.0 + c64 * c64, torch.where(mode == 2, 1.0 + c64, 1.0))
    coeff = _inside_ball(grads, mean, dev, dev_norm, radius, r, norms[:, 2:])
    coeff = torch.where(count == 1, act.to(grads.dtype), coeff)
    return torch.where(finite.unsqueeze(1), coeff, math.nan)


def _inside_ball(
    grads: Tensor,
    mean: Tensor,
    dev: Tensor,
    dev_norm: Tensor,
    radius: Tensor,
    r: Tensor,
    task_norms: Tensor,
) -> Tensor:
    """Coefficients ``(mean + s dev) / r`` in ``grads``' dtype whose step ``Σ_t coeff_t g_t``
    keeps ``‖Σ_t (r coeff_t - mean_t) g_t‖ ≤ radius``, measured on the vectors in float64.

    ``s = min(1, radius / ‖g_dev‖)`` first. Rounding the coefficients moves the step by up to
    ``u Σ_t |r coeff_t| ‖g_t‖`` (unit roundoff ``u``), a lot when large coefficients nearly
    cancel, so the rounded step is measured; where it left the ball, ``s`` shrinks by what
    it stuck out, twice over, and is measured again; where it is still out, ``s`` shrinks by
    that bound on the rounding, which keeps it in. No host sync: a fixed two measurements.
    """
    r_col = r.unsqueeze(1)
    safe = torch.where(dev_norm > 0, dev_norm, 1.0)
    scale = torch.where(dev_norm > radius, radius / safe, 1.0)

    def cast(scale: Tensor) -> Tensor:
        return ((mean + scale.unsqueeze(1) * dev) / r_col).to(grads.dtype)

    def measured(coeff: Tensor) -> Tensor:
        moved = r_col * coeff.to(torch.float64) - mean
        return _combination_norms(grads, moved.unsqueeze(1))[:, 0]

    coeff = cast(scale)
    norm = measured(coeff)
    out = norm > radius
    target = (radius - 2 * (norm - radius)).clamp_min(0.0)
    scale = torch.where(out, scale * target / torch.where(out, norm, 1.0), scale)
    coeff = torch.where(out.unsqueeze(1), cast(scale), coeff)
    still_out = out & (measured(coeff) > radius)
    slack = torch.finfo(grads.dtype).eps / 2 * ((mean.abs() + dev.abs()) * task_norms).sum(dim=1)
    bound = torch.minimum(scale, (radius - slack).clamp_min(0.0) / safe)
    return torch.where(still_out.unsqueeze(1), cast(bound), coeff)


def project_simplex(v: FloatArray) -> FloatArray:
    """Euclidean projection onto the probability simplex (Duchi et al., ICML 2008).

    A non-finite input gives an all-NaN result instead of an exception.
    """
    if v.size == 0 or not np.all(np.isfinite(v)):
        return np.full(v.shape, math.nan)
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    k = np.arange(1, v.size + 1)
    # the first entry always qualifies (u_1 - (u_1 - 1) = 1 > 0), so rho exists
    rho = int(np.nonzero(u - css / k > 0)[0][-1])
    theta = css[rho] / (rho + 1)
    return np.asarray(np.maximum(v - theta, 0.0), dtype=np.float64)


def _cagrad_dual_row(
    points: FloatArray, active: BoolArray, c: float, tol: float, unit: float
) -> tuple[FloatArray, bool]:
    """One trial's CAGrad dual: ``(w* [T], False)``, or ``(β [T], True)`` when ``g_w* = 0``.

    ``points`` are rows ``v_t`` isometric to the task gradients (``⟨v_s, v_t⟩ = ⟨g_s, g_t⟩``).
    On the scaled problem (``‖g0‖ = 1``) the dual is ``min_w g_wᵀ g0 + c ‖g_w‖``. Its
    stationarity condition equals that of ``min_w ‖g_w + λ g0‖²`` when ``λ = ‖g_w‖ / c``, so
    ``w*`` is the min-norm point of the shifted points ``v_t + λ v0`` at the root of
    ``φ(λ) = c λ - ‖g_w(λ)‖``. ``φ(λ_max) > 0`` for ``λ_max = max_t ‖g_t‖ / c`` and
    ``g_w(λ)`` is continuous, so once ``φ(lo) < 0`` a root is bracketed; it is found by
    following the piecewise-affine path ``λ -> g_w(λ)`` (`_next_shift`), safeguarded by the
    bracket, until ``|φ(λ)| ≤ tol · c λ`` or the bracket is within ``tol · λ``.

    ``g_w* = 0`` when ``φ ≥ 0`` already at a small ``lo > 0`` (``φ(0) = 0`` exactly when the
    origin is in the hull), and also when ``‖g_w*‖ ≤ 8 unit Σ_t w*_t ‖g_t‖``: zero to the
    precision of gradients given in a dtype of unit roundoff ``unit``, its direction is that
    dtype's rounding and its coefficients ``c ‖g0‖ w* / ‖g_w*‖`` could not be held in it. The
    step is then ``g0 + Σ_t β_t g_t``, the projection of ``g0`` onto ``{d: ⟨g_t, d⟩ ≥ 0}``
    (`project_dual_cone` with ``ridge = unit``), and ``β`` is returned. ``g0 = 0`` returns
    zeros.
    """
    w = np.zeros(points.shape[0])
    idx = np.flatnonzero(active)
    v = points[idx]
    v0 = v.mean(axis=0)
    g0_norm = float(np.linalg.norm(v0))
    if not g0_norm > 1e-15 * float(np.max(np.linalg.norm(v, axis=1))):
        return w, False
    v = v / g0_norm
    v0 = v0 / g0_norm
    last: list[int] = []
    solved: list[FloatArray] = []

    def phi(lam: float) -> float:
        # successive λ share their support near the root: start from the last one
        u = wolfe_min_norm(v + lam * v0, 1e-14, last)
        last[:] = [int(i) for i in np.flatnonzero(u > 0)]
        solved[:] = [u]
        return c * lam - float(np.linalg.norm(u @ v))

    v_max = float(np.max(np.linalg.norm(v, axis=1)))
    hi = v_max / c * (1.0 + 1e-9)  # φ(hi) > 0: ‖g_w‖ <= max_t ‖v_t‖
    lo = 0.0
    f_lo = phi(lo)
    if f_lo >= -1e-12 * v_max:  # origin in the hull: φ(0) = 0 up to rounding, move off
        lo = 1e-9 * hi
        f_lo = phi(lo)
    if f_lo >= 0:  # the optimum is g_w = 0 (Pareto-stationary)
        w[idx] = project_dual_cone(v, v0, 1e-14, unit)
        return w, True
    lam = lo
    for _ in range(200):  # a safeguard: the bracket alone halves in under 100 steps
        guess = _next_shift(v, v0, last, c, lam, lo, hi)
        if guess is None:  # ‖g_w‖ grows with λ, so ‖g_w(lo)‖ / c is still below the root
            guess = lo - f_lo / c
            if not lo < guess < hi:
                guess = math.sqrt(lo * hi) if 0 < 4 * lo < hi else 0.5 * (lo + hi)
        lam = guess
        f = phi(lam)
        if abs(f) <= tol * c * lam or hi - lo <= tol * hi:
            break
        if f < 0:
            lo, f_lo = lam, f
        else:
            hi = lam
    best = solved[0]
    if np.linalg.norm(best @ v) <= 8 * unit * float(best @ np.linalg.norm(v, axis=1)):
        w[idx] = project_dual_cone(v, v0, 1e-14, unit)
        return w, True
    w[idx] = best
    return w, False


def _next_shift(
    v: FloatArray, shift: FloatArray, support: list[int], c: float, lam: float, lo: float, hi: float
) -> float | None:
    """A guess in ``(lo, hi)`` at the root of ``c λ = ‖g_w(λ)‖``, from the piece of the path
    ``λ -> g_w(λ)`` on which ``support`` is the min-norm support (as it is at ``lam``).

    On a fixed support the weights of the affine min-norm point of the rows shifted by
    ``λ shift`` are affine in ``λ`` (the shift cancels from their differences), so
    ``g_w(λ) = p + λ q`` and the piece's root solves ``c² λ² = ‖p + λ q‖²``. The piece ends
    where a weight reaches 0 or a row ``j`` off the support starts to break
    ``⟨v_j + λ shift, x(λ)⟩ ≥ ‖x(λ)‖²``, ``x = g_w + λ shift`` (a quadratic in ``λ``). The
    guess is the piece's root if it has one in ``(lo, hi)``, else a point just past the end of
    the piece, else ``None``; the caller's bracket keeps any guess safe.
    """
    points = v[support]
    base = points[0]
    mu0, mu1 = np.ones(1), np.zeros(1)
    if len(support) > 1:
        z = np.linalg.lstsq((points[1:] - base).T, -np.stack([base, shift], axis=1), rcond=None)[0]
        mu0 = np.concatenate([[1.0 - z[:, 0].sum()], z[:, 0]])
        mu1 = np.concatenate([[-z[:, 1].sum()], z[:, 1]])
    p, q = mu0 @ points, mu1 @ points
    roots = _quadratic_roots(c * c - float(q @ q), -2 * float(p @ q), -float(p @ p))
    inside = roots[(roots > lo) & (roots < hi)]
    if inside.size:
        return float(inside.min())
    r = q + shift
    off = np.array([j for j in range(v.shape[0]) if j not in support], dtype=int)
    ends = [
        -mu0[mu1 < 0] / mu1[mu1 < 0],
        *(
            _quadratic_roots(
                float(shift @ r - r @ r),
                float(v[j] @ r + shift @ p - 2 * p @ r),
                float(v[j] @ p - p @ p),
            )
            for j in off
        ),
    ]
    past = np.concatenate(ends)
    past = past[(past > lam * (1 + 1e-12)) & (past * (1 + 1e-9) < hi) & (past > lo)]
    return float(past.min()) * (1 + 1e-9) if past.size else None


def _quadratic_roots(a: float, b: float, c: float) -> FloatArray:
    """The real roots of ``a x² + b x + c`` (without cancellation; a linear one when ``a = 0``)."""
    disc = b * b - 4 * a * c
    if disc < 0 or (a == 0 and b == 0):
        return np.zeros(0)
    big = -(b + math.copysign(math.sqrt(disc), b)) / 2  # the roots are big / a and c / big
    return np.array([x for x in (big / a if a else math.nan, c / big if big else math.nan)])


def _r_factor(grads: Tensor) -> Tensor:
    """``[K, T, T]`` rows ``v_t`` with ``⟨v_s, v_t⟩ = ⟨g_s, g_t⟩``: the R of ``gradsᵀ = QR``.

    Computed in float64 on the device by a chunked (tall-skinny) QR over P, so memory stays
    bounded and, unlike a Gram matrix, the conditioning is not squared.
    """
    num_slots, num_tasks, _ = grads.shape
    chunk = max(num_tasks, _CHUNK_ELEMENTS // max(1, num_slots * num_tasks))
    r = torch.zeros(num_slots, 0, num_tasks, dtype=torch.float64, device=grads.device)
    for part in grads.detach().split(chunk, dim=2):
        stacked = torch.cat([r, part.transpose(1, 2).to(torch.float64)], dim=1)
        r = torch.linalg.qr(stacked, mode="r").R
    if r.shape[1] < num_tasks:  # fewer parameters than tasks
        r = torch.cat([r, r.new_zeros(num_slots, num_tasks - r.shape[1], num_tasks)], dim=1)
    return r.transpose(1, 2)


def _combination_norms(grads: Tensor, weights: Tensor) -> Tensor:
    """``‖Σ_t weights[k, m, t] g[k, t]‖`` as ``[K, M]``, from the vectors, in float64."""
    num_slots, num_tasks, _ = grads.shape
    chunk = max(1, _CHUNK_ELEMENTS // max(1, num_slots * max(num_tasks, weights.shape[1])))
    sq = torch.zeros(weights.shape[:2], dtype=torch.float64, device=grads.device)
    for part in grads.detach().split(chunk, dim=2):
        v = torch.einsum("kmt,ktp->kmp", weights, part.to(torch.float64))
        sq += (v * v).sum(dim=2)
    return sq.sqrt()
