"""Small real models and contexts for the weighting-strategy tests (CPU, built in-process)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_core.context import StepContext, TaskContext
from mtl_core.weighting import ParameterGroups


def make_ctx(num_tasks: int = 2, seed: int = 0, epochs: int = 10) -> TaskContext:
    """A CPU task context with a seeded generator."""
    return TaskContext(
        task_names=tuple(f"task{t}" for t in range(num_tasks)),
        device=torch.device("cpu"),
        epochs=epochs,
        generator=torch.Generator().manual_seed(seed),
    )


def step_ctx(epoch: int = 0, step: int = 0, steps_per_epoch: int = 10) -> StepContext:
    return StepContext(
        epoch=epoch,
        step=step,
        steps_per_epoch=steps_per_epoch,
        global_step=epoch * steps_per_epoch + step,
    )


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

    def groups(self, representation: Tensor | None = None) -> ParameterGroups:
        return ParameterGroups(
            shared=list(self.trunk.parameters()),
            task_specific=list(self.heads.parameters()),
            last_shared=list(self.trunk[0].parameters()),
            representation=representation,
        )


def toy_data(num_tasks: int = 2, n: int = 64, in_dim: int = 6, seed: int = 1):
    """Inputs and regression targets; task t's targets are 10^t times larger (unequal scales)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_dim, generator=g)
    targets = []
    for t in range(num_tasks):
        a = torch.randn(in_dim, generator=g)
        targets.append(torch.tanh(x @ a) * 10.0**t)
    return x, targets


def toy_losses(model: ToyMTL, x: Tensor, targets: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-task MSE ``[T]`` and the shared representation."""
    outputs, z = model(x)
    losses = torch.stack(
        [nn.functional.mse_loss(o, y) for o, y in zip(outputs, targets, strict=True)]
    )
    return losses, z


def linear_problem(vectors: list[list[float]], offsets: list[float] | None = None):
    """One shared parameter θ = 0 and losses L_t = c_t + g_t·θ, so ∇_θ L_t = g_t exactly."""
    g = torch.tensor(vectors, dtype=torch.float32)
    theta = nn.Parameter(torch.zeros(g.shape[1]))
    c = torch.tensor(offsets if offsets is not None else [1.0] * g.shape[0])
    losses = c + g @ theta
    groups = ParameterGroups(shared=[theta], task_specific=[], last_shared=[theta])
    return theta, losses, groups
