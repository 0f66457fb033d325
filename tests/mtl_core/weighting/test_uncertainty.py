"""Uncertainty weighting (Kendall et al. 2018): hand-computed gradients."""

from __future__ import annotations

import math

import torch

from mtl_core.weighting import LossWeighting, parse_strategy_config
from tests.mtl_core.weighting._toy import leaf_losses, make_ctx, make_strategy, step_inputs


def test_gradients_of_s_and_losses_match_the_formula() -> None:
    strategy = make_strategy("uncertainty")
    assert isinstance(strategy, LossWeighting)
    (s,) = strategy.parameters()
    assert s.shape == (1, 2)
    assert s.tolist() == [[0.0, 0.0]]
    with torch.no_grad():
        s.copy_(torch.tensor([[0.3, -0.2]]))
    losses = leaf_losses([1.5, 0.4])
    scale = torch.tensor([[1.0, 2.0]])

    objective, weights = strategy.objective(step_inputs(losses, scale))
    s_grad, loss_grad = torch.autograd.grad(objective.sum(), [s, losses])

    precision = torch.exp(-torch.tensor([[0.3, -0.2]]))
    torch.testing.assert_close(s_grad, scale * (1 - precision * losses.detach()))
    torch.testing.assert_close(loss_grad, scale * precision)
    torch.testing.assert_close(weights, 2 * precision / precision.sum())
    assert math.isclose(weights.sum().item(), 2.0, rel_tol=1e-6)


def test_inactive_task_leaves_its_log_variance_alone() -> None:
    strategy = make_strategy("uncertainty")
    assert isinstance(strategy, LossWeighting)
    (s,) = strategy.parameters()
    losses = leaf_losses([1.5, 0.4])
    objective, weights = strategy.objective(step_inputs(losses, [1.0, 0.0]))
    (s_grad,) = torch.autograd.grad(objective.sum(), [s])
    assert s_grad[0, 1] == 0
    assert weights.tolist() == [[1.0, 0.0]]


def test_reset_slot_restarts_the_log_variance() -> None:
    strategy = make_strategy("uncertainty", seeds=[0, 1])
    (s,) = strategy.parameters()
    with torch.no_grad():
        s.fill_(0.7)
    strategy.reset_slot(1, parse_strategy_config("uncertainty", None), make_ctx(2, seed=1))
    torch.testing.assert_close(s.detach(), torch.tensor([[0.7, 0.7], [0.0, 0.0]]))
