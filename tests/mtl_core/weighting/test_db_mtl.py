"""DB-MTL (Lin et al. 2023) against a float64 restatement of the paper, over several steps."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from mtl_core.weighting import StepInputs, parse_strategy_config
from mtl_core.weighting.db_mtl import DBMTL
from tests.mtl_core.weighting._toy import make_ctx, make_strategy

SETTINGS = settings(max_examples=25, deadline=None, database=None)
#: (β, σ) pairs exactly representable in float32 (the strategy's per-slot state).
CONFIGS = [(0.0, 0.0), (0.5, 0.0), (0.875, 0.0), (0.875, 0.5), (0.25, 1.0)]
EPS = float(torch.tensor(1e-8, dtype=torch.float32))  # the default ε as the strategy holds it


class Oracle:
    """One trial's DB-MTL, restated from the paper in float64 with plain Python loops.

    Convention mapping: the strategy receives g_t = ∇(scale_t L_t); the paper's gradient of
    the log loss is then g_t / (L_t + ε) (scale_t · ∇ log(L_t + ε)). Only active tasks
    enter the max, the sum, and the EMA update; reported weights are α_t / (L_t + ε)
    rescaled to Σ = (number of active tasks).
    """

    def __init__(self, beta: float, sigma: float, num_tasks: int, dim: int) -> None:
        self.beta, self.sigma, self.step = beta, sigma, 0
        #: Σ_t ‖α_t ĝ_t‖ of the last step: the size of the update before any cancellation.
        self.magnitude = 0.0
        self.avg = [torch.zeros(dim, dtype=torch.float64) for _ in range(num_tasks)]

    def __call__(self, grads: Tensor, losses: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
        self.step += 1
        b = self.beta / self.step**self.sigma
        active = [t for t in range(len(self.avg)) if scale[t] > 0]
        for t in active:
            h = grads[t] / (max(float(losses[t]), 0.0) + EPS)
            self.avg[t] = b * self.avg[t] + (1 - b) * h
        norms = {t: float(self.avg[t].norm()) for t in active}
        largest = max(norms.values(), default=0.0)
        self.magnitude = largest * len(active)
        update = torch.zeros_like(self.avg[0])
        weights = torch.zeros(len(self.avg), dtype=torch.float64)
        for t in active:
            if norms[t] > 0:
                alpha = largest / norms[t]
                update += alpha * self.avg[t]
                weights[t] = alpha / (max(float(losses[t]), 0.0) + EPS)
        if weights.sum() > 0:
            weights = weights / weights.sum() * len(active)
        else:
            weights[active] = 1.0
        return update, weights


@st.composite
def _runs(draw: st.DrawFn) -> tuple[list[tuple[float, float]], Tensor, Tensor, Tensor]:
    """(configs per slot, grads ``[S, K, T, P]``, losses and scale ``[S, K, T]``), S = 4 steps."""
    k = draw(st.sampled_from([1, 4]))
    t = draw(st.sampled_from([2, 3, 5]))
    p = draw(st.integers(1, 6))
    configs = draw(st.lists(st.sampled_from(CONFIGS), min_size=k, max_size=k))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    f64 = torch.float64
    grads = torch.randn(4, k, t, p, generator=gen, dtype=f64)
    grads = grads * 10.0 ** (8 * torch.rand(4, k, t, 1, generator=gen, dtype=f64) - 4)
    if draw(st.booleans()):  # a degenerate set: an opposite pair and a zero row
        grads[:, :, 1] = -grads[:, :, 0]
        if t > 2:
            grads[:, :, 2] = 0
    losses = 10.0 ** (8 * torch.rand(4, k, t, generator=gen, dtype=f64) - 4)
    scale = 10.0 ** (6 * torch.rand(4, k, t, generator=gen, dtype=f64) - 3)
    inactive = torch.rand(4, k, t, generator=gen) < 0.3
    scale = torch.where(inactive, torch.zeros_like(scale), scale)
    return configs, grads * scale.unsqueeze(-1), losses, scale


def _strategy(configs: list[tuple[float, float]], num_tasks: int) -> DBMTL:
    strategy = make_strategy("db_mtl", num_tasks=num_tasks, seeds=range(len(configs)))
    for slot, (beta, sigma) in enumerate(configs):
        config = parse_strategy_config("db_mtl", {"beta": beta, "beta_sigma": sigma})
        strategy.reset_slot(slot, config, make_ctx(num_tasks, slot))
    assert isinstance(strategy, DBMTL)
    return strategy


def _inputs(losses: Tensor, scale: Tensor, occupied: Tensor | None = None) -> StepInputs:
    if occupied is None:
        occupied = torch.ones(losses.shape[0], dtype=torch.bool)
    return StepInputs(losses, scale, [], occupied)


@SETTINGS
@given(run=_runs())
def test_matches_the_paper_over_several_steps(run: tuple) -> None:
    configs, grads, losses, scale = run
    t, p = grads.shape[2:]
    strategy = _strategy(configs, t)
    oracles = [Oracle(beta, sigma, t, p) for beta, sigma in configs]
    for step in range(grads.shape[0]):
        combined, weights = strategy.combine(grads[step], _inputs(losses[step], scale[step]))
        for slot, oracle in enumerate(oracles):
            update, expected = oracle(grads[step, slot], losses[step, slot], scale[step, slot])
            # Opposite pairs cancel: the rounding is relative to the terms, not their sum.
            error = (combined[slot] - update).abs().max()
            assert error <= 1e-9 * oracle.magnitude, (combined, update)
            torch.testing.assert_close(weights[slot], expected, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(run=_runs())
def test_k_rows_equal_k_single_trials_and_free_slots_stay(run: tuple) -> None:
    configs, grads, losses, scale = run
    k, t = grads.shape[1:3]
    batched = _strategy(configs, t)
    singles = [_strategy([config], t) for config in configs]
    occupied = torch.ones(k, dtype=torch.bool)
    for step in range(grads.shape[0]):
        if step == 2 and k > 1:
            occupied[1] = False
            frozen = (batched.averages[1].clone(), batched.steps[1].clone())
        combined, weights = batched.combine(
            grads[step], _inputs(losses[step], scale[step], occupied.clone())
        )
        for slot, single in enumerate(singles):
            if not occupied[slot]:
                continue
            one = _inputs(losses[step, slot : slot + 1], scale[step, slot : slot + 1])
            alone, alone_weights = single.combine(grads[step, slot : slot + 1], one)
            torch.testing.assert_close(combined[slot : slot + 1], alone, rtol=1e-12, atol=0.0)
            torch.testing.assert_close(weights[slot : slot + 1], alone_weights)
    if k > 1:
        assert torch.equal(batched.averages[1], frozen[0])
        assert torch.equal(batched.steps[1], frozen[1])


def test_first_step_by_hand() -> None:
    # β = 0.5: ĝ = 0.5 · g / L; norms (0.5·3/1, 0.5·1/0.5) = (1.5, 1): α = (1, 1.5).
    strategy = _strategy([(0.5, 0.0)], 2)
    grads = torch.tensor([[[3.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    losses = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    combined, weights = strategy.combine(grads, _inputs(losses, torch.ones(1, 2)))
    torch.testing.assert_close(combined, torch.tensor([[1.5, 1.5]], dtype=torch.float64))
    # α / (L + ε) ∝ (1, 3): Σ = 2.
    torch.testing.assert_close(weights, torch.tensor([[0.5, 1.5]], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_degenerate_steps_stay_finite(dtype: torch.dtype) -> None:
    strategy = _strategy([(0.875, 0.5)] * 3, 3)
    grads = torch.tensor(
        [
            [[1e6, 0.0], [-1e6, 0.0], [0.0, 0.0]],
            [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
            [[1e-6, 1e-6], [1e-6, 1e-6], [3.0, -2.0]],
        ],
        dtype=dtype,
    )
    losses = torch.tensor([[0.0, 1e4, -1.0], [1.0, 1.0, 1.0], [1e-4, 1e4, 1.0]], dtype=dtype)
    for _ in range(3):
        combined, weights = strategy.combine(grads, _inputs(losses, torch.ones(3, 3)))
        assert torch.isfinite(combined).all() and torch.isfinite(weights).all()
        torch.testing.assert_close(weights.sum(-1), torch.full((3,), 3.0, dtype=dtype))
    assert (combined[1] == 0).all()
