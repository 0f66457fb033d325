"""CAGrad (Liu et al. 2021): the mean gradient at c = 0 and the dual at c > 0."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mtl_core.weighting import GradientWeighting
from tests.mtl_core.weighting._toy import (
    OPPOSITE_PAIR_SETS,
    make_strategy,
    production_step,
    step_inputs,
)

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


# CAGrad's steps at the defaults (c = 0.4, rescale = 1: d / 1.16) on the three sets with an
# opposite pair, from CLARABEL on the primal max_{‖d - g0‖ <= c‖g0‖} min_t ⟨g_t, d⟩ and, for
# set 0, an enumeration of the active sets of the projection of g0 onto {d: ⟨g_t, d⟩ >= 0}.
# Set 0 is degenerate: the dual's optimum is g_w* = 0 and the best worst-task change is 0;
# its step is that projection, g0 + (3/364) g_1 (see `cagrad_weights`).
OPPOSITE_PAIR_STEPS = [
    [-0.00741758241758241 / 1.16, -0.09752747252747253 / 1.16, -0.22582417582417583 / 1.16],
    [-0.09086175, 0.06307816, 0.03786775],
    [-0.21612656, -0.12172017, -0.04371323],
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", [0, 1, 2], ids=["set0", "set1", "set2"])
def test_an_opposite_pair_among_four_tasks_gives_the_optimal_step(
    case: int, dtype: torch.dtype
) -> None:
    # Set 1 in float64 once raised IndexError (Wolfe's algorithm, in the root search, sat
    # 1e-17 from the origin and emptied its support); set 0 gave a point of the sphere in a
    # direction left over from the solve, which differed between float32 and float64.
    step, _ = production_step("cagrad", OPPOSITE_PAIR_SETS[case], dtype)
    expected = torch.tensor(OPPOSITE_PAIR_STEPS[case], dtype=dtype)
    torch.testing.assert_close(step, expected, rtol=0, atol=2e-6)


def test_when_the_best_combination_is_zero_no_task_gets_worse() -> None:
    # g_w* = 0 (g_0 = -g_1): the formula g0 + c‖g0‖ g_w / ‖g_w‖ is 0/0 and the best any d in
    # the ball can do is ⟨g_t, d⟩ >= 0 for all t. The step taken is the projection of
    # g0 = (1/3, 1) onto {d_x = 0, d_y >= 0}: (0, 1), inside the ball (1/3 <= 0.4‖g0‖). The
    # limit of the formula along the root search gave (-0.088, 1): task 0 got worse.
    vectors = [[1.0, 0.0], [-1.0, 0.0], [1.0, 3.0]]
    d, _ = _combine(vectors, {"c": 0.4, "rescale": 0})
    torch.testing.assert_close(d, torch.tensor([0.0, 1.0]), rtol=0, atol=1e-6)
    assert float((torch.tensor(vectors) @ d).min()) >= -1e-6
