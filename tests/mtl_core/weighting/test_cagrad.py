"""CAGrad (Liu et al. 2021): the mean gradient at c = 0 and the dual at c > 0."""

from __future__ import annotations

from typing import Any

import torch

from mtl_core.weighting import GradientWeighting
from tests.mtl_core.weighting._toy import make_strategy, step_inputs

VECTORS = [[1.0, 0.0], [-0.5, 1.0]]


def _combine(
    vectors: list[list[float]], params: dict[str, Any], scale: list[float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    grads = torch.tensor([vectors])
    strategy = make_strategy("cagrad", params, num_tasks=len(vectors))
    assert isinstance(strategy, GradientWeighting)
    combined, weights = strategy.combine(grads, step_inputs(torch.ones(len(vectors)), scale))
    return combined[0], weights[0]


def test_reduces_to_the_mean_gradient_at_c_zero() -> None:
    combined, weights = _combine([[1.0, 0.0], [-1.0, 2.0], [0.2, 0.3]], {"c": 0.0})
    torch.testing.assert_close(combined, torch.tensor([(1.0 - 1.0 + 0.2) / 3, 2.3 / 3]))
    assert weights.tolist() == [1.0, 1.0, 1.0]


def test_mean_runs_over_the_active_tasks() -> None:
    vectors = [[1.0, 0.0], [0.0, 0.0], [0.0, 3.0]]
    combined, weights = _combine(vectors, {"c": 0.0}, [1.0, 0.0, 1.0])
    torch.testing.assert_close(combined, torch.tensor([0.5, 1.5]))
    assert weights.tolist() == [1.0, 0.0, 1.0]


def _brute_force_direction(c: float) -> torch.Tensor:
    """CAGrad's direction with the dual minimised on a fine grid of the two-task simplex."""
    g = torch.tensor(VECTORS, dtype=torch.float64)
    g0 = g.mean(0)
    w = torch.linspace(0.0, 1.0, 20001, dtype=torch.float64).unsqueeze(-1)
    gw = w * g[0] + (1 - w) * g[1]
    values = gw @ g0 + c * g0.norm() * gw.norm(dim=-1)
    best = gw[int(values.argmin())]
    return (g0 + c * g0.norm() / best.norm() * best).float()


def test_direction_matches_a_brute_force_dual() -> None:
    combined, weights = _combine(VECTORS, {"c": 0.4, "rescale": 0})
    torch.testing.assert_close(combined, _brute_force_direction(0.4), atol=1e-4, rtol=0)
    torch.testing.assert_close(weights.sum(), torch.tensor(2.0))


def test_rescale_divides_by_one_plus_c_squared() -> None:
    combined, _ = _combine(VECTORS, {"c": 0.4})
    expected = _brute_force_direction(0.4) / (1 + 0.4**2)
    torch.testing.assert_close(combined, expected, atol=1e-4, rtol=0)


def test_rescale_two_divides_by_one_plus_c() -> None:
    combined, _ = _combine(VECTORS, {"c": 0.4, "rescale": 2})
    expected = _brute_force_direction(0.4) / 1.4
    torch.testing.assert_close(combined, expected, atol=1e-4, rtol=0)


def test_improves_the_worst_task_over_the_mean_gradient() -> None:
    g = torch.tensor(VECTORS)
    d, _ = _combine(VECTORS, {"c": 0.9, "rescale": 0})
    assert (g @ d).min() > (g @ g.mean(0)).min()
    assert (d - g.mean(0)).norm() <= 0.9 * g.mean(0).norm() + 1e-5


def test_one_active_task_is_used_as_is() -> None:
    combined, weights = _combine([[0.0, 0.0], [3.0, -4.0]], {"c": 0.5}, [0.0, 1.0])
    torch.testing.assert_close(combined, torch.tensor([3.0, -4.0]))
    assert weights.tolist() == [0.0, 1.0]
