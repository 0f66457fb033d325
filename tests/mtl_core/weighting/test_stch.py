"""STCH (Lin et al. 2024) against torchjd's ``STCH`` scalarizer, in float64."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor
from torchjd.scalarization import STCH as TorchJDSTCH

from mtl_core.weighting import parse_strategy_config
from mtl_core.weighting.stch import STCH
from tests.mtl_core.weighting._loss_sets import (
    SETTINGS,
    draw_scaled_losses,
    normalised_to,
    objective_step,
)
from tests.mtl_core.weighting._toy import make_ctx, make_strategy


def _strategy(params: dict[str, float], k: int, t: int, reference: Tensor | None) -> STCH:
    """A K-slot STCH, through its warm-up when ``reference`` (``[K, T]`` epoch means) is given."""
    strategy = make_strategy("stch", params, num_tasks=t, seeds=range(k))
    assert isinstance(strategy, STCH)
    if reference is not None:
        for _ in range(int(params.get("warmup_epochs", 5))):
            strategy.on_epoch_end(torch.ones(k, dtype=torch.bool), reference)
    return strategy


def _oracle(
    losses: Tensor, scale: Tensor, mu: float, reference: Tensor | None
) -> tuple[Tensor, ...]:
    """torchjd's STCH of the log scaled losses of the active tasks, row by row.

    Convention mapping: torchjd's values are f_t = log(scale_t L_t) of the active tasks, its
    ``reference`` is z_t = log N_t (the strategy keeps it in float32, as all its state; None
    without warm-up: z = 0), its ``weights`` λ_t = 1 (its default is 1/m); the strategy
    multiplies by the number of active tasks n. Weights: ∂/∂(scale_t L_t), Σ = n.
    """
    objectives, grads, weights = [], [], []
    for k, (row_losses, row_scale) in enumerate(zip(losses, scale, strict=True)):
        active = row_scale > 0
        n = int(active.sum())
        leaf = row_losses.clone().requires_grad_(True)
        if n == 0:
            value, grad = torch.zeros((), dtype=losses.dtype), torch.zeros_like(leaf)
        else:
            z = None
            if reference is not None:
                z = torch.log(reference[k].float()).double()[active]
            scalarizer = TorchJDSTCH(mu, weights=torch.ones(n, dtype=losses.dtype), reference=z)
            value = n * scalarizer(torch.log(row_scale[active] * leaf[active]))
            (grad,) = torch.autograd.grad(value, [leaf])
        lam = torch.where(active, grad / row_scale.clamp_min(1e-300), torch.zeros_like(grad))
        weights.append(normalised_to(lam, n))
        objectives.append(value.detach())
        grads.append(grad)
    return torch.stack(objectives), torch.stack(grads), torch.stack(weights)


@st.composite
def _problems(draw: st.DrawFn) -> tuple[Tensor, Tensor, Tensor]:
    losses, scale, gen = draw_scaled_losses(draw)
    reference = 10.0 ** (8 * torch.rand(losses.shape, generator=gen, dtype=torch.float64) - 4)
    return losses, scale, reference


def _assert_matches(ours: tuple[Tensor, ...], expected: tuple[Tensor, ...]) -> None:
    # μ is per-slot state in float32 (as every strategy's), so exponents u/μ differ from the
    # float64 oracle's by ~1e-9 relative: entries far down the softmax's tail carry that
    # error, hence a tolerance relative to each row's largest entry: a few float32 roundings
    # of it (one was seen to reach 1.17e-7, just above one float32 eps).
    objective, grad, weights = ours
    torch.testing.assert_close(objective, expected[0], rtol=1e-7, atol=1e-7)
    tolerance = 4 * torch.finfo(torch.float32).eps
    for actual, wanted in ((grad, expected[1]), (weights, expected[2])):
        row_max = wanted.abs().amax(dim=-1, keepdim=True)
        assert ((actual - wanted).abs() <= tolerance * row_max + 1e-300).all(), (actual, wanted)


@SETTINGS
@given(problem=_problems(), mu=st.sampled_from([0.01, 0.1, 0.5, 1.0, 7.0]))
def test_after_the_warmup_matches_torchjd(problem: tuple[Tensor, ...], mu: float) -> None:
    losses, scale, reference = problem
    params = {"mu": mu, "warmup_epochs": 2}
    strategy = _strategy(params, losses.shape[0], losses.shape[1], reference)
    _assert_matches(objective_step(strategy, losses, scale), _oracle(losses, scale, mu, reference))


@SETTINGS
@given(problem=_problems(), mu=st.sampled_from([0.01, 1.0]))
def test_without_warmup_the_reference_is_one(problem: tuple[Tensor, ...], mu: float) -> None:
    losses, scale, _ = problem
    strategy = _strategy({"mu": mu, "warmup_epochs": 0}, losses.shape[0], losses.shape[1], None)
    _assert_matches(objective_step(strategy, losses, scale), _oracle(losses, scale, mu, None))


@SETTINGS
@given(problem=_problems())
def test_the_warmup_minimises_the_sum_of_log_losses(problem: tuple[Tensor, ...]) -> None:
    losses, scale, reference = problem
    k, t = losses.shape
    strategy = _strategy({"warmup_epochs": 3}, k, t, None)
    for _ in range(2):  # two of three warm-up epochs: still Σ log
        strategy.on_epoch_end(torch.ones(k, dtype=torch.bool), reference)
    objective, grad, weights = objective_step(strategy, losses, scale)
    active = scale > 0
    x = torch.where(active, scale * losses, torch.ones_like(losses))
    torch.testing.assert_close(objective, torch.log(x).sum(-1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, torch.where(active, 1 / losses, 0.0), rtol=1e-12, atol=0.0)
    inverse = torch.where(active, 1 / x, 0.0)
    n = active.sum(-1, keepdim=True).double()
    expected = torch.where(n > 0, inverse / inverse.sum(-1, keepdim=True) * n, 0.0)
    torch.testing.assert_close(weights, expected, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(problem=_problems())
def test_k_rows_equal_k_single_calls_with_their_own_configs(problem: tuple[Tensor, ...]) -> None:
    losses, scale, reference = problem
    k, t = losses.shape
    configs = [{"mu": 0.01 * 10**slot, "warmup_epochs": slot % 3} for slot in range(k)]
    batched = _strategy({}, k, t, None)
    for slot, params in enumerate(configs):
        batched.reset_slot(slot, parse_strategy_config("stch", params), make_ctx(t, slot))
    for _ in range(2):
        batched.on_epoch_end(torch.ones(k, dtype=torch.bool), reference)
    together = objective_step(batched, losses, scale)
    for slot, params in enumerate(configs):
        single = _strategy(params, 1, t, None)
        for _ in range(2):
            single.on_epoch_end(torch.ones(1, dtype=torch.bool), reference[slot : slot + 1])
        alone = objective_step(single, losses[slot : slot + 1], scale[slot : slot + 1])
        for b, s in zip(together, alone, strict=True):
            torch.testing.assert_close(b[slot : slot + 1], s, rtol=1e-12, atol=0.0)


def test_two_tasks_by_hand() -> None:
    # Reference (1, 1), μ = 1: L = 2 log(L_0 + L_1) = 2 log 4; ∂L/∂L_t = 2 / 4 for both.
    strategy = _strategy({"mu": 1.0, "warmup_epochs": 1}, 1, 2, torch.ones(1, 2))
    objective, grad, weights = objective_step(
        strategy, torch.tensor([[1.0, 3.0]]), torch.ones(1, 2)
    )
    torch.testing.assert_close(objective, torch.tensor([2 * math.log(4.0)]))
    torch.testing.assert_close(grad, torch.tensor([[0.5, 0.5]]))
    torch.testing.assert_close(weights, torch.tensor([[1.0, 1.0]]))


def test_the_task_furthest_above_its_reference_dominates_at_small_mu() -> None:
    reference = torch.tensor([[10.0, 0.1]])
    strategy = _strategy({"mu": 0.01, "warmup_epochs": 1}, 1, 2, reference)
    # Task 0 is at 0.5 x its reference, task 1 at 2x: nearly all the weight goes to task 1.
    _, grad, weights = objective_step(strategy, torch.tensor([[5.0, 0.2]]), torch.ones(1, 2))
    assert weights[0, 1] > 1.999
    torch.testing.assert_close(grad[0, 1], torch.tensor(2 / 0.2), rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_degenerate_losses_and_references_stay_finite(dtype: torch.dtype) -> None:
    reference = torch.tensor([[0.0, float("nan"), 1e30], [1.0, 1.0, 1.0]])
    strategy = _strategy({"mu": 1e-3, "warmup_epochs": 1}, 2, 3, reference)
    # The unusable references (0, NaN) count as 1.
    assert strategy.log_reference[0, :2].tolist() == [0.0, 0.0]
    losses = torch.tensor([[0.0, -1.0, 1e4], [1e-4, 1e4, 0.0]], dtype=dtype)
    scale = torch.tensor([[1.0, 1.0, 1e6], [1e-6, 1e6, 0.0]], dtype=dtype)
    objective, grad, weights = objective_step(strategy, losses, scale)
    for value in (objective, grad, weights):
        assert torch.isfinite(value).all(), value
    assert grad[0, 0] == 0 and grad[0, 1] == 0 and weights[0, 0] == 0
    torch.testing.assert_close(weights.sum(-1), torch.tensor([3.0, 2.0], dtype=dtype))


def test_free_slots_keep_their_state_at_epoch_end() -> None:
    strategy = _strategy({"warmup_epochs": 1}, 2, 2, None)
    strategy.on_epoch_end(torch.tensor([True, False]), torch.tensor([[2.0, 3.0], [4.0, 5.0]]))
    assert strategy.epochs_seen.tolist() == [1, 0]
    torch.testing.assert_close(strategy.log_reference[1], torch.zeros(2))
    torch.testing.assert_close(strategy.log_reference[0], torch.log(torch.tensor([2.0, 3.0])))
