"""GradNorm (Chen et al. 2018): renormalisation and the direction of the w update."""

from __future__ import annotations

import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.weighting import LossWeighting, WeightingStrategy
from tests.mtl_core.weighting._toy import linear_problem, make_strategy, step_inputs


def _step(
    strategy: WeightingStrategy,
    vectors: list[list[float]],
    offsets: list[float] | None = None,
    scale: list[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weights, ∂objective/∂θ, ∂objective/∂w) on the linear problem with W = θ."""
    assert isinstance(strategy, LossWeighting)
    theta, losses = linear_problem(vectors, offsets)
    objective, weights = strategy.objective(step_inputs(losses, scale, last_shared=[theta]))
    (w,) = strategy.parameters()
    theta_grad, w_grad = torch.autograd.grad(objective.sum(), [theta, w])
    return weights[0], theta_grad, w_grad[0]


def test_w_update_pushes_gradient_norms_together() -> None:
    strategy = make_strategy("gradnorm", {"alpha": 1.5})
    weights, theta_grad, w_grad = _step(
        strategy, [[1.0, 0.0], [0.0, 3.0]], offsets=[2.0, 5.0], scale=[1.0, 2.0]
    )
    # Step 0: L̃ = 1 for both, so the target is mean(G) = 2; G = (1, 3).
    torch.testing.assert_close(w_grad, torch.tensor([-1.0, 3.0]))
    # The model's gradient is Σ w_t scale_t ∇L_t with w = 1.
    torch.testing.assert_close(theta_grad, torch.tensor([1.0, 6.0]))
    assert weights.tolist() == [1.0, 1.0]


def test_slower_task_gets_a_higher_target() -> None:
    strategy = make_strategy("gradnorm", {"alpha": 1.0})
    # First step fixes L(0) = (2, 2); equal gradient norms give no update.
    _, _, w_grad = _step(strategy, [[1.0, 0.0], [0.0, 1.0]], offsets=[2.0, 2.0])
    torch.testing.assert_close(w_grad, torch.zeros(2))
    # Task 0 fell to 1/4 of its start, task 1 to 3/4: r = (0.5, 1.5), target = (0.5, 1.5).
    _, _, w_grad = _step(strategy, [[1.0, 0.0], [0.0, 1.0]], offsets=[0.5, 1.5])
    torch.testing.assert_close(w_grad, torch.tensor([1.0, -1.0]))


def test_renormalises_to_sum_t_at_the_next_objective() -> None:
    strategy = make_strategy("gradnorm")
    (w,) = strategy.parameters()
    with torch.no_grad():  # what an optimizer step might leave behind
        w.copy_(torch.tensor([[3.0, 1.0]]))
    weights, theta_grad, _ = _step(strategy, [[1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(w.detach(), torch.tensor([[1.5, 0.5]]))
    torch.testing.assert_close(weights, torch.tensor([1.5, 0.5]))
    torch.testing.assert_close(theta_grad, torch.tensor([1.5, 0.5]))


def test_renormalisation_keeps_weights_positive() -> None:
    strategy = make_strategy("gradnorm")
    (w,) = strategy.parameters()
    with torch.no_grad():
        w.copy_(torch.tensor([[-0.5, 2.0]]))
    weights, _, _ = _step(strategy, [[1.0, 0.0], [0.0, 1.0]])
    assert (w > 0).all()
    assert weights.sum().item() == pytest.approx(2.0)
    torch.testing.assert_close(w.sum(), torch.tensor(2.0))


def test_needs_the_last_shared_layer() -> None:
    strategy = make_strategy("gradnorm")
    assert isinstance(strategy, LossWeighting)
    with pytest.raises(ConfigError, match="shared parameters"):
        strategy.objective(step_inputs(torch.ones(1, 2)))
