"""FORUM: a first-order multi-gradient method for multi-objective bi-level optimisation
(Ye et al., ECAI 2024)."""

from __future__ import annotations

import logging
import math
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import torch
from pydantic import Field
from torch import Tensor

from mtl_core.components import searched
from mtl_core.optim import StackedOptimizer
from mtl_core.weighting._base import (
    LossWeighting,
    StepInputs,
    StrategyConfig,
    masked_softmax,
    normalise,
)
from mtl_core.weighting._gram import cross_gram64, gram64
from mtl_core.weighting._look_ahead import (
    LookAhead,
    flat,
    flat_tasks,
    grads_of,
    leaves,
    per_task_gradients,
    require_look_ahead,
    softmax_backward,
)
from mtl_core.weighting._min_norm import min_norm_weights
from mtl_core.weighting._registry import STRATEGIES

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: LibMTL stops the inner loop once the training objective exceeds this (a diverging inner_lr).
_INNER_LOSS_LIMIT = 1e5
#: Added to ‖g_q‖² in π and in the linear term of the QP, as in LibMTL.
_Q_EPS = 1e-8
#: Relative tolerance of the KKT conditions in `active_set_qp`.
_KKT_TOL = 1e-12
#: Curvatures below this times the Hessian's scale are rounding of zero in `active_set_qp`.
_CURVATURE_TOL = 1e-13
#: A safeguard on `active_set_qp`'s iterations (it stops on the KKT conditions).
_MAX_ITER = 200


class FORUMConfig(StrategyConfig):
    """FORUM's hyper-parameters.

    Args:
        inner_lr: the step size of the inner SGD steps that approximate θ*(α).
        inner_steps: the inner SGD steps per training step (LibMTL's command-line default is
            5; 1 here, the cheapest).
        phi: the share of ‖g_q‖² the direction must take off the lower-level gap (LibMTL's
            ``FORUM_phi``).
        lr: the step size of the task logits α (Adam; LibMTL's ``outer_lr``).
    """

    inner_lr: float = Field(
        0.1,
        gt=0,
        description="Step size of the inner SGD steps.",
        json_schema_extra=searched(1e-3, 1.0, log=True),
    )
    inner_steps: int = Field(1, ge=1, le=10, description="Inner SGD steps per training step.")
    phi: float = Field(0.1, gt=0, description="Required decrease of the lower-level gap.")
    lr: float = Field(
        1e-3,
        gt=0,
        description="Step size of the task logits (Adam).",
        json_schema_extra=searched(1e-4, 1e-1, log=True),
    )


@STRATEGIES.register("forum")
class FORUM(LossWeighting[FORUMConfig]):
    """Treat the task logits α and the model θ as one bi-level problem and step both along a
    first-order multi-gradient direction that lowers every task's validation loss while
    keeping θ near the training optimum for α.

    Ye, Lin, Liu, Zhang & Ye, "A First-Order Multi-Gradient Algorithm for Multi-Objective
    Bi-Level Optimization", ECAI 2024; as LibMTL's ``bacth_forward_FORUM``. With z =
    softmax(α) over the active tasks (α init 0) and s_t the study's fixed weight times the
    schedule's multiplier, at every step:

        f(α, θ) = Σ_t z_t s_t L_t(θ)  on the training batch,   θ_T = inner_steps SGD steps
                  (``inner_lr``) on f from θ (a slot stops once f > 1e5, as LibMTL does)
        g_q     = (∇_α f(α, θ) − ∇_α f(α, θ_T),  ∇_θ f(α, θ))      (the gap q = f − f*)
        ĝ_t     = (0,  ∇_θ L^val_t(θ) / ‖∇_θ L^val_t(θ)‖)          (validation batch)
        π_t     = φ − ⟨g_q, ĝ_t⟩ / (‖g_q‖² + 1e-8),   c = φ (‖g_q‖² + 1e-8)
        w       = argmin_{w >= 0, Σ_{t<T} w_t = 1, w_T >= Σ_t w_t π_t} wᵀ A Aᵀ w − c w_T,
                  A's rows ĝ_1..ĝ_T, g_q                            (`forum_weights`)
        λ_t    ← λ_t + (e + 1)^{-3/4} (w_t − λ_t)   (e: the trial's 0-based epoch; λ from 0)
        ν       = max(Σ_t λ_t π_t, 0),   g = Σ_t λ_t ĝ_t + ν g_q

    α takes one Adam step (lr ``lr``, its own state per slot) with g's α-part, ν (∇_α f(α, θ)
    − ∇_α f(α, θ_T)); the model's update is g's θ-part, the gradient of the returned objective
    ν f(α, θ) + Σ_t λ_t L^val_t(θ) / ‖∇_θ L^val_t(θ)‖ (coefficients detached). A task whose
    validation gradient vanishes keeps ĝ_t = 0. ``inner_lr`` and ``lr`` are searched over
    three decades around LibMTL's defaults.

    The model's update holds the validation gradient itself: the model trains on validation
    data (LibMTL's "outer" batch is a second training batch; here it is the experiment's
    validation split). A study that selects trials on validation metrics is optimistic with
    FORUM; only the test metrics are an honest estimate.

    Cost per step: one backward pass more than a fixed-weight step for ∇_θ f, inner_steps − 1
    forward and backward passes and one forward pass on the training batch, one forward pass
    and T backward passes on the validation batch, and a (T+1)-variable QP per trial on the
    host. Reported weights: z normalised to Σ = T over the active tasks.
    """

    name = "forum"
    config_cls = FORUMConfig
    reads_validation: ClassVar[bool] = True
    # With one active task the step is its normalised validation gradient plus ν times its
    # training gradient, not a multiple of the training gradient.
    single_task_as_is: ClassVar[bool] = False

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.inner_lr = self._per_slot(0.1)
        self.phi = self._per_slot(0.1)
        self.inner_steps = torch.zeros(num_slots, dtype=torch.long, device=device)
        # Known on the host: the inner loop runs for the largest count (free slots: 0).
        self._host_steps = [0] * num_slots
        self.epochs = torch.zeros(num_slots, dtype=torch.long, device=device)
        self.lambdas = self._zeros()
        self.logits = self._zeros()
        # α has its own Adam, as in LibMTL (not the trials' optimizer).
        self._optimizer = StackedOptimizer(
            "adam", [self.logits], lr=self._per_slot(1e-3), weight_decay=self._per_slot(0.0)
        )

    def _reset(self, slot: int, config: FORUMConfig) -> None:
        self.inner_lr[slot] = config.inner_lr
        self.phi[slot] = config.phi
        self.inner_steps[slot] = config.inner_steps
        self._host_steps[slot] = config.inner_steps
        self.epochs[slot] = 0
        self.lambdas[slot] = 0
        self.logits[slot] = 0
        self._optimizer.reset_slot(slot, config.lr, 0.0)

    def release_slot(self, slot: int) -> None:
        super().release_slot(slot)
        self._host_steps[slot] = 0

    def on_epoch_end(self, ended: Tensor, mean_losses: Tensor) -> None:
        self.epochs += ended.to(self.epochs.dtype)

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        look = require_look_ahead(inputs.look_ahead, self.name)
        active, occupied = inputs.scale > 0, inputs.occupied
        z = masked_softmax(self.logits, active)
        f, q_alpha, q_theta = self._lower_level(inputs, look, z)
        val, unit, norms = self._upper_level(look, active)
        sq = (q_alpha**2).sum(-1) + gram64(q_theta.unsqueeze(1))[:, 0, 0]
        dots = cross_gram64(unit, q_theta.unsqueeze(1))[..., 0]
        phi = self.phi.double().unsqueeze(-1)
        pi = torch.where(active, phi - dots / (sq + _Q_EPS).unsqueeze(-1), 0.0)
        gram = torch.cat([gram64(unit, active), dots.unsqueeze(-1)], dim=-1)
        corner = torch.cat([dots, sq.unsqueeze(-1)], dim=-1).unsqueeze(1)
        w = forum_weights(torch.cat([gram, corner], dim=1), pi, phi[:, 0] * (sq + _Q_EPS), active)
        # λ's running average, per slot at its own epoch; free slots keep theirs.
        rate = (self.epochs.double() + 1.0) ** -0.75
        moved = self.lambdas.double() + rate.unsqueeze(-1) * (w[:, :-1] - self.lambdas.double())
        live = occupied.unsqueeze(-1)
        self.lambdas = torch.where(live, moved.to(self.lambdas.dtype), self.lambdas)
        lambdas = self.lambdas.double() * active
        nu = (lambdas * pi).sum(-1).clamp_min(0.0)
        alpha_grad = (nu.unsqueeze(-1) * q_alpha).to(self.logits.dtype)
        self._optimizer.step([torch.where(live, alpha_grad, 0.0)], occupied)
        # ∇_θ of this is ν ∇_θ f + Σ_t λ_t ĝ_t: g's θ-part.
        coef = torch.where(norms > 0, lambdas / torch.where(norms > 0, norms, 1.0), 0.0)
        dtype = inputs.losses.dtype
        objective = nu.to(dtype) * f + (coef.to(val.dtype) * val).sum(-1).to(dtype)
        return objective, normalise(z, active)

    def _lower_level(
        self, inputs: StepInputs, look: LookAhead, z: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(f(α, θ) ``[K]`` with graph; g_q's α-part ``[K, T]``, float64; its θ-part ``[K, P]``)."""
        z = z.to(inputs.losses.dtype)
        f = (z * inputs.scale * inputs.losses).sum(dim=-1)
        grads = [g.detach() for g in look.gradients(f.sum(), False)]
        theta, value = [p.detach() for p in look.params], f.detach()
        moving = inputs.occupied.clone()
        step_grads = grads
        for step in range(max(self._host_steps, default=0)):
            if step > 0:
                at = leaves(theta)
                value = (z * inputs.scale * look.train_losses(at)).sum(dim=-1)
                step_grads = grads_of(value.sum(), at)
                value = value.detach()
            # A slot stops for good at its own count, or where f left the range (LibMTL).
            moving = moving & (step < self.inner_steps) & (value <= _INNER_LOSS_LIMIT)
            theta = [
                torch.where(_rows(moving, p), p - _rows(self.inner_lr, p).to(p.dtype) * g, p)
                for p, g in zip(theta, step_grads, strict=True)
            ]
        with torch.no_grad():
            # Both ends through the same forward, so the gap holds no rounding of another path.
            gap = look.train_losses(look.params) - look.train_losses(theta)
        gap = inputs.scale * gap.to(inputs.scale.dtype)
        # In float64, like the rest of the α step: Adam's first steps turn even a rounding-sized
        # gradient into a step of size lr.
        return f, softmax_backward(z.double(), gap.double()), flat(grads).float()

    def _upper_level(self, look: LookAhead, active: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(validation losses ``[K, T]`` at the trained parameters, with graph; their unit
        gradients ĝ ``[K, T, P]`` (0 for inactive tasks and vanishing gradients); the norms
        ``[K, T]``)."""
        val = look.val_losses(look.trained).float()
        grads = flat_tasks(
            per_task_gradients(val, lambda total: grads_of(total, look.trained, True))
        ).float()
        norms = torch.where(active, grads.norm(dim=-1), 0.0)
        usable = (norms > 0).unsqueeze(-1)
        unit = torch.where(usable, grads / torch.where(usable, norms.unsqueeze(-1), 1.0), 0.0)
        return val, unit, norms


def _rows(values: Tensor, like: Tensor) -> Tensor:
    """A ``[K]`` tensor shaped to broadcast against ``like`` (``[K, ...]``)."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def forum_weights(gram: Tensor, pi: Tensor, c: Tensor, active: Tensor) -> Tensor:
    """FORUM's QP for every trial: ``w [K, T+1]``, in ``gram``'s dtype and device.

    ``w = argmin wᵀ G w − c w_T`` over ``w >= 0``, ``Σ_{t<T} w_t = 1`` and ``w_T >= Σ_t w_t
    π_t``, with ``G [K, T+1, T+1]`` the Gram matrix of ĝ_1..ĝ_T, g_q, ``pi [K, T]``, ``c [K]``;
    inactive tasks (``active [K, T]``) get ``w_t = 0`` and no term in the constraint. Solved
    on the host in float64 (one transfer for all K) by `active_set_qp`, with w_T in units of
    ``1 / ‖g_q‖`` so that the columns of the problem have one scale.

    Where ``g_q = 0`` the problem is unbounded in w_T (``−c w_T`` alone) but w_T is moot: the
    direction's ν g_q is 0 whatever ν. The task part is then the min-norm point of the ĝ_t
    (the QP without g_q) and ``w_T = max(Σ_t w_t π_t, 0)``. A trial with no active task gets
    zeros; one whose input is not finite, an all-NaN row.
    """
    num_tasks = pi.shape[1]
    packed = torch.cat([gram.flatten(1), pi, c.unsqueeze(-1), active.to(gram.dtype)], dim=1)
    host = packed.detach().to("cpu", torch.float64).numpy()
    size = (num_tasks + 1) ** 2
    rows = [
        _forum_row(
            row[:size].reshape(num_tasks + 1, num_tasks + 1),
            row[size : size + num_tasks],
            float(row[size + num_tasks]),
            row[size + num_tasks + 1 :] > 0.5,
        )
        for row in host
    ]
    solved = np.stack(rows) if rows else np.zeros((0, num_tasks + 1))
    return torch.from_numpy(solved).to(gram.device, gram.dtype)


def _forum_row(gram: FloatArray, pi: FloatArray, c: float, active: BoolArray) -> FloatArray:
    """One trial's ``w [T+1]`` (see `forum_weights`)."""
    num_tasks = pi.shape[0]
    out = np.zeros(num_tasks + 1)
    if not (np.all(np.isfinite(gram)) and np.all(np.isfinite(pi)) and math.isfinite(c)):
        return np.full(num_tasks + 1, math.nan)
    idx = np.flatnonzero(active)
    n = idx.size
    if n == 0:
        return out
    q_sq = gram[num_tasks, num_tasks]
    if q_sq <= 0:
        hull = torch.from_numpy(gram[np.ix_(idx, idx)]).unsqueeze(0)
        out[idx] = min_norm_weights(hull, torch.ones(1, n, dtype=torch.bool))[0].numpy()
        out[num_tasks] = max(float(pi[idx] @ out[idx]), 0.0)
        return out
    root = math.sqrt(q_sq)
    scaled = gram[np.ix_([*idx, num_tasks], [*idx, num_tasks])].copy()
    scaled[:, -1] /= root
    scaled[-1, :] /= root
    linear = np.zeros(n + 1)
    linear[-1] = -c / root
    equality = np.append(np.ones(n), 0.0)
    coupling = np.append(-root * pi[idx], 1.0)  # w_T − Σ π_t w_t >= 0, w_T scaled
    start = np.append(np.full(n, 1.0 / n), max(float(-coupling[:-1].sum()) / n, 0.0))
    bounds = np.vstack([np.eye(n + 1), coupling / np.linalg.norm(coupling)])
    x = np.maximum(active_set_qp(2 * scaled, linear, equality, bounds, start), 0.0)
    out[idx] = x[:n]
    out[num_tasks] = x[n] / root
    return out


def active_set_qp(
    hessian: FloatArray,
    linear: FloatArray,
    equality: FloatArray,
    inequalities: FloatArray,
    start: FloatArray,
) -> FloatArray:
    """``argmin ½ xᵀ H x + fᵀ x`` over ``eᵀ x = 1`` and ``C x >= 0``, from a feasible ``start``.

    The primal active-set method for a convex QP (Nocedal & Wright, *Numerical Optimization*,
    2006, Alg. 16.3), for a positive semi-definite ``H`` whose problem is bounded. On the
    working set W (constraints held as equalities) the step is Newton's in W's null space,
    along its directions of positive curvature (curvatures below ``_CURVATURE_TOL`` times the
    problem's scale are rounding of 0); where the gradient has a part along a direction of
    zero curvature (identical task gradients) the step follows that part instead, a descent
    on which the objective falls linearly, up to the first constraint it meets. Where the
    gradient is orthogonal to W's null space (to ``_KKT_TOL`` times the scale: a rounding-size
    gradient on an ill-conditioned face would move x, not the objective) and no multiplier is
    negative, x is optimal (KKT); a negative multiplier's constraint leaves W. The iteration
    cap is a safeguard against cycling at a degenerate vertex: it returns the feasible point
    reached, with a warning.
    """
    scale = 1.0 + float(np.max(np.abs(hessian))) + float(np.max(np.abs(linear)))
    x = start.astype(np.float64)
    work: list[int] = []
    for i in np.flatnonzero(np.abs(inequalities @ x) <= _KKT_TOL).tolist():
        held = inequalities[[*work, i]]
        if np.linalg.matrix_rank(np.vstack([equality, held])) == len(work) + 2:
            work.append(i)
    for _ in range(_MAX_ITER):
        normals = np.vstack([equality, inequalities[work]])
        gradient = hessian @ x + linear
        _, singular, vt = np.linalg.svd(normals)
        basis = vt[int(np.sum(singular > _KKT_TOL * singular[0])) :].T  # W's null space
        reduced_grad = basis.T @ gradient
        if np.max(np.abs(reduced_grad), initial=0.0) <= _KKT_TOL * scale * (1 + np.abs(x).max()):
            # Stationary on W (to rounding): optimal if no multiplier is negative.
            mult = np.linalg.lstsq(normals.T, gradient, rcond=None)[0][1:]
            if mult.size == 0 or mult.min() >= -_KKT_TOL * scale:
                return x
            work.pop(int(np.argmin(mult)))
            continue
        # The reduced Hessian's curvatures, those within rounding of H's scale taken as 0.
        values, vectors = np.linalg.eigh(basis.T @ hessian @ basis)
        curved = values > _CURVATURE_TOL * scale
        coords = vectors.T @ reduced_grad
        flat_part = np.where(curved, 0.0, coords)
        curved_step = bool(np.max(np.abs(flat_part)) <= _KKT_TOL * scale * (1 + np.abs(x).max()))
        # Newton on the curved directions; where the gradient has a part along a flat one,
        # descend along that part instead (the objective falls linearly until a constraint).
        along = -coords / np.where(curved, values, 1.0) * curved if curved_step else -flat_part
        step = basis @ (vectors @ along)
        moves = inequalities @ step
        reach = np.full(moves.shape, math.inf)
        outside = np.setdiff1d(np.flatnonzero(moves < 0), work)
        reach[outside] = np.maximum(inequalities[outside] @ x, 0.0) / -moves[outside]
        blocking = int(np.argmin(reach))
        length = min(1.0 if curved_step else math.inf, float(reach[blocking]))
        if not math.isfinite(length):
            break  # no constraint ahead of a flat descent: unbounded, which rounding can fake
        x = x + length * step
        if reach[blocking] <= length:
            work.append(blocking)
    logger.warning("FORUM's QP stopped before its KKT conditions held (a degenerate problem)")
    return x
