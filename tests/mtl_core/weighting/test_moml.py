"""MOML: its hypergradient against the closed form and against plain autograd on the trainer's
look-ahead, its MGDA direction against an independent solver, a problem with a known answer,
inactive tasks and free slots, and batched = alone."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from mtl_core.batched import BatchedRun
from mtl_core.errors import ConfigError
from mtl_core.weighting import StepInputs
from mtl_core.weighting.moml import MOML
from tests.mtl_core.batched._helpers import assert_batched_equals_alone, synthetic_config
from tests.mtl_core.weighting._meta import (
    corrupted_auxiliary_run,
    min_norm_point,
    plain_gradient,
    plain_losses,
    sgd_step,
    softmax_jacobian,
    trainer_step,
)
from tests.mtl_core.weighting._toy import (
    linear_look_ahead,
    linear_problem,
    make_ctx,
    make_strategy,
)

# --- MOML -----------------------------------------------------------------------------------


def _moml(num_tasks: int, params: Sequence[dict[str, float]]) -> MOML:
    strategy = make_strategy("moml", params[0], num_tasks, tuple(range(len(params))))
    for slot, slot_params in enumerate(params[1:], start=1):
        strategy.reset_slot(slot, MOML.config_cls(**slot_params), make_ctx(num_tasks, slot))
    assert isinstance(strategy, MOML)
    return strategy


def test_hypergradient_matches_the_closed_form_on_linear_losses() -> None:
    """L_t = c_t + g_t·θ, L^val_i = c'_i + v_i·θ: G_f[t] = s_t g_t and G_F[i] = v_i wherever θ'
    is, so H[i] = −inner_lr v_i · G_fᵀ J with J the softmax Jacobian at α."""
    gen = torch.Generator().manual_seed(0)
    train, val = torch.randn(2, 3, 5, generator=gen), torch.randn(2, 3, 5, generator=gen)
    scale = torch.tensor([[1.0, 0.5, 2.0], [0.3, 1.0, 0.0]])
    strategy = _moml(3, [{"inner_lr": 0.2}, {"inner_lr": 0.03}])
    strategy.logits.copy_(torch.randn(2, 3, generator=gen))
    theta, losses = linear_problem(train, torch.ones(2, 3))
    look = linear_look_ahead(theta, train, torch.ones(2, 3), val, torch.ones(2, 3))
    inputs = StepInputs(losses, scale, [theta], torch.ones(2, dtype=torch.bool), look_ahead=look)
    hyper = strategy._hypergradients(inputs, look).float()
    for k, inner_lr in enumerate([0.2, 0.03]):
        active = scale[k] > 0
        z = torch.softmax(strategy.logits[k][active], dim=0)
        g_train = (scale[k, :, None] * train[k])[active]
        expected = -inner_lr * val[k][active] @ g_train.T @ softmax_jacobian(z)
        torch.testing.assert_close(hyper[k][active][:, active], expected, rtol=1e-5, atol=1e-6)
        # An inactive task has no row (its validation loss) and no column (its weight).
        assert (hyper[k][~active] == 0).all() and (hyper[k][:, ~active] == 0).all()


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_direction_is_the_min_norm_point_of_the_unit_hypergradients(num_tasks: int) -> None:
    gen = torch.Generator().manual_seed(num_tasks)
    hyper = torch.randn(3, num_tasks, num_tasks, generator=gen) * 10.0 ** torch.randint(
        -3, 3, (3, num_tasks, 1), generator=gen
    )
    active = torch.ones(3, num_tasks, dtype=torch.bool)
    active[1, 0] = False
    hyper[1, 0] = 0.0
    direction = MOML._direction(hyper, active)
    for k in range(3):
        rows = hyper[k][active[k]].double()
        unit = (rows / rows.norm(dim=-1, keepdim=True)).numpy()
        np.testing.assert_allclose(direction[k].numpy(), min_norm_point(unit), atol=2e-5)


def test_opposite_validation_hypergradients_leave_alpha_in_place() -> None:
    """Two validation losses that pull α exactly opposite ways: the min-norm direction is 0,
    and α must not take the step of size lr that Adam makes of a rounding-sized one."""
    gen = torch.Generator().manual_seed(1)
    train, v0 = torch.randn(1, 2, 7, generator=gen), torch.randn(7, generator=gen)
    val = torch.stack([v0, -0.37 * v0]).unsqueeze(0)
    strategy = _moml(2, [{"lr": 0.1}])
    theta, losses = linear_problem(train, torch.ones(1, 2))
    look = linear_look_ahead(theta, train, torch.ones(1, 2), val, torch.ones(1, 2))
    scale, occupied = torch.tensor([[1.0, 0.3]]), torch.ones(1, dtype=torch.bool)
    hyper = strategy._hypergradients(StepInputs(losses, scale, [theta], occupied), look)
    assert (hyper[0, 0] * hyper[0, 1]).sum() < 0  # the two rows are opposite
    strategy.objective(StepInputs(losses, scale, [theta], occupied, look_ahead=look))
    assert strategy.logits.abs().max() < 1e-6 * 0.1, strategy.logits


def test_a_step_on_the_trainers_look_ahead_matches_plain_autograd() -> None:
    """Everything by hand on a copy of the model: the training gradients of s_t L_t, the SGD
    step to θ', the validation gradients there, H, the MGDA direction and α's first Adam step
    (m̂ / √v̂ = d / |d|)."""
    inner_lr, lr = 0.3, 0.01
    config = synthetic_config(
        strategy="moml",
        strategy_params={"inner_lr": inner_lr, "lr": lr},
        weights={"classification": 2.0},
        seed=2,
    )
    step = trainer_step(config)
    strategy = step.run.strategy.members["moml"]
    assert isinstance(strategy, MOML)
    assert step.inputs.look_ahead is not None
    hyper = strategy._hypergradients(step.inputs, step.inputs.look_ahead)[0].float()

    scale = torch.tensor([1.0, 2.0])
    z = torch.full((2,), 0.5)
    losses = plain_losses(step.model, step.train)
    g_train = torch.stack([plain_gradient(scale[t] * losses[t], step.model) for t in range(2)])
    ahead = copy.deepcopy(step.model)
    sgd_step(ahead, inner_lr * z @ g_train)
    g_val = torch.stack([plain_gradient(loss, ahead) for loss in plain_losses(ahead, step.val)])
    expected = -inner_lr * g_val @ g_train.T @ softmax_jacobian(z)
    torch.testing.assert_close(hyper, expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))

    strategy.objective(step.inputs)
    unit = (expected / expected.norm(dim=-1, keepdim=True)).double().numpy()
    direction = torch.from_numpy(min_norm_point(unit)).float()
    assert direction.abs().max() > 1e-3  # the two validation losses agree here: α moves
    adam_step = lr * direction / (direction.abs() + 1e-8)
    torch.testing.assert_close(strategy.logits[0], -adam_step, rtol=1e-4, atol=1e-7)


def test_an_auxiliary_task_with_flipped_training_labels_loses_its_weight() -> None:
    weights = corrupted_auxiliary_run("moml", {"lr": 0.05}, 60)
    # Equal weights would be 1 each; the auxiliary task ends near 0, the others share the rest.
    assert weights[2] < 0.05 and weights[0] > 1.0 and weights[1] > 0.2, weights


def test_inactive_task_and_free_slot() -> None:
    """An inactive task (weight 0) keeps weight 0, logit 0 and its head untouched; the free
    slot's logits and Adam state do not move."""
    config = synthetic_config(strategy="moml", weights={"classification": 0.0}, seed=3)
    run = BatchedRun([config], num_slots=2)
    strategy = run.strategy.members["moml"]
    assert isinstance(strategy, MOML)
    heads = {n: p[0].clone() for n, p in run.params.items() if n.startswith("heads.1.")}
    reports = run.run_epoch()
    assert reports[0].report.weights == {"regression": 1.0, "classification": 0.0}
    assert (strategy.logits[:, 1] == 0).all() and (strategy.logits[1] == 0).all()
    assert (strategy._optimizer.exp_avg[0][1] == 0).all()
    for name, before in heads.items():
        torch.testing.assert_close(run.params[name][0], before, rtol=0, atol=0)


@pytest.mark.parametrize("num_slots", [2, 4])
def test_a_trial_meta_learns_the_same_in_a_batch_as_alone(num_slots: int) -> None:
    configs = [
        synthetic_config(
            strategy="moml",
            seed=seed,
            strategy_params={"inner_lr": 0.05 * seed, "lr": 1e-2},
            optimizer="sgd" if num_slots == 2 else "adam",
        )
        for seed in range(3, 3 + num_slots)
    ]
    assert_batched_equals_alone(configs)


@pytest.mark.parametrize(("params", "field"), [({"inner_lr": 0}, "inner_lr"), ({"lr": -1}, "lr")])
def test_bad_hyper_parameters_are_rejected(params: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError, match=f"'{field}'"):
        make_strategy("moml", params, 2)
