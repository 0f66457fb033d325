"""Random Loss Weighting (Lin et al. 2022): seeded, softmax of normal draws."""

from __future__ import annotations

import torch

from mtl_core.weighting import ParameterGroups, build_strategy
from tests.mtl_core.weighting._toy import make_ctx, step_ctx

EMPTY = ParameterGroups(shared=[], task_specific=[], last_shared=[])


def _draw(seed: int, steps: int = 5) -> list[torch.Tensor]:
    strategy = build_strategy("rlw", None, make_ctx(3, seed=seed))
    out = []
    for _ in range(steps):
        losses = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
        weights = strategy.backward(losses, torch.ones(3), EMPTY, step_ctx())
        assert losses.grad is not None
        # The loss uses softmax(z) (Σ = 1); the report is x T.
        torch.testing.assert_close(losses.grad, weights / 3)
        out.append(weights)
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
