"""GradNorm (Chen et al. 2018): renormalisation and the direction of the w update."""

from __future__ import annotations

import pytest
import torch

from mtl_core.weighting import build_strategy
from mtl_core.weighting.gradnorm import GradNorm
from tests.mtl_core.weighting._toy import linear_problem, make_ctx, step_ctx


def test_w_update_pushes_gradient_norms_together() -> None:
    theta, losses, groups = linear_problem([[1.0, 0.0], [0.0, 3.0]], offsets=[2.0, 5.0])
    strategy = build_strategy("gradnorm", {"alpha": 1.5}, make_ctx(2))
    (w,) = strategy.parameters()

    weights = strategy.backward(losses, torch.tensor([1.0, 2.0]), groups, step_ctx())

    # Step 0: L̃ = 1 for both, so the target is mean(G) = 2; G = (1, 3).
    assert w.grad is not None
    torch.testing.assert_close(w.grad, torch.tensor([-1.0, 3.0]))
    # The model's gradient is Σ w_t scale_t ∇L_t with w = 1.
    assert theta.grad is not None
    torch.testing.assert_close(theta.grad, torch.tensor([1.0, 6.0]))
    assert weights.tolist() == [1.0, 1.0]


def test_slower_task_gets_a_higher_target() -> None:
    strategy = build_strategy("gradnorm", {"alpha": 1.0}, make_ctx(2))
    (w,) = strategy.parameters()
    # First step fixes L(0) = (2, 2); equal gradient norms give no update.
    _, losses, groups = linear_problem([[1.0, 0.0], [0.0, 1.0]], offsets=[2.0, 2.0])
    strategy.backward(losses, torch.ones(2), groups, step_ctx())
    assert w.grad is not None
    torch.testing.assert_close(w.grad, torch.zeros(2))
    w.grad = None
    # Task 0 fell to 1/4 of its start, task 1 to 3/4: r = (0.5, 1.5), target = (0.5, 1.5).
    _, losses, groups = linear_problem([[1.0, 0.0], [0.0, 1.0]], offsets=[0.5, 1.5])
    strategy.backward(losses, torch.ones(2), groups, step_ctx(step=1))
    torch.testing.assert_close(w.grad, torch.tensor([1.0, -1.0]))


def test_renormalises_to_sum_t_at_the_next_backward() -> None:
    strategy = build_strategy("gradnorm", None, make_ctx(2))
    assert isinstance(strategy, GradNorm)
    (w,) = strategy.parameters()
    with torch.no_grad():  # what an optimizer step might leave behind
        w.copy_(torch.tensor([3.0, 1.0]))
    theta, losses, groups = linear_problem([[1.0, 0.0], [0.0, 1.0]])

    weights = strategy.backward(losses, torch.ones(2), groups, step_ctx())

    torch.testing.assert_close(w.detach(), torch.tensor([1.5, 0.5]))
    torch.testing.assert_close(weights, torch.tensor([1.5, 0.5]))
    assert theta.grad is not None
    torch.testing.assert_close(theta.grad, torch.tensor([1.5, 0.5]))


def test_renormalisation_keeps_weights_positive() -> None:
    strategy = build_strategy("gradnorm", None, make_ctx(2))
    (w,) = strategy.parameters()
    with torch.no_grad():
        w.copy_(torch.tensor([-0.5, 2.0]))
    _, losses, groups = linear_problem([[1.0, 0.0], [0.0, 1.0]])
    weights = strategy.backward(losses, torch.ones(2), groups, step_ctx())
    assert (w > 0).all()
    assert weights.sum().item() == pytest.approx(2.0)
    torch.testing.assert_close(w.sum(), torch.tensor(2.0))
