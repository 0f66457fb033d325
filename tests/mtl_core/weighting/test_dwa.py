"""Dynamic Weight Average (Liu et al. 2019): weights from given loss ratios."""

from __future__ import annotations

import math

import torch

from mtl_core.weighting import ParameterGroups, build_strategy
from tests.mtl_core.weighting._toy import make_ctx, step_ctx

EMPTY = ParameterGroups(shared=[], task_specific=[], last_shared=[])


def _step(strategy, scale: list[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    losses = torch.tensor([2.0, 3.0, 4.0], requires_grad=True)
    scale_t = torch.tensor(scale or [1.0, 1.0, 1.0])
    weights = strategy.backward(losses, scale_t, EMPTY, step_ctx())
    assert losses.grad is not None
    return weights, losses.grad


def test_uniform_for_the_first_two_epochs_then_softmax_of_ratios() -> None:
    strategy = build_strategy("dwa", {"tau": 2.0}, make_ctx(3))
    weights, _ = _step(strategy)
    assert weights.tolist() == [1.0, 1.0, 1.0]
    strategy.on_epoch_end(0, torch.tensor([1.0, 2.0, 4.0]))
    weights, _ = _step(strategy)
    assert weights.tolist() == [1.0, 1.0, 1.0]
    strategy.on_epoch_end(1, torch.tensor([0.5, 1.8, 4.0]))

    weights, grad = _step(strategy, [1.0, 2.0, 1.0])

    ratios = [0.5, 0.9, 1.0]
    exps = [math.exp(r / 2.0) for r in ratios]
    expected = torch.tensor([3 * e / sum(exps) for e in exps])
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(grad, expected * torch.tensor([1.0, 2.0, 1.0]))
    # The slowest task (ratio 1.0) gets the largest weight.
    assert int(weights.argmax()) == 2


def test_only_the_last_two_epochs_count() -> None:
    strategy = build_strategy("dwa", None, make_ctx(3))
    for epoch, losses in enumerate([[9.0, 9.0, 9.0], [1.0, 1.0, 1.0], [1.0, 2.0, 1.0]]):
        strategy.on_epoch_end(epoch, torch.tensor(losses))
    weights, _ = _step(strategy)
    exps = [math.exp(0.5), math.exp(1.0), math.exp(0.5)]
    torch.testing.assert_close(weights, torch.tensor([3 * e / sum(exps) for e in exps]))


def test_inactive_task_is_left_out_of_the_softmax() -> None:
    strategy = build_strategy("dwa", None, make_ctx(3))
    strategy.on_epoch_end(0, torch.tensor([1.0, 1.0, 1.0]))
    strategy.on_epoch_end(1, torch.tensor([1.0, 2.0, 3.0]))
    weights, grad = _step(strategy, [1.0, 0.0, 1.0])
    exps = [math.exp(0.5), math.exp(1.5)]
    expected = torch.tensor([2 * exps[0] / sum(exps), 0.0, 2 * exps[1] / sum(exps)])
    torch.testing.assert_close(weights, expected)
    assert grad[1] == 0
