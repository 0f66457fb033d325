"""Random Loss Weighting (Lin et al. 2022): seeded, softmax of normal draws."""

from __future__ import annotations

import torch

from mtl_core.weighting import LossWeighting
from tests.mtl_core.weighting._toy import leaf_losses, make_strategy, step_inputs


def _draw(seed: int, steps: int = 5, scale: list[float] | None = None) -> list[torch.Tensor]:
    strategy = make_strategy("rlw", num_tasks=3, seeds=[seed])
    assert isinstance(strategy, LossWeighting)
    out = []
    for _ in range(steps):
        losses = leaf_losses([1.0, 2.0, 3.0])
        objective, weights = strategy.objective(step_inputs(losses, scale))
        (grad,) = torch.autograd.grad(objective.sum(), [losses])
        # The loss uses softmax(z) (Σ = 1 over the active tasks); the report is x T.
        n_active = sum(1 for s in scale or [1.0] * 3 if s > 0)
        torch.testing.assert_close(grad, weights / n_active * torch.tensor(scale or [1.0] * 3))
        out.append(weights[0])
    return out


def test_deterministic_under_a_seeded_generator() -> None:
    first, again, other = _draw(7), _draw(7), _draw(8)
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(first, other, strict=True))
    # Weights change from step to step.
    assert not torch.equal(first[0], first[1])


def test_matches_softmax_of_the_generator_draw() -> None:
    expected = torch.softmax(torch.randn(3, generator=torch.Generator().manual_seed(3)), 0) * 3
    torch.testing.assert_close(_draw(3, steps=1)[0], expected)


def test_softmax_runs_over_the_active_tasks_only() -> None:
    z = torch.randn(3, generator=torch.Generator().manual_seed(4))
    expected = torch.zeros(3)
    expected[[0, 2]] = torch.softmax(z[[0, 2]], 0) * 2
    weights = _draw(4, steps=1, scale=[1.0, 0.0, 2.0])[0]
    torch.testing.assert_close(weights, expected)
