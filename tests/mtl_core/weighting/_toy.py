"""Small real models, contexts and hand-made problems for the weighting-strategy tests (CPU)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from hypothesis import strategies as st
from torch import Tensor, nn

from mtl_core.context import TaskContext
from mtl_core.production import MultiTaskLoss
from mtl_core.weighting import (
    LookAhead,
    LossWeighting,
    StepInputs,
    WeightingStrategy,
    build_strategy,
    grads_of,
    parse_strategy_config,
)

FloatArray = npt.NDArray[np.float64]
#: Kinds of task-gradient sets for the solver tests (`make_grads`).
GRADIENT_KINDS = ("random", "conflicting", "near_parallel", "identical", "opposite", "zero")


def make_ctx(num_tasks: int = 2, seed: int = 0, epochs: int = 10) -> TaskContext:
    """A CPU task context with a seeded generator."""
    return TaskContext(
        task_names=tuple(f"task{t}" for t in range(num_tasks)),
        device=torch.device("cpu"),
        epochs=epochs,
        generator=torch.Generator().manual_seed(seed),
    )


def make_strategy(
    name: str,
    params: dict[str, Any] | None = None,
    num_tasks: int = 2,
    seeds: Sequence[int] = (0,),
) -> WeightingStrategy[Any]:
    """Strategy ``name`` with one slot per seed, every slot filled with the same config."""
    config = parse_strategy_config(name, params)
    strategy = build_strategy(name, len(seeds), num_tasks, "cpu")
    for slot, seed in enumerate(seeds):
        strategy.reset_slot(slot, config, make_ctx(num_tasks, seed))
    return strategy


def step_inputs(
    losses: Tensor,
    scale: Tensor | Sequence[float] | None = None,
    last_shared: Sequence[Tensor] = (),
    occupied: Tensor | None = None,
) -> StepInputs:
    """`StepInputs` for ``losses`` (``[T]`` is one trial, ``[K, T]`` is K)."""
    if losses.dim() == 1:
        losses = losses.unsqueeze(0)
    scale_t = torch.ones_like(losses) if scale is None else torch.as_tensor(scale)
    scale_t = scale_t.to(losses.dtype).reshape(losses.shape).detach()
    if occupied is None:
        occupied = torch.ones(losses.shape[0], dtype=torch.bool)
    return StepInputs(losses, scale_t, list(last_shared), occupied)


def with_other_batches(strategy: Any, grads: Tensor, inputs: StepInputs) -> StepInputs:
    """``inputs`` with the extra batches' task gradients a multi-batch strategy reads.

    For MoDo and SDMGrad (`WeightingStrategy.batches_per_step` > 1) every extra batch gets
    ``grads`` itself: the walks check finiteness and invariants, not the sampling, which the
    strategies' own oracle tests cover with independent batches.
    """
    count = strategy.batches_per_step - 1
    if count == 0:
        return inputs
    return replace(inputs, extra_grads=(grads,) * count)


def leaf_losses(values: Sequence[float]) -> Tensor:
    """A ``[1, T]`` leaf of losses: its ``.grad`` after a backward is ∂objective/∂L_t."""
    return torch.tensor([list(values)], requires_grad=True)


def loss_step(
    strategy: WeightingStrategy[Any], losses: Sequence[float], scale: Sequence[float] | None = None
) -> tuple[Tensor, Tensor]:
    """One step of a loss-based strategy at K = 1: (weights ``[T]``, ∂objective/∂losses)."""
    assert isinstance(strategy, LossWeighting)
    leaf = leaf_losses(losses)
    objective, weights = strategy.objective(step_inputs(leaf, scale))
    (grad,) = torch.autograd.grad(objective.sum(), [leaf])
    return weights[0], grad[0]


def linear_problem(
    vectors: Tensor | Sequence[Sequence[float]], offsets: Tensor | Sequence[float] | None = None
) -> tuple[nn.Parameter, Tensor]:
    """Shared θ = 0 and losses L_t = c_t + g_t·θ, so ∇_θ L_t = g_t exactly.

    ``vectors`` is ``[T, P]`` (one trial: θ is ``[P]``, losses ``[1, T]``) or ``[K, T, P]``
    (K trials: θ is ``[K, P]``, losses ``[K, T]``, trial k's losses depend on θ_k only).
    """
    g = torch.as_tensor(vectors, dtype=torch.float32)
    if g.dim() == 2:
        theta = nn.Parameter(torch.zeros(g.shape[1]))
        c = torch.as_tensor(offsets if offsets is not None else [1.0] * g.shape[0])
        return theta, (c.float() + g @ theta).unsqueeze(0)
    theta = nn.Parameter(torch.zeros(g.shape[0], g.shape[2]))
    c = torch.as_tensor(offsets) if offsets is not None else torch.ones(g.shape[:2])
    return theta, c.float() + torch.einsum("ktp,kp->kt", g, theta)


def linear_look_ahead(
    theta: Tensor,
    train: Tensor,
    train_offsets: Tensor,
    val: Tensor,
    val_offsets: Tensor,
    lr: float = 0.1,
) -> LookAhead:
    """The `LookAhead` of `linear_problem`'s K trials (``theta`` ``[K, P]``): training losses
    c_t + g_t·θ' (``train`` ``[K, T, P]``, ``train_offsets`` ``[K, T]``) and validation losses
    c'_t + v_t·θ' (``val``, ``val_offsets``)."""
    k = train.shape[0]

    def train_losses(params: Sequence[Tensor]) -> Tensor:
        return train_offsets + torch.einsum("ktp,kp->kt", train, params[0])

    def val_losses(params: Sequence[Tensor]) -> Tensor:
        return val_offsets + torch.einsum("ktp,kp->kt", val, params[0])

    def gradients(objective: Tensor, create_graph: bool = False) -> list[Tensor]:
        return grads_of(objective, [theta], retain=True, create_graph=create_graph)

    return LookAhead(
        params=[theta.detach()],
        trained=[theta],
        train_losses=train_losses,
        val_losses=val_losses,
        gradients=gradients,
        lr=torch.full((k,), lr),
        weight_decay=torch.zeros(k),
    )


#: Four tasks on three shared parameters with an exactly opposite pair (g_0 = -g_1): inputs on
#: which MGDA (T >= 3) and CAGrad once raised `IndexError` (Wolfe's algorithm sat 1e-17 from the
#: origin, could not pass its stop test and emptied its support).
OPPOSITE_PAIR_SETS = [
    [[0.9, -0.3, 0.1], [-0.9, 0.3, -0.1], [-0.2, 0.1, -0.8], [0.2, -0.5, -0.1]],
    [[0.6, 0.9, 0.7], [-0.6, -0.9, -0.7], [-0.9, 0.8, -0.7], [0.4, -0.3, 0.7]],
    [[0.3, -0.2, 0.3], [-0.3, 0.2, -0.3], [-0.4, 0.2, -0.1], [-1.0, -0.5, -0.5]],
]


def production_step(
    name: str,
    vectors: Sequence[Sequence[float]],
    dtype: torch.dtype = torch.float32,
    params: dict[str, Any] | None = None,
) -> tuple[Tensor, Tensor]:
    """One `MultiTaskLoss` step on L_t = 1 + g_t·θ at θ = 0: (the update on θ, weights ``[T]``)."""
    g = torch.tensor(vectors, dtype=dtype)
    theta = nn.Parameter(torch.zeros(g.shape[1], dtype=dtype))
    names = [f"t{t}" for t in range(g.shape[0])]
    loss = MultiTaskLoss(names, name, params)
    weights = loss.backward([1.0 + g[t] @ theta for t in range(g.shape[0])], [theta])
    assert theta.grad is not None
    return theta.grad, torch.tensor([weights[t] for t in names], dtype=torch.float64)


class ToyMTL(nn.Module):
    """A shared Linear + tanh trunk and one Linear head per task."""

    def __init__(self, in_dim: int = 6, hidden: int = 16, num_tasks: int = 2, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh())
            self.heads = nn.ModuleList(nn.Linear(hidden, 1) for _ in range(num_tasks))

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        z = self.trunk(x)
        return [head(z).squeeze(-1) for head in self.heads], z

    def shared(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def task_specific(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())


def toy_data(
    num_tasks: int = 2, n: int = 64, in_dim: int = 6, seed: int = 1
) -> tuple[Tensor, list[Tensor]]:
    """Inputs and regression targets; task t's targets are 10^t times larger (unequal scales)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_dim, generator=g)
    targets = []
    for t in range(num_tasks):
        a = torch.randn(in_dim, generator=g)
        targets.append(torch.tanh(x @ a) * 10.0**t)
    return x, targets


def toy_losses(model: ToyMTL, x: Tensor, targets: list[Tensor]) -> tuple[list[Tensor], Tensor]:
    """Per-task MSE losses and the shared representation."""
    outputs, z = model(x)
    return [nn.functional.mse_loss(o, y) for o, y in zip(outputs, targets, strict=True)], z


def make_grads(kind: str, num_tasks: int, dim: int, scale: float, seed: int) -> FloatArray:
    """``[T, P]`` task gradients of ``kind`` (one of `GRADIENT_KINDS`) times ``scale``."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(dim)
    if kind == "random":
        g = rng.standard_normal((num_tasks, dim))
    elif kind == "conflicting":
        g = rng.standard_normal((num_tasks, dim)) - 2.0 * base
        g[0] = 3.0 * base
    elif kind == "near_parallel":
        g = base + 1e-3 * rng.standard_normal((num_tasks, dim))
    elif kind == "identical":
        g = np.tile(base, (num_tasks, 1))
    elif kind == "opposite":
        g = np.array([base if t % 2 == 0 else -base for t in range(num_tasks)])
    else:
        g = np.zeros((num_tasks, dim))
    return np.asarray(g * scale, dtype=np.float64)


@st.composite
def gradient_batches(
    draw: st.DrawFn, tasks: tuple[int, ...] = (2, 3, 5)
) -> tuple[FloatArray, FloatArray]:
    """``(grads [K, T, P], active [K, T])`` over the gradient kinds and scales 1e-4..1e4."""
    num_tasks = draw(st.sampled_from(tasks))
    num_slots = draw(st.sampled_from((1, 4)))
    dim = draw(st.integers(num_tasks, num_tasks + 4))
    rows, masks = [], []
    for _ in range(num_slots):
        kind = draw(st.sampled_from(GRADIENT_KINDS))
        scale = 10.0 ** draw(st.floats(-4, 4))
        rows.append(make_grads(kind, num_tasks, dim, scale, draw(st.integers(0, 2**31))))
        masks.append(draw(st.lists(st.booleans(), min_size=num_tasks, max_size=num_tasks)))
    return np.stack(rows), np.array(masks, dtype=bool)
