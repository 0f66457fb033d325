"""PCGrad (Yu et al. 2020): projections on hand-made vectors."""

from __future__ import annotations

import torch

from mtl_core.weighting import GradientWeighting, WeightingStrategy
from mtl_core.weighting.pcgrad import project_conflicting
from tests.mtl_core.weighting._toy import make_strategy, step_inputs


def _combine(
    strategy: WeightingStrategy, grads: torch.Tensor, scale: list[float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    assert isinstance(strategy, GradientWeighting)
    k, t = grads.shape[:2]
    combined, weights = strategy.combine(grads, step_inputs(torch.ones(k, t), scale))
    return combined, weights


def _orders(generator: torch.Generator, num_tasks: int) -> torch.Tensor:
    """One trial's ``[1, T, T]`` orders, drawn as PCGrad documents (one randperm per task)."""
    return torch.stack([torch.randperm(num_tasks, generator=generator) for _ in range(num_tasks)])[
        None
    ]


def test_conflicting_pair_is_projected_and_summed() -> None:
    grads = torch.tensor([[[1.0, 0.0], [-1.0, 1.0]]])
    combined, weights = _combine(make_strategy("pcgrad"), grads)
    # g1' = g1 + ½ g2 = (½, ½); g2' = g2 + g1 = (0, 1).
    torch.testing.assert_close(combined, torch.tensor([[0.5, 1.5]]))
    assert weights.tolist() == [[1.0, 1.0]]


def test_non_conflicting_pair_is_summed_unchanged() -> None:
    grads = torch.tensor([[[1.0, 0.0], [2.0, 2.0]]])
    combined, _ = _combine(make_strategy("pcgrad"), grads, [1.0, 2.0])
    torch.testing.assert_close(combined, torch.tensor([[3.0, 2.0]]))


def test_projection_uses_original_gradients_and_removes_conflict() -> None:
    grads = torch.tensor([[[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]]])
    projected = project_conflicting(grads, _orders(torch.Generator().manual_seed(0), 3))[0]
    g = grads[0]
    for i in range(3):
        for j in range(3):
            if i != j and g[i] @ g[j] < 0:
                # Projecting off g_j never makes g_i point further against it.
                assert projected[i] @ g[j] >= g[i] @ g[j]
    # g1 conflicts only with g2: g1' = (½, ½) whatever the order.
    torch.testing.assert_close(projected[0], torch.tensor([0.5, 0.5]))


def test_combine_projects_in_the_order_drawn_from_the_trial_generator() -> None:
    grads = torch.tensor([[[1.0, 0.2], [-1.0, 1.0], [0.3, -1.0]]])
    results = set()
    for seed in range(20):
        combined, _ = _combine(make_strategy("pcgrad", num_tasks=3, seeds=[seed]), grads)
        expected = project_conflicting(grads, _orders(torch.Generator().manual_seed(seed), 3))
        torch.testing.assert_close(combined, expected.sum(dim=1), rtol=0, atol=0)
        results.add(tuple(combined.flatten().tolist()))
    assert len(results) > 1  # the order matters for 3 tasks, and it does vary


def test_same_seed_same_projection_every_step() -> None:
    grads = torch.tensor([[[1.0, 0.2], [-1.0, 1.0], [0.3, -1.0]]])
    a = make_strategy("pcgrad", num_tasks=3, seeds=[5])
    b = make_strategy("pcgrad", num_tasks=3, seeds=[5])
    for _ in range(4):
        torch.testing.assert_close(_combine(a, grads)[0], _combine(b, grads)[0], rtol=0, atol=0)


def test_zero_rows_stay_out() -> None:
    grads = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [-1.0, 1.0]]])
    projected = project_conflicting(grads, _orders(torch.Generator().manual_seed(0), 3))
    assert torch.count_nonzero(projected[0, 1]) == 0
    combined, weights = _combine(make_strategy("pcgrad", num_tasks=3), grads, [1.0, 0.0, 1.0])
    torch.testing.assert_close(combined, torch.tensor([[0.5, 1.5]]))
    assert weights.tolist() == [[1.0, 0.0, 1.0]]
