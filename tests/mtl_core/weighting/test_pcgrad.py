"""PCGrad (Yu et al. 2020): projections on hand-made vectors."""

from __future__ import annotations

import torch

from mtl_core.weighting import build_strategy
from mtl_core.weighting.pcgrad import project_conflicting
from tests.mtl_core.weighting._toy import linear_problem, make_ctx, step_ctx


def test_conflicting_pair_is_projected_and_summed() -> None:
    theta, losses, groups = linear_problem([[1.0, 0.0], [-1.0, 1.0]])
    strategy = build_strategy("pcgrad", None, make_ctx(2))
    weights = strategy.backward(losses, torch.ones(2), groups, step_ctx())
    # g1' = g1 + ½ g2 = (½, ½); g2' = g2 + g1 = (0, 1).
    assert theta.grad is not None
    torch.testing.assert_close(theta.grad, torch.tensor([0.5, 1.5]))
    assert weights.tolist() == [1.0, 1.0]


def test_non_conflicting_pair_is_unchanged() -> None:
    theta, losses, groups = linear_problem([[1.0, 0.0], [1.0, 1.0]])
    build_strategy("pcgrad", None, make_ctx(2)).backward(
        losses, torch.tensor([1.0, 2.0]), groups, step_ctx()
    )
    assert theta.grad is not None
    torch.testing.assert_close(theta.grad, torch.tensor([3.0, 2.0]))


def test_projection_uses_original_gradients_and_removes_conflict() -> None:
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
    projected = project_conflicting(grads, torch.Generator().manual_seed(0))
    for i in range(3):
        for j in range(3):
            if i != j and grads[i] @ grads[j] < 0:
                # After projecting off g_j, g_i' no longer points against it, unless a
                # later projection re-introduced a (smaller) conflict.
                assert projected[i] @ grads[j] >= grads[i] @ grads[j]
    # g1 conflicts only with g2: g1' = (½, ½) whatever the order.
    torch.testing.assert_close(projected[0], torch.tensor([0.5, 0.5]))


def test_random_order_follows_the_generator() -> None:
    grads = torch.tensor([[1.0, 0.2], [-1.0, 1.0], [0.3, -1.0]])
    a = project_conflicting(grads, torch.Generator().manual_seed(5))
    b = project_conflicting(grads, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    orders = {
        tuple(project_conflicting(grads, torch.Generator().manual_seed(s)).flatten().tolist())
        for s in range(20)
    }
    assert len(orders) > 1  # the order matters for 3 tasks, and it does vary


def test_zero_rows_stay_out() -> None:
    grads = torch.tensor([[1.0, 0.0], [0.0, 0.0], [-1.0, 1.0]])
    projected = project_conflicting(grads, torch.Generator().manual_seed(0))
    assert torch.count_nonzero(projected[1]) == 0
