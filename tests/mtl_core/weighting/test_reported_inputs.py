"""Inputs that once broke a strategy, each a test on the strategy as the trainer calls it."""

from __future__ import annotations

from typing import Any

import torch

from mtl_core.context import TaskContext
from mtl_core.weighting import LossWeighting, StepInputs, build_strategy, parse_strategy_config


def _filled(name: str, num_tasks: int, params: dict[str, Any] | None = None) -> LossWeighting[Any]:
    strategy = build_strategy(name, 1, num_tasks)
    assert isinstance(strategy, LossWeighting)
    ctx = TaskContext(
        tuple(f"t{i}" for i in range(num_tasks)), torch.device("cpu"), 1, torch.Generator()
    )
    strategy.reset_slot(0, parse_strategy_config(name, params), ctx)
    return strategy


def _inputs(losses: list[float]) -> StepInputs:
    values = torch.tensor([losses], requires_grad=True)
    return StepInputs(
        losses=values,
        scale=torch.ones_like(values).detach(),
        last_shared=[],
        occupied=torch.ones(1, dtype=torch.bool),
    )


def test_loss_balance_with_a_first_loss_of_zero_stays_finite() -> None:
    strategy = _filled("loss_balance", 2)
    inputs = _inputs([0.0, 1.0])
    objective, weights = strategy.objective(inputs)
    (grad,) = torch.autograd.grad(objective.sum(), [inputs.losses])
    assert torch.isfinite(weights).all() and torch.isfinite(grad).all()
    assert abs(float(weights.sum()) - 2.0) < 1e-5
    # The zero-loss task is capped, not given everything: its partner keeps a real weight.
    assert float(weights[0, 1]) > 1e-7


def test_loss_balance_with_every_loss_zero_is_uniform() -> None:
    strategy = _filled("loss_balance", 2)
    inputs = _inputs([0.0, 0.0])
    objective, weights = strategy.objective(inputs)
    (grad,) = torch.autograd.grad(objective.sum(), [inputs.losses])
    assert torch.equal(weights, torch.ones(1, 2))
    assert torch.isfinite(grad).all()


def test_loss_balance_with_losses_far_apart_does_not_overflow() -> None:
    strategy = _filled("loss_balance", 3)
    inputs = _inputs([1e-30, 1.0, 3e38])
    _, weights = strategy.objective(inputs)
    assert torch.isfinite(weights).all()
    assert abs(float(weights.sum()) - 3.0) < 1e-4
