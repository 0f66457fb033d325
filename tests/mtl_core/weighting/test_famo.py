"""FAMO (Liu et al. 2023): weights move toward the task whose loss falls slower."""

from __future__ import annotations

import torch

from mtl_core.weighting import masked_softmax
from mtl_core.weighting.famo import FAMO
from tests.mtl_core.weighting._toy import loss_step, make_strategy


def test_first_step_gradient_is_z_over_c_times_loss() -> None:
    strategy = make_strategy("famo")
    weights, grad = loss_step(strategy, [1.0, 4.0])
    # z = (1/2, 1/2); λ_t = z_t / (c L_t), c = Σ z / L = 0.625 → λ = (0.8, 0.2).
    torch.testing.assert_close(grad, torch.tensor([0.8, 0.2]))
    torch.testing.assert_close(weights, torch.tensor([1.6, 0.4]))


def test_no_update_on_the_first_call() -> None:
    strategy = make_strategy("famo")
    assert isinstance(strategy, FAMO)
    loss_step(strategy, [0.1, 10.0])
    assert strategy.logits.tolist() == [[0.0, 0.0]]


def test_logits_take_one_adam_step_on_the_softmax_jacobian_of_the_decrease() -> None:
    lr = 0.05
    strategy = make_strategy("famo", {"lr": lr, "weight_decay": 0.0})
    assert isinstance(strategy, FAMO)
    loss_step(strategy, [1.0, 1.0])
    # Task 0 halved, task 1 fell by 10 %: δ = (log 2, -log 0.9), z = (½, ½), so the
    # gradient z ⊙ (δ - z·δ) is (+a, -a); Adam's first step is lr · sign: ξ = lr · (-1, 1).
    loss_step(strategy, [0.5, 0.9])
    torch.testing.assert_close(strategy.logits, torch.tensor([[-lr, lr]]), rtol=1e-5, atol=1e-7)
    z = masked_softmax(strategy.logits, torch.ones(1, 2, dtype=torch.bool))
    assert z[0, 1] > 0.5 > z[0, 0]
    # Equal losses now, so the reported weights follow z.
    weights, _ = loss_step(strategy, [0.5, 0.5])
    assert weights[1] > weights[0]


def test_scale_multiplies_the_task_terms() -> None:
    strategy = make_strategy("famo")
    weights, grad = loss_step(strategy, [1.0, 4.0], [2.0, 0.5])
    torch.testing.assert_close(grad, torch.tensor([0.8 * 2.0, 0.2 * 0.5]))
    torch.testing.assert_close(weights, torch.tensor([1.6, 0.4]))


def test_inactive_task_gets_no_gradient_and_no_logit_move() -> None:
    strategy = make_strategy("famo", num_tasks=3)
    assert isinstance(strategy, FAMO)
    loss_step(strategy, [1.0, 2.0, 3.0], [1.0, 0.0, 1.0])
    weights, grad = loss_step(strategy, [0.5, 0.1, 3.0], [1.0, 0.0, 1.0])
    assert grad[1] == 0 and weights[1] == 0
    assert strategy.logits[0, 1] == 0
    torch.testing.assert_close(weights.sum(), torch.tensor(2.0))
