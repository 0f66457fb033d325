"""Random K-slot loss problems and the K-slot call the scalarizer oracle tests (GLS, IMTL-L,
PBI, STCH) share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from hypothesis import settings
from hypothesis import strategies as st
from torch import Tensor

from mtl_core.weighting import LossWeighting
from tests.mtl_core.weighting._toy import step_inputs

SETTINGS = settings(max_examples=30, deadline=None, database=None)


def draw_scaled_losses(draw: st.DrawFn) -> tuple[Tensor, Tensor, torch.Generator]:
    """K ∈ {1, 4} slots of T ∈ {2, 3, 5} tasks, float64: (losses 10^U(-4, 4), scale
    10^U(-6, 6) with each task inactive (scale 0) with probability 0.3, and the generator
    they came from, for a test to draw more of its own)."""
    k = draw(st.sampled_from([1, 4]))
    t = draw(st.sampled_from([2, 3, 5]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    losses = 10.0 ** (8 * torch.rand(k, t, generator=gen, dtype=torch.float64) - 4)
    scale = 10.0 ** (12 * torch.rand(k, t, generator=gen, dtype=torch.float64) - 6)
    inactive = torch.rand(k, t, generator=gen) < 0.3
    return losses, torch.where(inactive, torch.zeros_like(scale), scale), gen


def objective_step(
    strategy: LossWeighting[Any], losses: Tensor, scale: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """(objective ``[K]``, ∂objective/∂L ``[K, T]``, weights ``[K, T]``) of one K-slot call."""
    leaf = losses.clone().requires_grad_(True)
    objective, weights = strategy.objective(step_inputs(leaf, scale))
    (grad,) = torch.autograd.grad(objective.sum(), [leaf])
    return objective.detach(), grad, weights


def normalised_to(lam: Tensor, n: int) -> Tensor:
    """``lam`` rescaled to Σ = n (the number of active tasks); as is when none is active."""
    return lam / lam.sum() * n if n else lam


def assert_k_rows_equal_k_single_calls(
    run: Callable[..., tuple[Tensor, ...]], *per_slot: Any
) -> None:
    """``run`` on all K slots at once gives, row k, what it gives on slot k alone, to
    rtol 1e-12; ``per_slot`` are its arguments, each indexed by slot first."""
    batched = run(*per_slot)
    for k in range(len(per_slot[0])):
        single = run(*(arg[k : k + 1] for arg in per_slot))
        for b, one in zip(batched, single, strict=True):
            torch.testing.assert_close(b[k : k + 1], one, rtol=1e-12, atol=0.0)
