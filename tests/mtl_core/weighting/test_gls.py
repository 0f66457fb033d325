"""GLS (Chennupati et al. 2019) against torchjd's ``GeometricMean`` scalarizer, in float64."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor
from torchjd.scalarization import GeometricMean

from mtl_core.weighting import LossWeighting
from tests.mtl_core.weighting._loss_sets import (
    SETTINGS,
    assert_k_rows_equal_k_single_calls,
    draw_scaled_losses,
    objective_step,
)
from tests.mtl_core.weighting._toy import make_strategy


def _ours(losses: Tensor, scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(objective ``[K]``, ∂objective/∂L ``[K, T]``, weights) of one K-slot call."""
    strategy = make_strategy("gls", num_tasks=losses.shape[1], seeds=range(losses.shape[0]))
    assert isinstance(strategy, LossWeighting)
    return objective_step(strategy, losses, scale)


def _oracle(losses: Tensor, scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """torchjd's geometric mean of the active scaled losses, row by row.

    Convention mapping: torchjd scalarizes the values it is given, so it gets x_t =
    scale_t · L_t of the active tasks only; its gradient w.r.t. x_t is λ_t, and ours w.r.t.
    L_t is scale_t · λ_t. Reported weights are λ rescaled to Σ = (number of active tasks).
    """
    objectives, grads, weights = [], [], []
    for row_losses, row_scale in zip(losses, scale, strict=True):
        active = row_scale > 0
        leaf = row_losses.clone().requires_grad_(True)
        if active.any():
            value = GeometricMean()((row_scale * leaf)[active])
            (grad,) = torch.autograd.grad(value, [leaf])
        else:
            value, grad = torch.zeros((), dtype=losses.dtype), torch.zeros_like(leaf)
        lam = torch.where(active, grad / row_scale.clamp_min(1e-300), torch.zeros_like(grad))
        n = active.sum().to(losses.dtype)
        weights.append(lam / lam.sum() * n if active.any() else lam)
        objectives.append(value.detach())
        grads.append(grad)
    return torch.stack(objectives), torch.stack(grads), torch.stack(weights)


@st.composite
def _problems(draw: st.DrawFn) -> tuple[Tensor, Tensor]:
    losses, scale, _ = draw_scaled_losses(draw)
    return losses, scale


@SETTINGS
@given(problem=_problems())
def test_objective_gradient_and_weights_match_torchjd(problem: tuple[Tensor, Tensor]) -> None:
    losses, scale = problem
    objective, grad, weights = _ours(losses, scale)
    expected = _oracle(losses, scale)
    torch.testing.assert_close(objective, expected[0], rtol=1e-10, atol=0.0)
    torch.testing.assert_close(grad, expected[1], rtol=1e-10, atol=0.0)
    torch.testing.assert_close(weights, expected[2], rtol=1e-10, atol=1e-12)


@SETTINGS
@given(problem=_problems())
def test_k_rows_equal_k_single_calls(problem: tuple[Tensor, Tensor]) -> None:
    assert_k_rows_equal_k_single_calls(_ours, *problem)


def test_two_tasks_by_hand() -> None:
    # L = sqrt(1 · 4) = 2; ∂L/∂L_0 = 2 / (2 · 1) = 1, ∂L/∂L_1 = 2 / (2 · 4) = 1/4.
    objective, grad, weights = _ours(torch.tensor([[1.0, 4.0]]), torch.ones(1, 2))
    torch.testing.assert_close(objective, torch.tensor([2.0]))
    torch.testing.assert_close(grad, torch.tensor([[1.0, 0.25]]))
    torch.testing.assert_close(weights, torch.tensor([[1.6, 0.4]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_or_negative_loss_gets_no_gradient_and_stays_finite(dtype: torch.dtype) -> None:
    losses = torch.tensor([[0.0, 2.0, 3.0], [-1.0, 1e4, 1e-4], [0.0, 0.0, 0.0]], dtype=dtype)
    scale = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1e6, 1e-6], [1.0, 0.0, 2.0]], dtype=dtype)
    objective, grad, weights = _ours(losses, scale)
    assert torch.isfinite(objective).all() and torch.isfinite(grad).all()
    assert torch.isfinite(weights).all()
    assert grad[0, 0] == 0 and grad[1, 0] == 0 and weights[0, 0] == 0 and weights[1, 0] == 0
    # The others keep the oracle's ratio 1/x_t between them.
    torch.testing.assert_close(weights[0, 1] / weights[0, 2], torch.tensor(1.5, dtype=dtype))
    torch.testing.assert_close(weights.sum(-1), torch.tensor([3.0, 3.0, 2.0], dtype=dtype))
    assert (grad[2] == 0).all()


def test_no_active_task_gives_zero_objective() -> None:
    objective, grad, weights = _ours(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2))
    assert objective.tolist() == [0.0]
    assert (grad == 0).all() and (weights == 0).all()


def test_one_active_task_is_its_scaled_loss() -> None:
    objective, grad, _ = _ours(torch.tensor([[3.0, 5.0]]), torch.tensor([[0.0, 2.0]]))
    torch.testing.assert_close(objective, torch.tensor([10.0]))
    torch.testing.assert_close(grad, torch.tensor([[0.0, 2.0]]))
