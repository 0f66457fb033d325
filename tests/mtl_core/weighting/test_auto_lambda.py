"""Auto-λ: its hypergradient against the closed form, a problem with a known answer, and the
trainer's validation batches (batched = alone)."""

from __future__ import annotations

import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.weighting import StepInputs
from mtl_core.weighting.auto_lambda import AutoLambda
from tests.mtl_core.batched._helpers import assert_batched_equals_alone, synthetic_config
from tests.mtl_core.weighting._meta import regression_look_ahead
from tests.mtl_core.weighting._toy import linear_look_ahead, linear_problem, make_strategy


@pytest.mark.parametrize("hypergradient", ["finite_difference", "exact"])
def test_hypergradient_matches_the_closed_form_on_linear_losses(hypergradient: str) -> None:
    """L_t = c_t + g_t·θ, L^val_p = c'_p + v_p·θ: θ' = θ − α Σ λ_t s_t g_t, so
    ∂L_val(θ')/∂λ_t = −α s_t g_t · Σ_{p ∈ primary} v_p (exact; the difference is exact too)."""
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(2, 3, 5, generator=gen)
    val = torch.randn(2, 3, 5, generator=gen)
    scale = torch.tensor([[1.0, 0.5, 2.0], [0.3, 1.0, 0.0]])
    lr = 0.05
    theta, losses = linear_problem(train, torch.ones(2, 3))
    look = linear_look_ahead(theta, train, torch.ones(2, 3), val, torch.ones(2, 3), lr=lr)
    strategy = make_strategy(
        "auto_lambda", {"primary": ["task0", "task2"], "hypergradient": hypergradient}, 3, (0, 1)
    )
    assert isinstance(strategy, AutoLambda)
    inputs = StepInputs(losses, scale, [theta], torch.ones(2, dtype=torch.bool), look_ahead=look)
    method = strategy._exact if hypergradient == "exact" else strategy._finite_difference
    primary_direction = val[:, 0] + val[:, 2]  # [K, P]
    expected = -lr * scale * torch.einsum("ktp,kp->kt", train, primary_direction)
    torch.testing.assert_close(method(inputs, look), expected, rtol=1e-4, atol=1e-6)


def test_an_auxiliary_task_that_hurts_the_primary_one_loses_its_weight() -> None:
    """Primary: y = x·a. Auxiliary: y = −x·a + noise, which pulls the shared model away from
    the primary task's answer. Meta-learned on the primary task's validation loss, the
    auxiliary weight ends far below the primary's, and the primary's
    validation loss ends lower than under equal fixed weights. (Near the optimum Adam's
    normalised steps let λ wander: the test holds the ratio, not the path.)"""
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(4, generator=gen)
    x, vx = torch.randn(64, 4, generator=gen), torch.randn(64, 4, generator=gen)
    primary, aux = x @ a, -(x @ a) + 0.1 * torch.randn(64, generator=gen)
    val_primary, val_aux = vx @ a, -(vx @ a)
    strategy = make_strategy("auto_lambda", {"primary": ["task0"], "lr": 0.05}, 2)
    assert isinstance(strategy, AutoLambda)
    fixed = torch.zeros(1, 4, requires_grad=True)
    theta = torch.zeros(1, 4, requires_grad=True)
    lr, scale, occupied = 0.05, torch.ones(1, 2), torch.ones(1, dtype=torch.bool)
    for _ in range(60):
        look, losses = regression_look_ahead(theta, x, [primary, aux], vx, [val_primary, val_aux])
        objective, weights = strategy.objective(
            StepInputs(losses, scale, [theta], occupied, look_ahead=look)
        )
        (grad,) = torch.autograd.grad(objective.sum(), [theta])
        with torch.no_grad():
            theta -= lr * grad
        fixed_losses = torch.stack([((x @ fixed[0] - y) ** 2).mean() for y in (primary, aux)])
        (fixed_grad,) = torch.autograd.grad(fixed_losses.sum(), [fixed])
        with torch.no_grad():
            fixed -= lr * 0.1 * fixed_grad  # λ = 0.1 each, Auto-λ's starting point
    lambdas = strategy.lambdas[0]
    assert lambdas[1] < lambdas[0] / 3 and lambdas[0] > 0.1, lambdas
    assert weights[0, 0] > 1.5 > weights[0, 1], weights
    val_meta = ((vx @ theta[0].detach() - val_primary) ** 2).mean()
    val_fixed = ((vx @ fixed[0].detach() - val_primary) ** 2).mean()
    assert val_meta < 0.5 * val_fixed, (val_meta, val_fixed)


@pytest.mark.parametrize("num_slots", [2, 4])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_trial_meta_learns_the_same_in_a_batch_as_alone(num_slots: int, optimizer: str) -> None:
    """The validation batches come from each trial's generator, the look-ahead from its own
    optimizer state: the last slot of K equals its trial alone."""
    configs = [
        synthetic_config(
            strategy="auto_lambda",
            optimizer=optimizer,
            seed=seed,
            strategy_params={"lr": 1e-2, "primary": ["regression"] if seed % 2 else []},
        )
        for seed in range(3, 3 + num_slots)
    ]
    assert_batched_equals_alone(configs)


def test_an_unknown_primary_task_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown task 'depth'; valid choices: task0, task1"):
        make_strategy("auto_lambda", {"primary": ["depth"]}, 2)
