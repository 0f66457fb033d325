"""Inputs that once broke a strategy, each a test on the strategy as the trainer calls it."""

from __future__ import annotations

from typing import Any

import torch

from mtl_core.context import TaskContext
from mtl_core.weighting import (
    GradientWeighting,
    LossWeighting,
    StepInputs,
    build_strategy,
    parse_strategy_config,
)


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


def _cagrad_step(vectors: list[list[float]], c: float) -> torch.Tensor:
    strategy = build_strategy("cagrad", 1, len(vectors))
    assert isinstance(strategy, GradientWeighting)
    ctx = TaskContext(
        tuple(f"t{i}" for i in range(len(vectors))), torch.device("cpu"), 1, torch.Generator()
    )
    strategy.reset_slot(0, parse_strategy_config("cagrad", {"c": c}), ctx)
    grads = torch.tensor([vectors])
    inputs = _inputs([1.0] * len(vectors))
    combined, _ = strategy.combine(grads, inputs)
    return combined[0]


def test_cagrad_step_when_two_task_gradients_nearly_cancel() -> None:
    # g0 = (0, 5/3, 2e-3/3); the dual's optimum weighs g1 and g2 alike (the problem is
    # symmetric in them), so the step has no x part. A float32 Gram matrix once gave
    # (-4.0, 1.437, 57471).
    step = _cagrad_step([[10.0, 0.0, 1e-3], [-10.0, 0.0, 1e-3], [0.0, 5.0, 0.0]], 0.4)
    torch.testing.assert_close(step, torch.tensor([0.0, 1.43678, 0.575287]), atol=2e-4, rtol=1e-4)


def test_cagrad_step_of_two_opposite_gradients_with_a_common_part() -> None:
    # g0 = (0, 1e-3) and the best g_w is g0 itself: d = g0 (1 + c) / (1 + c²).
    step = _cagrad_step([[10.0, 1e-3], [-10.0, 1e-3]], 0.4)
    torch.testing.assert_close(step, torch.tensor([0.0, 1e-3 * 1.4 / 1.16]), atol=1e-6, rtol=1e-3)


def test_cagrad_with_a_nan_gradient_gives_a_nan_step_not_an_exception() -> None:
    step = _cagrad_step([[float("nan"), 1.0], [0.0, 1.0]], 0.4)
    assert torch.isnan(step).all()
