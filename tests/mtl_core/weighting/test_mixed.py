"""Several strategies sharing the K slots of one batch: each slot takes its owner's result."""

from __future__ import annotations

import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.weighting import (
    GradientWeighting,
    LossWeighting,
    MixedStrategy,
    StepInputs,
    parse_strategy_config,
    strategy_gradients,
)
from tests.mtl_core.weighting._toy import linear_problem, make_ctx, make_strategy

CPU = torch.device("cpu")


def _mixed(names: list[str], owners: list[str], num_tasks: int = 3) -> MixedStrategy:
    mixed = MixedStrategy(names, len(owners), num_tasks, CPU)
    for slot, name in enumerate(owners):
        mixed.reset_slot(slot, name, parse_strategy_config(name, None), make_ctx(num_tasks, slot))
    return mixed


def _inputs(losses: torch.Tensor, theta: torch.Tensor, scale: torch.Tensor) -> StepInputs:
    return StepInputs(losses, scale, [theta], torch.ones(losses.shape[0], dtype=torch.bool))


def test_loss_slots_take_their_owners_objective_and_weights() -> None:
    owners = ["uncertainty", "rlw", "dwa", "loss_balance"]
    mixed = _mixed(["dwa", "loss_balance", "rlw", "uncertainty"], owners)
    g = torch.Generator().manual_seed(0)
    grads = torch.randn(4, 3, 5, generator=g)
    offsets = torch.rand(4, 3, generator=g) + 0.5
    scale = torch.tensor([[1.0, 2.0, 0.0]]).repeat(4, 1)
    singles = [make_strategy(name, num_tasks=3, seeds=[slot]) for slot, name in enumerate(owners)]
    ended = torch.ones(1, dtype=torch.bool)
    for _ in range(3):  # DWA leaves its warm-up at the third step
        theta, losses = linear_problem(grads, offsets)
        objective, weights = mixed.objective(_inputs(losses, theta, scale))
        mixed.on_epoch_end(ended.repeat(4), losses.detach())
        for k, single in enumerate(singles):
            assert isinstance(single, LossWeighting)
            theta, losses = linear_problem(grads[k : k + 1], offsets[k : k + 1])
            one, one_weights = single.objective(_inputs(losses, theta, scale[k : k + 1]))
            single.on_epoch_end(ended, losses.detach())
            torch.testing.assert_close(objective[k : k + 1].detach(), one.detach())
            torch.testing.assert_close(weights[k : k + 1], one_weights)
        offsets = offsets * torch.tensor([0.5, 0.9, 0.7])


def test_gradient_slots_take_their_owners_combination() -> None:
    owners = ["pcgrad", "mgda", "cagrad"]
    mixed = _mixed(owners, owners)
    grads = torch.randn(3, 3, 4, generator=torch.Generator().manual_seed(1))
    scale = torch.ones(3, 3)
    inputs = StepInputs(torch.ones(3, 3), scale, [], torch.ones(3, dtype=torch.bool))
    combined, weights = mixed.combine(grads, inputs)
    for k, name in enumerate(owners):
        single = make_strategy(name, num_tasks=3, seeds=[k])
        assert isinstance(single, GradientWeighting)
        one_inputs = StepInputs(torch.ones(1, 3), scale[:1], [], torch.ones(1, dtype=torch.bool))
        one, one_weights = single.combine(grads[k : k + 1], one_inputs)
        torch.testing.assert_close(combined[k : k + 1], one)
        torch.testing.assert_close(weights[k : k + 1], one_weights)


def test_a_member_draws_only_for_the_slots_it_owns() -> None:
    mixed = MixedStrategy(["fixed", "rlw"], 2, 2, CPU)
    rlw_ctx, fixed_ctx = make_ctx(2, seed=3), make_ctx(2, seed=4)
    mixed.reset_slot(0, "rlw", parse_strategy_config("rlw", None), rlw_ctx)
    mixed.reset_slot(1, "fixed", parse_strategy_config("fixed", None), fixed_ctx)
    untouched = fixed_ctx.generator.get_state()
    theta, losses = linear_problem(torch.ones(2, 2, 3))
    _, weights = mixed.objective(_inputs(losses, theta, torch.ones(2, 2)))
    assert torch.equal(fixed_ctx.generator.get_state(), untouched)
    expected = torch.softmax(torch.randn(2, generator=torch.Generator().manual_seed(3)), 0) * 2
    torch.testing.assert_close(weights[0], expected)
    assert weights[1].tolist() == [1.0, 1.0]


def test_loss_and_gradient_strategies_cannot_share_a_batch() -> None:
    with pytest.raises(ConfigError, match="cannot share"):
        MixedStrategy(["fixed", "pcgrad"], 2, 2, CPU)
    mixed = MixedStrategy(["fixed"], 2, 2, CPU)
    with pytest.raises(ConfigError, match="cannot join"):
        mixed.add_member("mgda")


def test_a_refill_adds_the_new_member_and_its_parameters() -> None:
    mixed = _mixed(["fixed"], ["fixed", "fixed"], num_tasks=2)
    assert mixed.parameters() == []
    config = parse_strategy_config("uncertainty", None)
    mixed.reset_slot(1, "uncertainty", config, make_ctx(2, seed=9))
    (s,) = mixed.parameters()
    assert s.shape == (2, 2)
    theta, losses = linear_problem(torch.ones(2, 2, 3))
    inputs = _inputs(losses, theta, torch.ones(2, 2))
    shared, _, extra, _ = strategy_gradients(mixed, inputs, [theta], [], "loss")
    # Trial 0 (fixed) gets Σ_t ∇L_t; trial 1 (uncertainty, s = 0) the same, plus ∂/∂s.
    torch.testing.assert_close(shared[0], torch.full((2, 3), 2.0))
    (s_grad,) = extra
    torch.testing.assert_close(s_grad[1], 1 - losses.detach()[1])
    assert (s_grad[0] == 0).all()
