"""Fixed weighting: the loss is Σ scale_t L_t."""

from __future__ import annotations

import torch

from mtl_core.weighting import LossWeighting
from tests.mtl_core.weighting._toy import linear_problem, make_strategy, step_inputs


def test_fixed_backpropagates_scaled_sum() -> None:
    theta, losses = linear_problem([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    strategy = make_strategy("fixed", num_tasks=3)
    assert isinstance(strategy, LossWeighting)
    objective, weights = strategy.objective(step_inputs(losses, [2.0, 0.5, 0.0]))
    assert weights.tolist() == [[1.0, 1.0, 0.0]]
    (grad,) = torch.autograd.grad(objective.sum(), [theta])
    torch.testing.assert_close(grad, torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(objective, (losses * torch.tensor([2.0, 0.5, 0.0])).sum(-1))
