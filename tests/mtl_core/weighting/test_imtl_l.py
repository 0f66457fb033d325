"""IMTL-L (Liu et al. 2021) against torchjd's ``IMTLL`` scalarizer, in float64."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor
from torchjd.scalarization import IMTLL as TorchJDIMTLL

from mtl_core.weighting import LossWeighting, parse_strategy_config
from tests.mtl_core.weighting._loss_sets import (
    SETTINGS,
    assert_k_rows_equal_k_single_calls,
    draw_scaled_losses,
    normalised_to,
)
from tests.mtl_core.weighting._toy import make_ctx, make_strategy, step_inputs


def _ours(losses: Tensor, scale: Tensor, s: Tensor) -> tuple[Tensor, ...]:
    """(objective, ∂/∂L, ∂/∂s, weights) of one K-slot call with log-scales ``s``."""
    k, t = losses.shape
    strategy = make_strategy("imtl_l", num_tasks=t, seeds=range(k))
    assert isinstance(strategy, LossWeighting)
    (param,) = strategy.parameters()
    with torch.no_grad():
        param.copy_(s)
    leaf = losses.clone().requires_grad_(True)
    objective, weights = strategy.objective(step_inputs(leaf, scale))
    loss_grad, s_grad = torch.autograd.grad(objective.sum(), [leaf, param])
    return objective.detach(), loss_grad, s_grad.to(losses.dtype), weights


def _oracle(losses: Tensor, scale: Tensor, s: Tensor) -> tuple[Tensor, ...]:
    """torchjd's IMTL-L on x_t = scale_t L_t of the active tasks, row by row.

    Convention mapping: torchjd's scalarizer owns its log-scales (``log_scale``, init 0); we
    copy the active entries of s into it. Its values are the scaled losses x; the inactive
    tasks are not given to it, so their L and s get gradient 0. Weights: ∂/∂x_t = e^{s_t}
    rescaled to Σ = (number of active tasks).
    """
    objectives, loss_grads, s_grads, weights = [], [], [], []
    for row_losses, row_scale, row_s in zip(losses, scale, s, strict=True):
        active = row_scale > 0
        n = int(active.sum())
        leaf = row_losses.clone().requires_grad_(True)
        loss_grad, s_grad = torch.zeros_like(leaf), torch.zeros_like(row_s)
        value = torch.zeros((), dtype=losses.dtype)
        if n:
            scalarizer = TorchJDIMTLL(n).to(torch.float64)
            with torch.no_grad():
                scalarizer.log_scale.copy_(row_s[active])
            value = scalarizer(row_scale[active] * leaf[active])
            loss_grad, active_s_grad = torch.autograd.grad(value, [leaf, scalarizer.log_scale])
            s_grad[active] = active_s_grad
        lam = torch.where(active, torch.exp(row_s), torch.zeros_like(row_s))
        weights.append(normalised_to(lam, n))
        objectives.append(value.detach())
        loss_grads.append(loss_grad)
        s_grads.append(s_grad)
    return tuple(torch.stack(v) for v in (objectives, loss_grads, s_grads, weights))


@st.composite
def _problems(draw: st.DrawFn) -> tuple[Tensor, Tensor, Tensor]:
    losses, scale, gen = draw_scaled_losses(draw)
    s = 10 * torch.rand(losses.shape, generator=gen, dtype=torch.float64) - 5
    # The strategy keeps s in float32 (as all its state): give it float32-exact values.
    return losses, scale, s.float().double()


@SETTINGS
@given(problem=_problems())
def test_objective_and_gradients_match_torchjd(problem: tuple[Tensor, ...]) -> None:
    ours, expected = _ours(*problem), _oracle(*problem)
    for actual, wanted in zip(ours, expected, strict=True):
        torch.testing.assert_close(actual, wanted, rtol=1e-6, atol=1e-12)


@SETTINGS
@given(problem=_problems())
def test_k_rows_equal_k_single_calls(problem: tuple[Tensor, ...]) -> None:
    assert_k_rows_equal_k_single_calls(_ours, *problem)


def test_gradients_by_hand() -> None:
    s = torch.tensor([[0.0, 0.5]], dtype=torch.float64)
    objective, loss_grad, s_grad, weights = _ours(
        torch.tensor([[2.0, 4.0]], dtype=torch.float64), torch.tensor([[1.0, 0.5]]), s
    )
    e = torch.exp(torch.tensor(0.5, dtype=torch.float64))
    torch.testing.assert_close(objective, (2.0 + 2.0 * e - 0.5).reshape(1))
    torch.testing.assert_close(loss_grad, torch.stack([torch.tensor(1.0).double(), 0.5 * e])[None])
    torch.testing.assert_close(s_grad, torch.stack([torch.tensor(1.0).double(), 2 * e - 1])[None])
    torch.testing.assert_close(weights, 2 * torch.exp(s) / torch.exp(s).sum())


def test_s_settles_where_every_scaled_loss_is_one() -> None:
    strategy = make_strategy("imtl_l", num_tasks=2)
    assert isinstance(strategy, LossWeighting)
    optimizer = torch.optim.SGD(strategy.parameters(), lr=0.1)
    losses = torch.tensor([[0.01, 30.0]])
    scale = torch.tensor([[1.0, 2.0]])
    for _ in range(3000):
        optimizer.zero_grad()
        objective, _ = strategy.objective(step_inputs(losses, scale))
        objective.sum().backward()
        optimizer.step()
    (s,) = strategy.parameters()
    torch.testing.assert_close(torch.exp(s.detach()) * scale * losses, torch.ones(1, 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inactive_task_leaves_its_scale_alone_and_extremes_stay_finite(dtype: torch.dtype) -> None:
    losses = torch.tensor([[0.0, 1e4, 3.0]], dtype=dtype)
    scale = torch.tensor([[1e-6, 1e6, 0.0]], dtype=dtype)
    s = torch.tensor([[80.0, -80.0, 1.0]], dtype=torch.float64)
    objective, loss_grad, s_grad, weights = _ours(losses, scale, s)
    for value in (objective, loss_grad, s_grad, weights):
        assert torch.isfinite(value).all(), value
    assert loss_grad[0, 2] == 0 and s_grad[0, 2] == 0 and weights[0, 2] == 0
    torch.testing.assert_close(weights.sum(), torch.tensor(2.0, dtype=dtype))


def test_reset_slot_restarts_the_log_scales() -> None:
    strategy = make_strategy("imtl_l", seeds=[0, 1])
    (s,) = strategy.parameters()
    with torch.no_grad():
        s.fill_(0.7)
    strategy.reset_slot(1, parse_strategy_config("imtl_l", None), make_ctx(2, seed=1))
    torch.testing.assert_close(s.detach(), torch.tensor([[0.7, 0.7], [0.0, 0.0]]))
