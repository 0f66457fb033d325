"""MGDA (Sener & Koltun 2018): known min-norm points."""

from __future__ import annotations

import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.weighting import build_strategy
from tests.mtl_core.weighting._toy import (
    ToyMTL,
    linear_problem,
    make_ctx,
    step_ctx,
    toy_data,
    toy_losses,
)


def test_two_tasks_exact_min_norm_point() -> None:
    theta, losses, groups = linear_problem([[1.0, 0.0], [0.0, 2.0]])
    weights = build_strategy("mgda", None, make_ctx(2)).backward(
        losses, torch.ones(2), groups, step_ctx()
    )
    # gamma = (4 - 0) / (1 + 4) = 0.8: min-norm point (0.8, 0.4).
    assert theta.grad is not None
    torch.testing.assert_close(theta.grad, torch.tensor([0.8, 0.4]))
    torch.testing.assert_close(weights, torch.tensor([1.6, 0.4]))


def test_two_tasks_vertex_solution() -> None:
    theta, losses, groups = linear_problem([[1.0, 0.0], [2.0, 0.0]])
    weights = build_strategy("mgda", None, make_ctx(2)).backward(
        losses, torch.ones(2), groups, step_ctx()
    )
    assert theta.grad is not None
    torch.testing.assert_close(theta.grad, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(weights, torch.tensor([2.0, 0.0]))


def test_three_tasks_frank_wolfe_face_solution() -> None:
    theta, losses, groups = linear_problem([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    weights = build_strategy("mgda", None, make_ctx(3)).backward(
        losses, torch.ones(3), groups, step_ctx()
    )
    assert theta.grad is not None
    torch.testing.assert_close(theta.grad, torch.tensor([0.5, 0.5]), atol=1e-3, rtol=0)
    torch.testing.assert_close(weights, torch.tensor([1.5, 1.5, 0.0]), atol=5e-3, rtol=0)


def test_three_tasks_frank_wolfe_interior_solution() -> None:
    # The hull of these three touches the z axis at (0, 0, 1), alpha = (1/5, 2/5, 2/5).
    vectors = [[2.0, 0.0, 1.0], [0.0, 1.0, 1.0], [-1.0, -1.0, 1.0]]
    theta, losses, groups = linear_problem(vectors)
    weights = build_strategy("mgda", None, make_ctx(3)).backward(
        losses, torch.ones(3), groups, step_ctx()
    )
    assert theta.grad is not None
    torch.testing.assert_close(theta.grad, torch.tensor([0.0, 0.0, 1.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(weights, torch.tensor([0.6, 1.2, 1.2]), atol=5e-3, rtol=0)


def test_l2_normalisation_applies_weights_to_normalised_gradients() -> None:
    theta, losses, groups = linear_problem([[1.0, 0.0], [0.0, 2.0]])
    weights = build_strategy("mgda", {"normalization": "l2"}, make_ctx(2)).backward(
        losses, torch.ones(2), groups, step_ctx()
    )
    # ĝ = e1, e2 → alpha = (½, ½); update ½ ĝ1 + ½ ĝ2; λ = alpha / ‖g‖ = (½, ¼).
    assert theta.grad is not None
    torch.testing.assert_close(theta.grad, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(weights, torch.tensor([4 / 3, 2 / 3]))


def test_loss_normalisation_divides_by_the_loss() -> None:
    theta, losses, groups = linear_problem([[1.0, 0.0], [0.0, 1.0]], offsets=[1.0, 4.0])
    build_strategy("mgda", {"normalization": "loss"}, make_ctx(2)).backward(
        losses, torch.ones(2), groups, step_ctx()
    )
    # ĝ = (1, 0), (0, ¼): gamma = (1/16) / (1 + 1/16) = 1/17 → update (1/17, 4/17).
    assert theta.grad is not None
    torch.testing.assert_close(theta.grad, torch.tensor([1 / 17, 4 / 17]))


def test_upper_bound_needs_a_representation() -> None:
    _, losses, groups = linear_problem([[1.0, 0.0], [0.0, 1.0]])
    strategy = build_strategy("mgda", {"upper_bound": True}, make_ctx(2))
    with pytest.raises(ConfigError, match="representation"):
        strategy.backward(losses, torch.ones(2), groups, step_ctx())


def test_upper_bound_backpropagates_weighted_sum_through_shared_layers() -> None:
    model = ToyMTL()
    x, targets = toy_data()
    losses, z = toy_losses(model, x, targets)
    weights = build_strategy("mgda", {"upper_bound": True}, make_ctx(2)).backward(
        losses, torch.ones(2), model.groups(z), step_ctx()
    )
    # Reference: the min-norm weights of the two representation gradients.
    losses, z = toy_losses(model, x, targets)
    g = torch.stack(
        [torch.autograd.grad(losses[t], z, retain_graph=True)[0].flatten() for t in range(2)]
    )
    gamma = ((g[1] @ g[1] - g[0] @ g[1]) / (g[0] - g[1]).pow(2).sum()).clamp(0, 1)
    alpha = torch.stack([gamma, 1 - gamma])
    torch.testing.assert_close(weights, 2 * alpha, rtol=1e-4, atol=1e-6)
    expected = torch.autograd.grad((alpha * losses).sum(), list(model.trunk.parameters()))
    for p, e in zip(model.trunk.parameters(), expected, strict=True):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-6)
