"""PBI (Zhang & Li 2007) against torchjd's ``PBI`` scalarizer, in float64."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor
from torchjd.scalarization import PBI as TorchJDPBI

from mtl_core.weighting import LossWeighting, parse_strategy_config
from tests.mtl_core.weighting._loss_sets import (
    SETTINGS,
    assert_k_rows_equal_k_single_calls,
    draw_scaled_losses,
    normalised_to,
    objective_step,
)
from tests.mtl_core.weighting._toy import make_ctx, make_strategy

#: θ values exactly representable in float32 (the strategy's per-slot state).
THETAS = [0.0, 0.5, 1.0, 5.0, 10.0]


def _ours(losses: Tensor, scale: Tensor, thetas: list[float]) -> tuple[Tensor, ...]:
    """(objective, ∂/∂L, weights) of one K-slot call, slot k with θ = ``thetas[k]``."""
    k, t = losses.shape
    strategy = make_strategy("pbi", num_tasks=t, seeds=range(k))
    for slot, theta in enumerate(thetas):
        strategy.reset_slot(slot, parse_strategy_config("pbi", {"theta": theta}), make_ctx(t))
    assert isinstance(strategy, LossWeighting)
    return objective_step(strategy, losses, scale)


def _oracle(losses: Tensor, scale: Tensor, thetas: list[float]) -> tuple[Tensor, ...]:
    """torchjd's PBI of the active scaled losses, row by row.

    Convention mapping: torchjd gets x / m (m = the largest |x_t|, a constant) with weights
    all 1 (so ŵ = 1/√n) and the origin as reference, and its value is multiplied by m: its
    smoothing 1e-12 is added to ‖p / m‖², where the strategy adds it. Weights: ∂/∂x_t,
    negative ones clipped to 0, rescaled to Σ = (number of active tasks).
    """
    objectives, grads, weights = [], [], []
    for row_losses, row_scale, theta in zip(losses, scale, thetas, strict=True):
        active = row_scale > 0
        n = int(active.sum())
        leaf = row_losses.clone().requires_grad_(True)
        value, grad = torch.zeros((), dtype=losses.dtype), torch.zeros_like(leaf)
        if n:
            x = row_scale[active] * leaf[active]
            m = x.detach().abs().max()
            scalarizer = TorchJDPBI(theta, weights=torch.ones(n, dtype=losses.dtype))
            value = m * scalarizer(x / m)
            (grad,) = torch.autograd.grad(value, [leaf])
        lam = torch.where(active, grad / row_scale.clamp_min(1e-300), 0.0).clamp_min(0)
        weights.append(normalised_to(lam, n))
        objectives.append(value.detach())
        grads.append(grad)
    return torch.stack(objectives), torch.stack(grads), torch.stack(weights)


@st.composite
def _problems(draw: st.DrawFn) -> tuple[Tensor, Tensor, list[float]]:
    losses, scale, _ = draw_scaled_losses(draw)
    k = losses.shape[0]
    thetas = draw(st.lists(st.sampled_from(THETAS), min_size=k, max_size=k))
    return losses, scale, thetas


@SETTINGS
@given(problem=_problems())
def test_objective_gradient_and_weights_match_torchjd(problem: tuple) -> None:
    ours, expected = _ours(*problem), _oracle(*problem)
    objective, grad, weights = ours
    torch.testing.assert_close(objective, expected[0], rtol=1e-10, atol=0.0)
    # Relative to the row's largest entry: a gradient that is ŵ_t - θ p_t/d2 ≈ 0 cancels.
    for actual, wanted in ((grad, expected[1]), (weights, expected[2])):
        row_max = wanted.abs().amax(dim=-1, keepdim=True)
        assert ((actual - wanted).abs() <= 1e-9 * row_max).all(), (actual, wanted)


@SETTINGS
@given(problem=_problems())
def test_k_rows_equal_k_single_calls(problem: tuple) -> None:
    assert_k_rows_equal_k_single_calls(_ours, *problem)


def test_two_tasks_by_hand() -> None:
    # x = (1, 3): d1 = 4/√2, p = (-1, 1), d2 ≈ √2; ∂L/∂x = (1 ∓ θ)/√2 = (-4, 6)/√2 at θ = 5.
    objective, grad, weights = _ours(
        torch.tensor([[1.0, 3.0]], dtype=torch.float64), torch.ones(1, 2), [5.0]
    )
    torch.testing.assert_close(
        objective, torch.tensor([4 / math.sqrt(2) + 5 * math.sqrt(2)]).double()
    )
    torch.testing.assert_close(grad, torch.tensor([[-4.0, 6.0]]).double() / math.sqrt(2))
    torch.testing.assert_close(weights, torch.tensor([[0.0, 2.0]]).double())


def test_on_the_ray_the_gradient_is_the_direction() -> None:
    _, grad, weights = _ours(
        torch.tensor([[2.0, 1.0, 4.0]]), torch.tensor([[1.0, 2.0, 0.5]]), [5.0]
    )
    torch.testing.assert_close(grad, torch.tensor([[1.0, 2.0, 0.5]]) / math.sqrt(3))
    torch.testing.assert_close(weights, torch.ones(1, 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extremes_and_no_active_task_stay_finite(dtype: torch.dtype) -> None:
    losses = torch.tensor([[0.0, 1e30, 1e-30], [0.0, 0.0, 0.0], [1.0, 2.0, 3.0]], dtype=dtype)
    scale = torch.tensor([[1.0, 1e6, 1e-6], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=dtype)
    objective, grad, weights = _ours(losses, scale, [10.0, 5.0, 5.0])
    for value in (objective, grad, weights):
        assert torch.isfinite(value).all(), value
    assert objective[2] == 0 and (grad[2] == 0).all() and (weights[2] == 0).all()
    # |∂L/∂x_t| <= 1/√n + θ (here ∂L/∂L_t = scale_t ∂L/∂x_t).
    lam = grad[:2] / scale[:2].clamp_min(1e-300)
    assert (lam[0].abs() <= 1 / math.sqrt(3) + 10.0 + 1e-4).all(), lam
    torch.testing.assert_close(weights.sum(-1), torch.tensor([3.0, 2.0, 0.0], dtype=dtype))
