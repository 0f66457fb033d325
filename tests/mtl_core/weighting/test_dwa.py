"""Dynamic Weight Average (Liu et al. 2019): weights from given loss ratios."""

from __future__ import annotations

import math

import torch

from mtl_core.weighting import LossWeighting, WeightingStrategy
from tests.mtl_core.weighting._toy import leaf_losses, make_strategy, step_inputs


def _step(
    strategy: WeightingStrategy, scale: list[float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    assert isinstance(strategy, LossWeighting)
    losses = leaf_losses([2.0, 3.0, 4.0])
    objective, weights = strategy.objective(step_inputs(losses, scale))
    (grad,) = torch.autograd.grad(objective.sum(), [losses])
    return weights[0], grad[0]


def _epoch_end(strategy: WeightingStrategy, mean_losses: list[float]) -> None:
    strategy.on_epoch_end(torch.ones(1, dtype=torch.bool), torch.tensor([mean_losses]))


def test_uniform_for_the_first_two_epochs_then_softmax_of_ratios() -> None:
    strategy = make_strategy("dwa", {"tau": 2.0}, num_tasks=3)
    weights, _ = _step(strategy)
    assert weights.tolist() == [1.0, 1.0, 1.0]
    _epoch_end(strategy, [1.0, 2.0, 4.0])
    weights, _ = _step(strategy)
    assert weights.tolist() == [1.0, 1.0, 1.0]
    _epoch_end(strategy, [0.5, 1.8, 4.0])

    weights, grad = _step(strategy, [1.0, 2.0, 1.0])

    ratios = [0.5, 0.9, 1.0]
    exps = [math.exp(r / 2.0) for r in ratios]
    expected = torch.tensor([3 * e / sum(exps) for e in exps])
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(grad, expected * torch.tensor([1.0, 2.0, 1.0]))
    # The slowest task (ratio 1.0) gets the largest weight.
    assert int(weights.argmax()) == 2


def test_only_the_last_two_epochs_count() -> None:
    strategy = make_strategy("dwa", num_tasks=3)
    for losses in ([9.0, 9.0, 9.0], [1.0, 1.0, 1.0], [1.0, 2.0, 1.0]):
        _epoch_end(strategy, losses)
    weights, _ = _step(strategy)
    exps = [math.exp(0.5), math.exp(1.0), math.exp(0.5)]
    torch.testing.assert_close(weights, torch.tensor([3 * e / sum(exps) for e in exps]))


def test_inactive_task_is_left_out_of_the_softmax() -> None:
    strategy = make_strategy("dwa", num_tasks=3)
    _epoch_end(strategy, [1.0, 1.0, 1.0])
    _epoch_end(strategy, [1.0, 2.0, 3.0])
    weights, grad = _step(strategy, [1.0, 0.0, 1.0])
    exps = [math.exp(0.5), math.exp(1.5)]
    expected = torch.tensor([2 * exps[0] / sum(exps), 0.0, 2 * exps[1] / sum(exps)])
    torch.testing.assert_close(weights, expected)
    assert grad[1] == 0


def test_epoch_end_moves_only_the_slots_that_ended() -> None:
    strategy = make_strategy("dwa", num_tasks=3, seeds=[0, 1])
    ended = torch.tensor([True, False])
    for losses in ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]):
        strategy.on_epoch_end(ended, torch.tensor([losses, losses]))
    assert isinstance(strategy, LossWeighting)
    _, weights = strategy.objective(step_inputs(torch.ones(2, 3)))
    assert weights[1].tolist() == [1.0, 1.0, 1.0]  # still in its warm-up
    assert weights[0, 2] > weights[0, 1] > weights[0, 0]
