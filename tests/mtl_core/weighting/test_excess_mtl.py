"""ExcessMTL (He et al. 2024) against torchjd's `ExcessMTL` over several steps."""

from __future__ import annotations

import pytest
import torch
from torchjd.aggregation import ExcessMTL as TorchJDExcessMTL

from tests.mtl_core.weighting._gradient_sets import combine_step
from tests.mtl_core.weighting._toy import make_strategy


@pytest.mark.parametrize("num_slots", [1, 4])
@pytest.mark.parametrize("num_tasks", [2, 3])
@pytest.mark.parametrize(("step_size", "warmup"), [(1.0, 0), (0.01, 0), (0.5, 2)])
def test_matches_torchjd_over_several_steps(
    num_slots: int, num_tasks: int, step_size: float, warmup: int
) -> None:
    """torchjd's aggregate is Σ_t w_t g_t with w on the simplex, as ours; our reported
    weights are the same w normalised to Σ = T. One oracle per slot, reset first (it keeps
    its accumulators across calls)."""
    params = {"robust_step_size": step_size, "warmup_steps": warmup}
    strategy = make_strategy("excess_mtl", params, num_tasks, range(num_slots))
    oracles = [TorchJDExcessMTL(step_size, warmup) for _ in range(num_slots)]
    for oracle in oracles:
        oracle.reset()
    gen = torch.Generator().manual_seed(num_tasks)
    scales = 10.0 ** torch.empty(num_slots, num_tasks, 1).uniform_(-1, 1, generator=gen)
    moved = False
    for step in range(6):
        # task gradients shrinking at different rates: the excess risks drift apart
        decay = torch.rand(num_slots, num_tasks, 1, generator=gen, dtype=torch.float64) ** step
        grads = torch.randn(num_slots, num_tasks, 7, generator=gen, dtype=torch.float64)
        grads = grads * scales * decay
        combined, weights = combine_step(strategy, grads)
        for k, oracle in enumerate(oracles):
            torch.testing.assert_close(combined[k], oracle(grads[k]), rtol=1e-9, atol=1e-12)
            expected = oracle.weighting._weights * num_tasks
            torch.testing.assert_close(weights[k], expected, rtol=1e-9, atol=1e-12)
        moved = moved or not torch.allclose(weights, torch.ones_like(weights))
    assert moved


def test_warmup_is_uniform_and_an_inactive_task_keeps_its_weight() -> None:
    strategy = make_strategy("excess_mtl", {"robust_step_size": 0.5, "warmup_steps": 2}, 3)
    gen = torch.Generator().manual_seed(0)
    grads = [
        torch.randn(1, 3, 4, generator=gen) * torch.tensor([1.0, 3.0, 0.1])[:, None]
        for _ in range(5)
    ]
    for g in grads[:2]:
        _, weights = combine_step(strategy, g)
        torch.testing.assert_close(weights, torch.ones(1, 3))
    _, before = combine_step(strategy, grads[2])
    assert not torch.allclose(before, torch.ones(1, 3))
    scale = torch.tensor([[1.0, 0.0, 1.0]])
    combined, weights = combine_step(strategy, grads[3] * scale[..., None], scale)
    assert weights[0, 1] == 0
    # the inactive task's weight stays: zero gradients move no weight, so around a step
    # where task 1 is out the weights of all three are the same
    zeros = torch.zeros(1, 3, 4)
    _, held = combine_step(strategy, zeros)
    combine_step(strategy, zeros, scale)
    _, back = combine_step(strategy, zeros)
    torch.testing.assert_close(back, held)
    assert not torch.allclose(held, torch.ones(1, 3))
    assert torch.isfinite(combined).all()


def test_zero_and_huge_gradients_stay_finite() -> None:
    strategy = make_strategy("excess_mtl", {"robust_step_size": 1.0}, 3, range(2))
    grads = torch.tensor([[[1e6, -1e6], [0.0, 0.0], [1e-6, 0.0]], [[0.0, 0.0]] * 3])
    for _ in range(3):
        combined, weights = combine_step(strategy, grads)
        assert torch.isfinite(combined).all() and torch.isfinite(weights).all()
        torch.testing.assert_close(weights.sum(1), torch.full((2,), 3.0))
