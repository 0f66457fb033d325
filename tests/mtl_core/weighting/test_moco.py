"""MoCo (Fernando et al. 2023) against a float64 restatement of its Algorithm 1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl_core.errors import ConfigError
from mtl_core.weighting import parse_strategy_config
from mtl_core.weighting._projection import project_active_simplex
from mtl_core.weighting.moco import MoCo
from tests.mtl_core.weighting._toy import GRADIENT_KINDS, make_ctx, make_grads, step_inputs

FloatArray = np.ndarray


def _simplex(v: FloatArray) -> FloatArray:
    """Projection onto the probability simplex: bisection on θ in Σ max(v - θ, 0) = 1."""
    low, high = float(v.min()) - 1.0, float(v.max())
    for _ in range(200):
        mid = (low + high) / 2
        if np.maximum(v - mid, 0).sum() > 1:
            low = mid
        else:
            high = mid
    # The support found, θ exactly: Σ_support (v - θ) = 1.
    support = v > (low + high) / 2
    theta = (v[support].sum() - 1) / support.sum()
    return np.maximum(v - theta, 0)


class Reference:
    """One trial of MoCo as the paper states it, in float64 (inactive tasks: held out)."""

    def __init__(self, num_tasks: int, beta: float, gamma: float, rho: float) -> None:
        self.y: FloatArray | None = None
        self.seen = np.zeros(num_tasks, dtype=bool)
        self.lam = np.full(num_tasks, 1.0 / num_tasks)
        self.beta, self.gamma, self.rho = beta, gamma, rho

    def step(self, g: FloatArray, active: FloatArray) -> tuple[FloatArray, FloatArray]:
        if self.y is None:
            self.y = np.zeros_like(g)
        for t in np.flatnonzero(active):
            self.y[t] = g[t] if not self.seen[t] else self.y[t] + self.beta * (g[t] - self.y[t])
            self.seen[t] = True
        on = np.flatnonzero(active)
        lam = np.zeros_like(self.lam)
        if on.size:
            y = self.y[on]
            current = self.lam[on]
            # Exactly rounded dot products: an exactly opposite pair cancels exactly.
            gram = np.array([[math.fsum(a * b) for b in y] for a in y])
            moved = current - self.gamma * (gram @ current + self.rho * current)
            lam[on] = _simplex(moved)
        self.lam = lam
        if on.size == 1:  # the project's convention: one active task's gradient as is
            return g[on[0]], lam
        return lam @ np.where(active[:, None], self.y, 0.0), lam


def _strategy(configs: list[dict[str, float]], num_tasks: int) -> MoCo:
    strategy = MoCo(len(configs), num_tasks, torch.device("cpu"))
    for slot, params in enumerate(configs):
        strategy.reset_slot(slot, parse_strategy_config("moco", params), make_ctx(num_tasks))
    return strategy


@settings(max_examples=25, deadline=None, database=None)
@given(
    num_slots=st.sampled_from([1, 4]),
    num_tasks=st.sampled_from([2, 3, 5]),
    kinds=st.lists(st.sampled_from(GRADIENT_KINDS), min_size=4, max_size=4),
    # γ ‖Y Yᵀ‖ up to ~100: each λ step multiplies the previous step's rounding by about that
    # much (both sides round), so larger scales compare only to that accuracy; the walk tests
    # cover finiteness at 1e-4..1e4.
    exponent=st.floats(-3, 0.5),
    beta=st.sampled_from([0.05, 0.5, 1.0]),
    gamma=st.sampled_from([0.01, 0.1, 1.0]),
    rho=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_the_paper_restated_over_several_steps(
    num_slots: int,
    num_tasks: int,
    kinds: list[str],
    exponent: float,
    beta: float,
    gamma: float,
    rho: float,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    params = {"beta": beta, "gamma": gamma, "rho": rho}
    strategy = _strategy([params] * num_slots, num_tasks)
    references = [Reference(num_tasks, beta, gamma, rho) for _ in range(num_slots)]
    for step in range(4):
        grads = np.stack(
            [
                make_grads(kinds[k], num_tasks, 6, 10.0**exponent, seed + 7 * step + k)
                for k in range(num_slots)
            ]
        )
        active = rng.random((num_slots, num_tasks)) > 0.25
        active[:, step % num_tasks] = True
        grads = grads * active[..., None]
        inputs = step_inputs(
            torch.ones(num_slots, num_tasks, dtype=torch.float64), torch.from_numpy(active)
        )
        combined, weights = strategy.combine(torch.tensor(grads), inputs)
        for k, reference in enumerate(references):
            expected, lam = reference.step(grads[k], active[k])
            scale = 1.0 + np.abs(grads[k]).max()
            np.testing.assert_allclose(combined[k].numpy(), expected, rtol=1e-7, atol=1e-9 * scale)
            # Reported weights: λ with Σ = number of active tasks.
            total = lam.sum()
            if total > 0:
                np.testing.assert_allclose(
                    weights[k].numpy(), lam / total * active[k].sum(), rtol=1e-6, atol=1e-9
                )


def test_free_slots_keep_their_state() -> None:
    strategy = _strategy([{}, {}], 2)
    grads = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[3.0, 1.0], [-1.0, 1.0]]])
    occupied = torch.tensor([True, False])
    strategy.combine(grads, step_inputs(torch.ones(2, 2), None, occupied=occupied))
    assert strategy.tracked is not None
    assert (strategy.tracked[1] == 0).all() and not strategy.seen[1].any()
    torch.testing.assert_close(strategy.lam[1], torch.full((2,), 0.5, dtype=torch.float64))


def test_the_tracked_gradients_smooth_the_noise() -> None:
    # Alternating noisy gradients around (1, 0): with small β the step keeps near their mean.
    strategy = _strategy([{"beta": 0.1, "gamma": 0.01}], 2)
    steps = []
    for i in range(200):
        noise = 1.0 if i % 2 else -1.0
        grads = torch.tensor([[[1.0, noise], [1.0, noise]]], dtype=torch.float64)
        combined, _ = strategy.combine(grads, step_inputs(torch.ones(1, 2)))
        steps.append(combined[0])
    assert abs(float(steps[-1][1])) < 0.1
    torch.testing.assert_close(float(steps[-1][0]), 1.0)


def test_simplex_projection_of_the_active_entries() -> None:
    values = torch.tensor([[0.5, 0.2, 3.0], [1.0, 1.0, 1.0], [-5.0, 2.0, 0.1]], dtype=torch.float64)
    active = torch.tensor([[True, True, False], [False, False, False], [True, True, True]])
    projected = project_active_simplex(values, active)
    for row in range(3):
        on = active[row].numpy()
        expected = np.zeros(3)
        if on.any():
            expected[on] = _simplex(values[row].numpy()[on])
        np.testing.assert_allclose(projected[row].numpy(), expected, atol=1e-12)


def test_config_bounds() -> None:
    with pytest.raises(ConfigError, match="beta"):
        parse_strategy_config("moco", {"beta": 0.0})
    with pytest.raises(ConfigError, match="gamma"):
        parse_strategy_config("moco", {"gamma": -1.0})
