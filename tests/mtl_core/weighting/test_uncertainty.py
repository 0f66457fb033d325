"""Uncertainty weighting (Kendall et al. 2018): hand-computed gradients."""

from __future__ import annotations

import math

import torch

from mtl_core.weighting import ParameterGroups, build_strategy
from mtl_core.weighting.uncertainty import Uncertainty
from tests.mtl_core.weighting._toy import make_ctx, step_ctx

EMPTY = ParameterGroups(shared=[], task_specific=[], last_shared=[])


def test_gradients_of_s_and_losses_match_the_formula() -> None:
    strategy = build_strategy("uncertainty", None, make_ctx(2))
    assert isinstance(strategy, Uncertainty)
    (s,) = strategy.parameters()
    assert s.tolist() == [0.0, 0.0]
    with torch.no_grad():
        s.copy_(torch.tensor([0.3, -0.2]))
    losses = torch.tensor([1.5, 0.4], requires_grad=True)
    scale = torch.tensor([1.0, 2.0])

    weights = strategy.backward(losses, scale, EMPTY, step_ctx())

    precision = torch.exp(-torch.tensor([0.3, -0.2]))
    assert s.grad is not None and losses.grad is not None
    torch.testing.assert_close(s.grad, scale * (1 - precision * losses.detach()))
    torch.testing.assert_close(losses.grad, scale * precision)
    torch.testing.assert_close(weights, 2 * precision / precision.sum())
    assert math.isclose(weights.sum().item(), 2.0, rel_tol=1e-6)


def test_inactive_task_leaves_its_log_variance_alone() -> None:
    strategy = build_strategy("uncertainty", None, make_ctx(2))
    losses = torch.tensor([1.5, 0.4], requires_grad=True)
    weights = strategy.backward(losses, torch.tensor([1.0, 0.0]), EMPTY, step_ctx())
    (s,) = strategy.parameters()
    assert s.grad is not None and s.grad[1] == 0
    assert weights.tolist() == [1.0, 0.0]
