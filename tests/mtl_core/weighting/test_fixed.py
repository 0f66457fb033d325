"""Fixed weighting: the loss is Σ scale_t L_t."""

from __future__ import annotations

import torch

from mtl_core.weighting import build_strategy
from tests.mtl_core.weighting._toy import linear_problem, make_ctx, step_ctx


def test_fixed_backpropagates_scaled_sum() -> None:
    theta, losses, groups = linear_problem([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    strategy = build_strategy("fixed", None, make_ctx(3))
    weights = strategy.backward(losses, torch.tensor([2.0, 0.5, 0.0]), groups, step_ctx())
    assert weights.tolist() == [1.0, 1.0, 0.0]
    assert theta.grad is not None
    torch.testing.assert_close(theta.grad, torch.tensor([2.0, 0.5]))
