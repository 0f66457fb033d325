"""CAGrad (Liu et al. 2021): the mean gradient at c = 0 and the dual at c > 0."""

from __future__ import annotations

import math

import torch

from mtl_core.weighting import build_strategy
from tests.mtl_core.weighting._toy import linear_problem, make_ctx, step_ctx

VECTORS = [[1.0, 0.0], [-0.5, 1.0]]


def test_reduces_to_the_mean_gradient_at_c_zero() -> None:
    theta, losses, groups = linear_problem([[1.0, 0.0], [-0.5, 1.0], [0.2, 0.3]])
    weights = build_strategy("cagrad", {"c": 0.0}, make_ctx(3)).backward(
        losses, torch.tensor([1.0, 2.0, 1.0]), groups, step_ctx()
    )
    assert theta.grad is not None
    torch.testing.assert_close(theta.grad, torch.tensor([(1.0 - 1.0 + 0.2) / 3, 2.3 / 3]))
    assert weights.tolist() == [1.0, 1.0, 1.0]


def _brute_force_direction(c: float) -> torch.Tensor:
    g = torch.tensor(VECTORS, dtype=torch.float64)
    g0 = g.mean(0)
    best, best_w = math.inf, 0.0
    for i in range(20001):
        w = i / 20000
        gw = w * g[0] + (1 - w) * g[1]
        value = float(gw @ g0 + c * g0.norm() * gw.norm())
        if value < best:
            best, best_w = value, w
    gw = best_w * g[0] + (1 - best_w) * g[1]
    return (g0 + c * g0.norm() / gw.norm() * gw).float()


def test_direction_matches_a_brute_force_dual() -> None:
    c = 0.4
    theta, losses, groups = linear_problem(VECTORS)
    build_strategy("cagrad", {"c": c, "rescale": 0}, make_ctx(2)).backward(
        losses, torch.ones(2), groups, step_ctx()
    )
    assert theta.grad is not None
    torch.testing.assert_close(theta.grad, _brute_force_direction(c), atol=1e-4, rtol=0)


def test_rescale_divides_by_one_plus_c_squared() -> None:
    c = 0.4
    theta, losses, groups = linear_problem(VECTORS)
    build_strategy("cagrad", {"c": c}, make_ctx(2)).backward(
        losses, torch.ones(2), groups, step_ctx()
    )
    assert theta.grad is not None
    torch.testing.assert_close(
        theta.grad, _brute_force_direction(c) / (1 + c**2), atol=1e-4, rtol=0
    )


def test_improves_the_worst_task_over_the_mean_gradient() -> None:
    g = torch.tensor(VECTORS)
    theta, losses, groups = linear_problem(VECTORS)
    build_strategy("cagrad", {"c": 0.9, "rescale": 0}, make_ctx(2)).backward(
        losses, torch.ones(2), groups, step_ctx()
    )
    assert theta.grad is not None
    d = theta.grad
    assert (g @ d).min() > (g @ g.mean(0)).min()
    assert (d - g.mean(0)).norm() <= 0.9 * g.mean(0).norm() + 1e-5
