"""FAMO (Liu et al. 2023): weights move toward the task whose loss falls slower."""

from __future__ import annotations

import torch

from mtl_core.weighting import ParameterGroups, build_strategy
from mtl_core.weighting.famo import FAMO
from tests.mtl_core.weighting._toy import make_ctx, step_ctx

EMPTY = ParameterGroups(shared=[], task_specific=[], last_shared=[])


def _step(strategy, losses: list[float], scale: list[float] | None = None):
    leaf = torch.tensor(losses, requires_grad=True)
    weights = strategy.backward(leaf, torch.tensor(scale or [1.0] * len(losses)), EMPTY, step_ctx())
    return weights, leaf.grad


def test_first_step_gradient_is_c_z_over_loss() -> None:
    strategy = build_strategy("famo", None, make_ctx(2))
    weights, grad = _step(strategy, [1.0, 4.0])
    # z = (1/2, 1/2); λ_t = z_t / (c L_t), c = Σ z / L = 0.625 → λ = (0.8, 0.2).
    torch.testing.assert_close(grad, torch.tensor([0.8, 0.2]))
    torch.testing.assert_close(weights, torch.tensor([1.6, 0.4]))


def test_logits_move_toward_the_slower_task() -> None:
    strategy = build_strategy("famo", None, make_ctx(2))
    assert isinstance(strategy, FAMO)
    _step(strategy, [1.0, 1.0])
    z0 = strategy.task_distribution(torch.ones(2, dtype=torch.bool))
    torch.testing.assert_close(z0, torch.tensor([0.5, 0.5]))
    # Task 0 halved, task 1 fell by 10 %: ξ moves toward task 1 at this (the next) call.
    _step(strategy, [0.5, 0.9])
    z1 = strategy.task_distribution(torch.ones(2, dtype=torch.bool))
    assert z1[1] > 0.5 > z1[0]
    # Equal losses now, so the reported weights follow z.
    weights, _ = _step(strategy, [0.5, 0.5])
    assert weights[1] > weights[0]


def test_no_update_on_the_first_call() -> None:
    strategy = build_strategy("famo", None, make_ctx(2))
    assert isinstance(strategy, FAMO)
    _step(strategy, [0.1, 10.0])
    assert strategy.logits.tolist() == [0.0, 0.0]


def test_scale_multiplies_the_task_terms() -> None:
    strategy = build_strategy("famo", None, make_ctx(2))
    weights, grad = _step(strategy, [1.0, 4.0], [2.0, 0.5])
    torch.testing.assert_close(grad, torch.tensor([0.8 * 2.0, 0.2 * 0.5]))
    torch.testing.assert_close(weights, torch.tensor([1.6, 0.4]))
