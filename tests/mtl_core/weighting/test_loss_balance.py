"""Loss balancing: hand-computed inverse-EMA weights with the slowness boost."""

from __future__ import annotations

import torch

from tests.mtl_core.weighting._toy import loss_step, make_strategy


def test_two_steps_by_hand() -> None:
    strategy = make_strategy("loss_balance", {"beta": 0.5, "gamma": 1.0})
    # Step 1: m̂ = (2, 4) = start, slowness (1, 1), raw = 2 / m̂ = (1, 0.5).
    weights, grad = loss_step(strategy, [2.0, 4.0])
    torch.testing.assert_close(weights, torch.tensor([4 / 3, 2 / 3]))
    torch.testing.assert_close(grad, weights)
    # Step 2: m = (1, 3), m̂ = m / 0.75 = (4/3, 4), rho = (2/3, 1), slowness = (0.8, 1.2),
    # raw = (1.8 / (4/3), 2.2 / 4) = (1.35, 0.55).
    weights, _ = loss_step(strategy, [1.0, 4.0])
    torch.testing.assert_close(weights, torch.tensor([2 * 1.35 / 1.9, 2 * 0.55 / 1.9]))


def test_boost_favours_the_slow_task() -> None:
    plain = make_strategy("loss_balance", {"beta": 0.5, "gamma": 0.0})
    boosted = make_strategy("loss_balance", {"beta": 0.5, "gamma": 1.0})
    for losses in ([2.0, 4.0], [1.0, 4.0], [0.5, 3.9]):
        w_plain, _ = loss_step(plain, losses)
        w_boost, _ = loss_step(boosted, losses)
    assert w_boost[1] > w_plain[1]


def test_inactive_task_keeps_its_ema_and_gets_zero_weight() -> None:
    strategy = make_strategy("loss_balance", {"beta": 0.5})
    reference = make_strategy("loss_balance", {"beta": 0.5})
    loss_step(strategy, [2.0, 4.0])
    loss_step(reference, [2.0, 4.0])
    weights, grad = loss_step(strategy, [1.0, 100.0], [1.0, 0.0])
    assert weights.tolist() == [1.0, 0.0]
    assert grad[1] == 0
    # Task 1's EMA did not see the 100: it keeps the weight it had after its first step.
    weights, _ = loss_step(strategy, [1.0, 4.0])
    assert weights[1] > 0.3


def test_a_zero_loss_gets_a_bounded_weight() -> None:
    weights, _ = loss_step(make_strategy("loss_balance"), [0.0, 1.0])
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights.sum(), torch.tensor(2.0))
    weights, _ = loss_step(make_strategy("loss_balance"), [0.0, 0.0])
    assert weights.tolist() == [1.0, 1.0]
