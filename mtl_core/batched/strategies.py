"""Batched forms of the weighting strategies: K trials' state as tensors of leading dim K.

Each class here mirrors one strategy of `mtl_core.weighting` formula for formula (read that
module's docstring for the method and its paper); only the layout differs: per-trial state is
``[K, T]`` (weights, uncertainty's s, DWA's last two epoch losses, loss_balance's EMAs,
FAMO's logits and their Adam moments, GradNorm's w) and per-trial hyper-parameters are ``[K]``.
Randomness (RLW's draws, PCGrad's task order) comes from each trial's own seeded generator
(``TaskContext.generator``), drawn in the same order as the one-by-one trainer draws it, so a
trial trained in a batch equals the same trial trained alone.

Two kinds of strategy:

* loss-based (`BatchedStrategy.objective`): return a ``[K]`` objective whose gradient, summed
  over trials, is each trial's own update (trials share no parameter, so one backward of the
  sum gives every trial its own gradient);
* gradient-based (``uses_task_gradients``; `BatchedStrategy.combine`): receive the per-trial,
  per-task gradients on the shared parameters as one ``[K, T, P]`` tensor (computed with T
  backward passes over all K trials at once, never a loop over trials) and return the
  combined ``[K, P]`` gradient; the projections / min-norm solvers are batched over K.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from mtl_core.context import TaskContext
from mtl_core.errors import ConfigError
from mtl_core.weighting import STRATEGIES
from mtl_core.weighting._base import StrategyConfig


@dataclass
class StepInputs:
    """What a batched strategy sees at one step.

    Args:
        losses: ``[K, T]`` task losses with graph.
        scale: ``[K, T]`` detached, fixed weights × schedule multipliers (0 = inactive).
        last_shared: the stacked last-shared-layer parameters (GradNorm's W).
        occupied: ``[K]`` bool, slots holding a live trial (free slots must not change).
    """

    losses: Tensor
    scale: Tensor
    last_shared: Sequence[Tensor]
    occupied: Tensor


def _to_device(host: Tensor, device: torch.device) -> Tensor:
    """Copy a small CPU tensor to ``device`` without making the host wait for the GPU."""
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def masked_softmax(logits: Tensor, active: Tensor) -> Tensor:
    """Row-wise softmax over the active entries (inactive ones, and empty rows, get 0)."""
    masked = torch.where(active, logits, torch.full_like(logits, float("-inf")))
    return torch.nan_to_num(torch.softmax(masked, dim=-1), nan=0.0)


def normalise(weights: Tensor, active: Tensor) -> Tensor:
    """Row-wise: Σ = number of active tasks, 0 elsewhere; a row with total <= 0 gets 1s."""
    weights = torch.where(active, weights.detach(), torch.zeros_like(weights))
    total = weights.sum(dim=-1, keepdim=True)
    positive = total > 0
    safe_total = torch.where(positive, total, torch.ones_like(total))
    scaled = weights * active.sum(dim=-1, keepdim=True).to(weights.dtype) / safe_total
    return torch.where(positive, scaled, active.to(weights.dtype))


class BatchedStrategy(abc.ABC):
    """Base class of the batched strategies (K slots, T tasks).

    Args:
        num_slots: K.
        num_tasks: T.
        device: where the state lives.
    """

    name: ClassVar[str]
    uses_task_gradients: ClassVar[bool] = False

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        self.num_slots = num_slots
        self.num_tasks = num_tasks
        self.device = device
        self.contexts: list[TaskContext | None] = [None] * num_slots

    def _zeros(self, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.zeros(self.num_slots, self.num_tasks, device=self.device, dtype=dtype)

    def _per_slot(self, value: float = 0.0) -> Tensor:
        return torch.full((self.num_slots,), value, device=self.device)

    def reset_slot(self, slot: int, config: StrategyConfig, ctx: TaskContext) -> None:
        """Put a new trial (its typed strategy config and context) in ``slot``."""
        self.contexts[slot] = ctx

    def parameters(self) -> list[Tensor]:
        """Stacked learnable tensors ``[K, ...]`` trained by the trials' optimizer."""
        return []

    def on_epoch_end(self, ended: Tensor, mean_losses: Tensor) -> None:  # noqa: B027
        """``ended``: ``[K]`` bool, slots that finished an epoch; ``mean_losses``: ``[K, T]``."""

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        """Loss-based strategies: (``[K]`` objective with graph, ``[K, T]`` weights)."""
        raise NotImplementedError(f"{self.name} combines task gradients")

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        """Gradient strategies: ``[K, T, P]`` task gradients → (``[K, P]``, ``[K, T]``)."""
        raise NotImplementedError(f"{self.name} is loss-based")


BATCHED: dict[str, type[BatchedStrategy]] = {}


def _register(cls: type[BatchedStrategy]) -> type[BatchedStrategy]:
    if cls.name not in STRATEGIES:
        raise ValueError(f"batched strategy {cls.name!r} has no one-by-one strategy")
    BATCHED[cls.name] = cls
    return cls


def build_batched_strategy(
    name: str, num_slots: int, num_tasks: int, device: torch.device
) -> BatchedStrategy:
    """The batched form of strategy ``name``; `ConfigError` if it has none."""
    try:
        cls = BATCHED[name]
    except KeyError:
        raise ConfigError(
            f"strategy {name!r} has no batched form; batched: {', '.join(sorted(BATCHED))}"
        ) from None
    return cls(num_slots, num_tasks, device)


def parse_strategy_config(name: str, params: dict[str, Any]) -> StrategyConfig:
    """The strategy's typed config, validated like the one-by-one trainer does."""
    from mtl_core.components import parse_config

    cls = STRATEGIES.get(name)
    return parse_config("strategy", name, cls.config_cls, params)


# --- loss-based ------------------------------------------------------------------------------


@_register
class BatchedFixed(BatchedStrategy):
    """`mtl_core.weighting.fixed.Fixed`: L = Σ_t scale_t L_t."""

    name = "fixed"

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        active = inputs.scale > 0
        objective = (inputs.losses * inputs.scale).sum(dim=-1)
        return objective, normalise(active.to(inputs.losses.dtype), active)


@_register
class BatchedUncertainty(BatchedStrategy):
    """`mtl_core.weighting.uncertainty.Uncertainty`: s ``[K, T]``, L = Σ scale (e^{−s} L + s)."""

    name = "uncertainty"

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.log_vars = self._zeros().requires_grad_(True)

    def reset_slot(self, slot: int, config: StrategyConfig, ctx: TaskContext) -> None:
        super().reset_slot(slot, config, ctx)
        with torch.no_grad():
            self.log_vars[slot].zero_()

    def parameters(self) -> list[Tensor]:
        return [self.log_vars]

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        s = self.log_vars
        scale = inputs.scale
        objective = (scale * (torch.exp(-s) * inputs.losses + s)).sum(dim=-1)
        return objective, normalise(torch.exp(-s.detach()), scale > 0)


@_register
class BatchedDWA(BatchedStrategy):
    """`mtl_core.weighting.dwa.DWA`: per-slot last two epoch-mean losses and τ ``[K]``."""

    name = "dwa"

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.tau = self._per_slot(2.0)
        self.before = self._zeros()
        self.last = self._zeros()
        self.epochs_seen = torch.zeros(num_slots, device=device, dtype=torch.long)

    def reset_slot(self, slot: int, config: StrategyConfig, ctx: TaskContext) -> None:
        super().reset_slot(slot, config, ctx)
        self.tau[slot] = float(config.tau)  # type: ignore[attr-defined]
        self.before[slot] = 0
        self.last[slot] = 0
        self.epochs_seen[slot] = 0

    def on_epoch_end(self, ended: Tensor, mean_losses: Tensor) -> None:
        mask = ended.unsqueeze(-1)
        losses = mean_losses.detach().to(self.device, torch.float32)
        self.before = torch.where(mask, self.last, self.before)
        self.last = torch.where(mask, losses, self.last)
        self.epochs_seen = self.epochs_seen + ended.long()

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        active = inputs.scale > 0
        ratio = self.last / self.before.clamp_min(torch.finfo(self.before.dtype).tiny)
        ratio = torch.where(torch.isfinite(ratio), ratio, torch.ones_like(ratio))
        dynamic = masked_softmax(ratio / self.tau.unsqueeze(-1), active) * active.sum(
            dim=-1, keepdim=True
        )
        warm = (self.epochs_seen >= 2).unsqueeze(-1)
        weights = torch.where(warm, dynamic, active.to(torch.float32)).to(inputs.losses.dtype)
        objective = (weights * inputs.scale * inputs.losses).sum(dim=-1)
        return objective, normalise(weights, active)


@_register
class BatchedRLW(BatchedStrategy):
    """`mtl_core.weighting.rlw.RLW`: z ~ N(0, I) from each trial's own generator every step."""

    name = "rlw"

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        # One small CPU draw per live trial keeps each trial's stream identical to its
        # one-by-one run; free slots draw nothing (their generator is gone).
        rows = [
            torch.randn(self.num_tasks, generator=ctx.generator)
            if ctx is not None
            else torch.zeros(self.num_tasks)
            for ctx in self.contexts
        ]
        losses = inputs.losses
        z = _to_device(torch.stack(rows), losses.device).to(losses.dtype)
        active = inputs.scale > 0
        weights = masked_softmax(z, active)
        objective = (weights * inputs.scale * losses).sum(dim=-1)
        return objective, weights * active.sum(dim=-1, keepdim=True).to(weights.dtype)


@_register
class BatchedLossBalance(BatchedStrategy):
    """`mtl_core.weighting.loss_balance.LossBalance`: EMAs, counts and starts as ``[K, T]``."""

    name = "loss_balance"

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.beta = self._per_slot(0.9)
        self.gamma = self._per_slot(1.0)
        self.ema = self._zeros()
        self.count = self._zeros()
        self.start = torch.ones_like(self.ema)

    def reset_slot(self, slot: int, config: StrategyConfig, ctx: TaskContext) -> None:
        super().reset_slot(slot, config, ctx)
        self.beta[slot] = float(config.beta)  # type: ignore[attr-defined]
        self.gamma[slot] = float(config.gamma)  # type: ignore[attr-defined]
        self.ema[slot] = 0
        self.count[slot] = 0
        self.start[slot] = 1

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        active = (inputs.scale > 0) & inputs.occupied.unsqueeze(-1)
        detached = inputs.losses.detach().to(self.ema.dtype)
        tiny = torch.finfo(self.ema.dtype).tiny
        beta = self.beta.unsqueeze(-1)
        first = active & (self.count == 0)
        self.ema = torch.where(active, beta * self.ema + (1 - beta) * detached, self.ema)
        self.count = self.count + active.to(self.count.dtype)
        correction = 1 - torch.pow(beta.expand_as(self.count), self.count)
        ema = self.ema / correction.clamp_min(tiny)
        self.start = torch.where(first, ema, self.start)
        ema = ema.clamp_min(tiny)
        progress = ema / self.start.clamp_min(tiny)
        n_active = active.sum(dim=-1, keepdim=True).clamp_min(1).to(progress.dtype)
        mean_progress = (
            torch.where(active, progress, torch.zeros_like(progress)).sum(-1, keepdim=True)
            / n_active
        )
        slowness = progress / mean_progress.clamp_min(tiny)
        raw = (1 + self.gamma.unsqueeze(-1) * slowness) / ema
        weights = normalise(raw, active).to(inputs.losses.dtype)
        objective = (weights * inputs.scale * inputs.losses).sum(dim=-1)
        return objective, weights


@_register
class BatchedFAMO(BatchedStrategy):
    """`mtl_core.weighting.famo.FAMO`: logits ξ ``[K, T]`` with their own batched Adam."""

    name = "famo"
    _betas = (0.9, 0.999)
    _adam_eps = 1e-8

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.eps = self._per_slot(1e-8)
        self.lr = self._per_slot(0.025)
        self.weight_decay = self._per_slot(1e-3)
        self.logits = self._zeros()
        self.exp_avg = self._zeros()
        self.exp_avg_sq = self._zeros()
        self.adam_steps = torch.zeros(num_slots, device=device, dtype=torch.float64)
        self.prev_log_losses = self._zeros()
        self.prev_active = self._zeros(torch.bool)
        self.has_prev = torch.zeros(num_slots, device=device, dtype=torch.bool)

    def reset_slot(self, slot: int, config: StrategyConfig, ctx: TaskContext) -> None:
        super().reset_slot(slot, config, ctx)
        self.eps[slot] = float(config.eps)  # type: ignore[attr-defined]
        self.lr[slot] = float(config.lr)  # type: ignore[attr-defined]
        self.weight_decay[slot] = float(config.weight_decay)  # type: ignore[attr-defined]
        for state in (self.logits, self.exp_avg, self.exp_avg_sq, self.prev_log_losses):
            state[slot] = 0
        self.adam_steps[slot] = 0
        self.prev_active[slot] = False
        self.has_prev[slot] = False

    def _update_logits(self, log_losses: Tensor, active: Tensor) -> None:
        both = active & self.prev_active
        delta = torch.where(both, self.prev_log_losses - log_losses, torch.zeros_like(log_losses))
        z = masked_softmax(self.logits, both)
        grad = z * (delta - (z * delta).sum(dim=-1, keepdim=True))
        step = self.has_prev
        self.adam_steps = self.adam_steps + step.double()
        beta1, beta2 = self._betas
        steps = self.adam_steps.clamp(min=1)
        bc1 = (1 - beta1**steps).unsqueeze(-1)
        bc2_sqrt = (1 - beta2**steps).sqrt().unsqueeze(-1)
        grad = grad + self.weight_decay.unsqueeze(-1) * self.logits
        m = torch.lerp(self.exp_avg, grad, 1 - beta1)
        v = torch.addcmul(self.exp_avg_sq * beta2, grad, grad, value=1 - beta2)
        denom = v.sqrt() / bc2_sqrt.float() + self._adam_eps
        new_logits = self.logits - (self.lr.unsqueeze(-1).double() / bc1).float() * (m / denom)
        keep = step.unsqueeze(-1)
        self.exp_avg = torch.where(keep, m, self.exp_avg)
        self.exp_avg_sq = torch.where(keep, v, self.exp_avg_sq)
        self.logits = torch.where(keep, new_logits, self.logits)

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        losses, scale = inputs.losses, inputs.scale
        active = scale > 0
        eps = self.eps.unsqueeze(-1).to(losses.dtype)
        log_losses = torch.log(losses.detach() + eps)
        self._update_logits(log_losses.float(), active)
        occupied = inputs.occupied
        self.prev_log_losses = log_losses.float()
        self.prev_active = active
        self.has_prev = self.has_prev | occupied
        z = masked_softmax(self.logits, active).to(losses.dtype)
        shifted = losses + eps
        c = (z / shifted.detach()).sum(dim=-1, keepdim=True)
        tiny = torch.finfo(losses.dtype).tiny
        objective = (scale * z * torch.log(shifted) / c.clamp_min(tiny)).sum(dim=-1)
        return objective, normalise(z / (c.clamp_min(tiny) * shifted.detach()), active)


@_register
class BatchedGradNorm(BatchedStrategy):
    """`mtl_core.weighting.gradnorm.GradNorm`: w ``[K, T]``; G_t from T backward passes."""

    name = "gradnorm"
    min_weight = 1e-4

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.alpha = self._per_slot(1.5)
        self.weights = torch.ones(num_slots, num_tasks, device=device).requires_grad_(True)
        self.initial = torch.ones(num_slots, num_tasks, device=device)
        self.has_initial = self._zeros(torch.bool)

    def reset_slot(self, slot: int, config: StrategyConfig, ctx: TaskContext) -> None:
        super().reset_slot(slot, config, ctx)
        self.alpha[slot] = float(config.alpha)  # type: ignore[attr-defined]
        with torch.no_grad():
            self.weights[slot] = 1
        self.initial[slot] = 1
        self.has_initial[slot] = False

    def parameters(self) -> list[Tensor]:
        return [self.weights]

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        if not inputs.last_shared:
            raise ConfigError(
                "strategy 'gradnorm' needs an architecture with shared parameters "
                "(hard sharing or MMoE); this model has none"
            )
        losses, scale = inputs.losses, inputs.scale
        with torch.no_grad():
            w = self.weights
            w.clamp_(min=self.min_weight)
            w.mul_(self.num_tasks / w.sum(dim=-1, keepdim=True))
        active = scale > 0
        detached = losses.detach()
        first = active & ~self.has_initial
        self.initial = torch.where(first, detached, self.initial)
        self.has_initial = self.has_initial | active
        norms = []
        for t in range(self.num_tasks):
            # One backward per task reaches all K trials (their losses are independent).
            grads = torch.autograd.grad(
                losses[:, t].sum(),
                list(inputs.last_shared),
                retain_graph=True,
                allow_unused=True,
                materialize_grads=True,
            )
            sq = torch.stack([g.pow(2).reshape(g.shape[0], -1).sum(-1) for g in grads]).sum(0)
            norms.append(sq.sqrt())
        grad_norms = torch.stack(norms, dim=-1).to(losses.dtype)
        tiny = torch.finfo(detached.dtype).tiny
        n_active = active.sum(-1, keepdim=True).clamp_min(1).to(losses.dtype)
        zero = torch.zeros_like(detached)
        g_w = self.weights.abs() * grad_norms
        g_mean = torch.where(active, g_w.detach(), zero).sum(-1, keepdim=True) / n_active
        rel_loss = detached / self.initial.clamp_min(tiny)
        rel_mean = torch.where(active, rel_loss, zero).sum(-1, keepdim=True) / n_active
        rate = rel_loss / rel_mean.clamp_min(tiny)
        target = (g_mean * rate.pow(self.alpha.unsqueeze(-1))).detach()
        gradnorm_loss = torch.where(active, (g_w - target).abs(), zero).sum(-1)
        w_det = self.weights.detach()
        objective = (w_det * scale * losses).sum(-1) + gradnorm_loss
        return objective, normalise(w_det, active)


# --- gradient-based --------------------------------------------------------------------------


def _task_specific_inactive(grads: Tensor, active: Tensor) -> Tensor:
    """Zero the rows of ``[K, T, P]`` gradients of inactive tasks (their scale is 0 anyway)."""
    return torch.where(active.unsqueeze(-1), grads, torch.zeros_like(grads))


@_register
class BatchedPCGrad(BatchedStrategy):
    """`mtl_core.weighting.pcgrad.PCGrad`, batched over K with each trial's own task orders.

    The orders are drawn on the CPU from each trial's generator exactly as the one-by-one
    strategy draws them (one ``randperm(T)`` per task and step); the projections then run
    on all K trials at once, looping over the T x T task pairs only.
    """

    name = "pcgrad"
    uses_task_gradients = True

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        k, t = grads.shape[0], grads.shape[1]
        orders = _to_device(
            torch.stack(
                [
                    torch.stack([torch.randperm(t, generator=ctx.generator) for _ in range(t)])
                    if ctx is not None
                    else torch.arange(t).repeat(t, 1)
                    for ctx in self.contexts
                ]
            ),
            grads.device,
        )  # [K, T(i), T(position)]
        sq_norms = (grads * grads).sum(dim=-1).clamp_min(torch.finfo(grads.dtype).tiny)
        rows = torch.arange(k, device=grads.device)
        projected = []
        for i in range(t):
            g = grads[:, i]
            for pos in range(t):
                j = orders[:, i, pos]  # [K]
                g_j = grads[rows, j]
                dot = (g * g_j).sum(dim=-1)
                conflict = (dot < 0) & (j != i)
                coef = torch.where(conflict, dot / sq_norms[rows, j], torch.zeros_like(dot))
                g = g - coef.unsqueeze(-1) * g_j
            projected.append(g)
        combined = torch.stack(projected, dim=1).sum(dim=1)
        active = inputs.scale > 0
        return combined, normalise(active.to(inputs.losses.dtype), active)


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


@_register
class BatchedMGDA(BatchedStrategy):
    """`mtl_core.weighting.mgda.MGDA` on ``[K, T, P]`` gradients (Gram matrices batched).

    ``upper_bound`` (MGDA-UB) is not batched: such a trial falls back to one-by-one training.
    """

    name = "mgda"
    uses_task_gradients = True
    _modes = ("none", "l2", "loss", "loss+")

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.mode = torch.zeros(num_slots, dtype=torch.long, device=device)
        self.max_iter = torch.full((num_slots,), 250, dtype=torch.long, device=device)
        self.max_iter_host = [1] * num_slots

    def reset_slot(self, slot: int, config: StrategyConfig, ctx: TaskContext) -> None:
        super().reset_slot(slot, config, ctx)
        if config.upper_bound:  # type: ignore[attr-defined]
            raise ConfigError("strategy 'mgda' with upper_bound=true has no batched form")
        self.mode[slot] = self._modes.index(config.normalization)  # type: ignore[attr-defined]
        self.max_iter[slot] = int(config.max_iter)  # type: ignore[attr-defined]
        self.max_iter_host[slot] = int(config.max_iter)  # type: ignore[attr-defined]

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        losses = inputs.losses.detach()
        active = inputs.scale > 0
        ones = torch.ones_like(losses)
        mode = self.mode.unsqueeze(-1)
        g_norm = grads.norm(dim=-1)
        norms = torch.where(
            mode == 0,
            ones,
            torch.where(mode == 1, g_norm, torch.where(mode == 2, losses, losses * g_norm)),
        )
        norms = torch.where(active & (norms > 0), norms, ones)
        normalised = grads / norms.unsqueeze(-1)
        gram = normalised @ normalised.transpose(-1, -2)
        limit = max(self.max_iter_host, default=1)
        alpha = min_norm_weights(gram, active, self.max_iter, max_iter_host=limit)
        single = active.sum(dim=-1, keepdim=True) == 1
        coeff = torch.where(single, active.to(alpha.dtype), alpha / norms)
        combined = torch.einsum("kt,ktp->kp", coeff, grads)
        return combined, normalise(coeff, active)


@_register
class BatchedCAGrad(BatchedStrategy):
    """`mtl_core.weighting.cagrad.CAGrad`: gradients and Gram matrices batched over K.

    The ``T x T`` dual (a backtracking projected-gradient solve) runs on the host per trial,
    as the one-by-one strategy does; one transfer per step carries all K Gram matrices.
    """

    name = "cagrad"
    uses_task_gradients = True

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.c = [0.4] * num_slots
        self.rescale = [1] * num_slots

    def reset_slot(self, slot: int, config: StrategyConfig, ctx: TaskContext) -> None:
        super().reset_slot(slot, config, ctx)
        self.c[slot] = float(config.c)  # type: ignore[attr-defined]
        self.rescale[slot] = int(config.rescale)  # type: ignore[attr-defined]

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        import math

        import numpy as np

        from mtl_core.weighting._gradients import cagrad_dual

        active = inputs.scale > 0
        gram = grads @ grads.transpose(-1, -2)
        host_gram = gram.double().cpu().numpy()
        host_active = active.cpu().numpy()
        coeffs = np.zeros(active.shape, dtype=np.float64)
        for k in range(grads.shape[0]):  # the T x T solve only; gradients stay batched
            mask = host_active[k]
            idx = np.flatnonzero(mask)
            c = self.c[k]
            if c == 0 or self.contexts[k] is None:
                coeffs[k] = mask / max(idx.size, 1)
            elif idx.size == 1:
                coeffs[k, idx[0]] = 1.0
            elif idx.size > 1:
                g = host_gram[k][np.ix_(idx, idx)]
                w = cagrad_dual(g, c)
                b = np.full(idx.size, 1.0 / idx.size)
                g0_norm = math.sqrt(max(float(b @ g @ b), 0.0))
                gw_norm = math.sqrt(max(float(w @ g @ w), 0.0))
                lam = c * g0_norm / (gw_norm + 1e-8)
                divisor = {0: 1.0, 1: 1.0 + c**2, 2: 1.0 + c}[self.rescale[k]]
                coeffs[k, idx] = (b + lam * w) / divisor
        coeff = torch.from_numpy(coeffs).to(grads.device, grads.dtype)
        combined = torch.einsum("kt,ktp->kp", coeff, grads)
        return combined, normalise(coeff, active)


class MixedStrategy:
    """Several batched strategies of one kind sharing the K slots; each slot has one owner.

    Every member computes over all K (cheap ``[K, T]`` work) and each slot takes its owner's
    result, so a batch can hold fixed, DWA and uncertainty trials side by side (or PCGrad
    and MGDA trials). A member's randomness is drawn only for the slots it owns.
    """

    def __init__(self, names: Sequence[str], num_slots: int, num_tasks: int, device: torch.device):
        self.names = sorted(set(names))
        kinds = {BATCHED[n].uses_task_gradients for n in self.names if n in BATCHED}
        if len(kinds) > 1:
            raise ConfigError("loss-based and gradient strategies cannot share one batch")
        self.members = {
            n: build_batched_strategy(n, num_slots, num_tasks, device) for n in self.names
        }
        self.uses_task_gradients = kinds.pop() if kinds else False
        self.owner = torch.full((num_slots,), -1, dtype=torch.long, device=device)
        self.device = device
        self.num_slots = num_slots
        self.num_tasks = num_tasks

    def add_member(self, name: str) -> list[Tensor]:
        """Make room for strategy ``name`` (a refill); returns its new learnable tensors."""
        if name in self.members:
            return []
        cls = BATCHED.get(name)
        if cls is None or cls.uses_task_gradients != self.uses_task_gradients:
            raise ConfigError(f"strategy {name!r} cannot join this batch ({self.names})")
        member = cls(self.num_slots, self.num_tasks, self.device)
        self.members[name] = member
        self.names.append(name)
        return member.parameters()

    def reset_slot(self, slot: int, name: str, config: StrategyConfig, ctx: TaskContext) -> None:
        if name not in self.members:
            self.add_member(name)
        for member_name, member in self.members.items():
            if member_name == name:
                member.reset_slot(slot, config, ctx)
            else:
                member.contexts[slot] = None
        self.owner[slot] = self.names.index(name)

    def release_slot(self, slot: int) -> None:
        for member in self.members.values():
            member.contexts[slot] = None
        self.owner[slot] = -1

    def parameters(self) -> list[Tensor]:
        return [p for member in self.members.values() for p in member.parameters()]

    def on_epoch_end(self, ended: Tensor, mean_losses: Tensor) -> None:
        for index, member in enumerate(self.members.values()):
            member.on_epoch_end(ended & (self.owner == index), mean_losses)

    def _select(self, results: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        if len(results) == 1:
            return results[0]
        first, weights = results[0]
        for index, (value, w) in enumerate(results[1:], start=1):
            mine = self.owner == index
            first = torch.where(mine.reshape(-1, *([1] * (first.dim() - 1))), value, first)
            weights = torch.where(mine.unsqueeze(-1), w, weights)
        return first, weights

    def _member_inputs(self, inputs: StepInputs, index: int) -> StepInputs:
        occupied = inputs.occupied & (self.owner == index)
        return StepInputs(inputs.losses, inputs.scale, inputs.last_shared, occupied)

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        return self._select(
            [
                member.objective(self._member_inputs(inputs, i))
                for i, member in enumerate(self.members.values())
            ]
        )

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        return self._select(
            [
                member.combine(grads, self._member_inputs(inputs, i))
                for i, member in enumerate(self.members.values())
            ]
        )
