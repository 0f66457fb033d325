"""Loss balancing: hand-computed inverse-EMA weights with the slowness boost."""

from __future__ import annotations

import torch

from mtl_core.weighting import ParameterGroups, build_strategy
from tests.mtl_core.weighting._toy import make_ctx, step_ctx

EMPTY = ParameterGroups(shared=[], task_specific=[], last_shared=[])


def _step(strategy, losses: list[float], scale: list[float] | None = None):
    leaf = torch.tensor(losses, requires_grad=True)
    weights = strategy.backward(leaf, torch.tensor(scale or [1.0] * len(losses)), EMPTY, step_ctx())
    return weights, leaf.grad


def test_two_steps_by_hand() -> None:
    strategy = build_strategy("loss_balance", {"beta": 0.5, "gamma": 1.0}, make_ctx(2))
    # Step 1: m̂ = (2, 4) = start, slowness (1, 1), raw = 2 / m̂ = (1, 0.5).
    weights, grad = _step(strategy, [2.0, 4.0])
    torch.testing.assert_close(weights, torch.tensor([4 / 3, 2 / 3]))
    torch.testing.assert_close(grad, weights)
    # Step 2: m = (1, 3), m̂ = m / 0.75 = (4/3, 4), rho = (2/3, 1), slowness = (0.8, 1.2),
    # raw = (1.8 / (4/3), 2.2 / 4) = (1.35, 0.55).
    weights, _ = _step(strategy, [1.0, 4.0])
    torch.testing.assert_close(weights, torch.tensor([2 * 1.35 / 1.9, 2 * 0.55 / 1.9]))


def test_boost_favours_the_slow_task() -> None:
    plain = build_strategy("loss_balance", {"beta": 0.5, "gamma": 0.0}, make_ctx(2))
    boosted = build_strategy("loss_balance", {"beta": 0.5, "gamma": 1.0}, make_ctx(2))
    for losses in ([2.0, 4.0], [1.0, 4.0], [0.5, 3.9]):
        w_plain, _ = _step(plain, losses)
        w_boost, _ = _step(boosted, losses)
    assert w_boost[1] > w_plain[1]


def test_inactive_task_keeps_its_ema_and_gets_zero_weight() -> None:
    strategy = build_strategy("loss_balance", {"beta": 0.5}, make_ctx(2))
    _step(strategy, [2.0, 4.0])
    weights, grad = _step(strategy, [1.0, 100.0], [1.0, 0.0])
    assert weights.tolist() == [1.0, 0.0]
    assert grad is not None and grad[1] == 0
    # Task 1's EMA did not see the 100: back to both active, same state as a fresh step.
    weights, _ = _step(strategy, [1.0, 4.0])
    assert weights[1] > 0.3
