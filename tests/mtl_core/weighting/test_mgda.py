"""MGDA (Sener & Koltun 2018): known min-norm points."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.production import MultiTaskLoss
from mtl_core.weighting import GradientWeighting
from tests.mtl_core.weighting._toy import (
    OPPOSITE_PAIR_SETS,
    ToyMTL,
    make_strategy,
    production_step,
    step_inputs,
    toy_data,
    toy_losses,
)


def _combine(
    vectors: list[list[float]],
    params: dict[str, Any] | None = None,
    losses: list[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    grads = torch.tensor([vectors])
    strategy = make_strategy("mgda", params, num_tasks=len(vectors))
    assert isinstance(strategy, GradientWeighting)
    inputs = step_inputs(torch.tensor(losses or [1.0] * len(vectors)))
    combined, weights = strategy.combine(grads, inputs)
    # MGDA is linear: the update is its coefficients times the task gradients.
    coeff = strategy.coefficients(grads, inputs)
    torch.testing.assert_close(combined, torch.einsum("kt,ktp->kp", coeff, grads))
    return combined[0], weights[0]


def test_two_tasks_exact_min_norm_point() -> None:
    combined, weights = _combine([[1.0, 0.0], [0.0, 2.0]])
    # gamma = (4 - 0) / (1 + 4) = 0.8: min-norm point (0.8, 0.4).
    torch.testing.assert_close(combined, torch.tensor([0.8, 0.4]))
    torch.testing.assert_close(weights, torch.tensor([1.6, 0.4]))


def test_two_tasks_vertex_solution() -> None:
    combined, weights = _combine([[1.0, 0.0], [2.0, 0.0]])
    torch.testing.assert_close(combined, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(weights, torch.tensor([2.0, 0.0]))


def test_three_tasks_face_solution() -> None:
    combined, weights = _combine([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    torch.testing.assert_close(combined, torch.tensor([0.5, 0.5]), atol=1e-3, rtol=0)
    torch.testing.assert_close(weights, torch.tensor([1.5, 1.5, 0.0]), atol=5e-3, rtol=0)


def test_three_tasks_interior_solution() -> None:
    # The hull of these three touches the z axis at (0, 0, 1), alpha = (1/5, 2/5, 2/5).
    combined, weights = _combine([[2.0, 0.0, 1.0], [0.0, 1.0, 1.0], [-1.0, -1.0, 1.0]])
    torch.testing.assert_close(combined, torch.tensor([0.0, 0.0, 1.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(weights, torch.tensor([0.6, 1.2, 1.2]), atol=5e-3, rtol=0)


def test_l2_normalisation_applies_weights_to_normalised_gradients() -> None:
    combined, weights = _combine([[1.0, 0.0], [0.0, 2.0]], {"normalization": "l2"})
    # ĝ = e1, e2 → alpha = (½, ½); update ½ ĝ1 + ½ ĝ2; λ = alpha / ‖g‖ = (½, ¼).
    torch.testing.assert_close(combined, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(weights, torch.tensor([4 / 3, 2 / 3]))


def test_loss_normalisation_divides_by_the_loss() -> None:
    combined, _ = _combine([[1.0, 0.0], [0.0, 1.0]], {"normalization": "loss"}, [1.0, 4.0])
    # ĝ = (1, 0), (0, ¼): gamma = (1/16) / (1 + 1/16) = 1/17 → update (1/17, 4/17).
    torch.testing.assert_close(combined, torch.tensor([1 / 17, 4 / 17]))


def test_loss_plus_normalisation_divides_by_loss_and_norm() -> None:
    combined, _ = _combine([[2.0, 0.0], [0.0, 1.0]], {"normalization": "loss+"}, [1.0, 4.0])
    # ĝ = (1, 0), (0, ¼) again: alpha = (1/17, 16/17), λ = alpha / (L ‖g‖) = (1/34, 4/17).
    torch.testing.assert_close(combined, torch.tensor([1 / 17, 4 / 17]))


def test_one_active_task_is_used_as_is() -> None:
    grads = torch.tensor([[[1.0, 0.0], [3.0, -4.0]]])
    strategy = make_strategy("mgda")
    assert isinstance(strategy, GradientWeighting)
    combined, weights = strategy.combine(
        grads * torch.tensor([[[0.0], [1.0]]]), step_inputs(torch.ones(2), [0.0, 1.0])
    )
    torch.testing.assert_close(combined, torch.tensor([[3.0, -4.0]]))
    assert weights.tolist() == [[0.0, 1.0]]


def test_upper_bound_needs_a_representation() -> None:
    model = ToyMTL()
    x, targets = toy_data()
    loss = MultiTaskLoss(["a", "b"], "mgda", {"upper_bound": True})
    losses, _ = toy_losses(model, x, targets)
    with pytest.raises(ConfigError, match="representation"):
        loss.backward(losses, model.shared(), model.task_specific())


def test_upper_bound_backpropagates_weighted_sum_through_shared_layers() -> None:
    model = ToyMTL()
    x, targets = toy_data()
    losses, z = toy_losses(model, x, targets)
    loss = MultiTaskLoss(["a", "b"], "mgda", {"upper_bound": True})
    weights = loss.backward(losses, model.shared(), model.task_specific(), representation=z)
    # Reference: the min-norm weights of the two representation gradients.
    losses, z = toy_losses(model, x, targets)
    g = torch.stack(
        [torch.autograd.grad(losses[t], z, retain_graph=True)[0].flatten() for t in range(2)]
    )
    gamma = ((g[1] @ g[1] - g[0] @ g[1]) / (g[0] - g[1]).pow(2).sum()).clamp(0, 1)
    alpha = torch.stack([gamma, 1 - gamma])
    torch.testing.assert_close(
        torch.tensor([weights["a"], weights["b"]]), 2 * alpha, rtol=1e-4, atol=1e-6
    )
    total = alpha[0] * losses[0] + alpha[1] * losses[1]
    expected = torch.autograd.grad(total, model.shared())
    for p, e in zip(model.shared(), expected, strict=True):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-6)


def test_upper_bound_gives_each_head_its_own_task_gradient() -> None:
    # Sener & Koltun's Algorithm 2: task-specific parameters descend their own task's loss.
    model = ToyMTL()
    x, targets = toy_data()
    losses, z = toy_losses(model, x, targets)
    scale = [1.0, 2.0]
    expected = [
        torch.autograd.grad(scale[t] * losses[t], list(model.heads[t].parameters()))
        for t in range(2)
    ]
    loss = MultiTaskLoss(["a", "b"], "mgda", {"upper_bound": True}, weights={"b": 2.0})
    losses, z = toy_losses(model, x, targets)
    loss.backward(losses, model.shared(), model.task_specific(), representation=z)
    for t in range(2):
        for p, grad in zip(model.heads[t].parameters(), expected[t], strict=True):
            assert p.grad is not None
            torch.testing.assert_close(p.grad, grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("vectors", OPPOSITE_PAIR_SETS, ids=["set0", "set1", "set2"])
def test_an_opposite_pair_among_four_tasks_gives_the_zero_step(
    vectors: list[list[float]], dtype: torch.dtype
) -> None:
    # g_0 = -g_1 puts the origin in the hull: the min-norm point is d = 0, and since the
    # other three gradients are independent, alpha = (1/2, 1/2, 0, 0) is the only way to it.
    # Wolfe's algorithm once stopped 1e-17 from the origin unable to pass its stop test, let
    # a vertex in with weight 0/0 and raised IndexError (in float64; float32 by luck not).
    step, weights = production_step("mgda", vectors, dtype)
    assert step.dtype == dtype
    assert float(step.norm()) <= 1e-6
    torch.testing.assert_close(weights, torch.tensor([2.0, 2.0, 0.0, 0.0], dtype=torch.float64))
