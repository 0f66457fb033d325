"""Nash-MTL (Navon et al. 2022) against a float64 restatement solved by cvxpy, and its
bargaining conditions.

torchjd's `NashMTL` needs the ECOS solver, which is not installed here; its convex-concave
iterations are also not an exact solve. The oracle restates the paper's weights as the
minimiser of the strictly convex ½ ‖Gᵀ α‖² - Σ_t log α_t (its stationarity condition is the
paper's G Gᵀ α = 1/α), written on the gradient matrix itself and solved by cvxpy's Clarabel.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch

from mtl_core.weighting._gram import gram64
from mtl_core.weighting._nash import solve_power_equations
from tests.mtl_core.weighting._gradient_sets import coefficient_step, spread_gradients
from tests.mtl_core.weighting._toy import make_strategy


def _oracle(g: np.ndarray) -> np.ndarray:
    """The paper's α for ``g [T, P]`` (no zero rows, origin outside the hull)."""
    alpha = cp.Variable(g.shape[0], pos=True)
    objective = 0.5 * cp.sum_squares(g.T @ alpha) - cp.sum(cp.log(alpha))
    cp.Problem(cp.Minimize(objective)).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10
    )
    return np.asarray(alpha.value, dtype=np.float64)


@pytest.mark.parametrize("num_slots", [1, 4])
@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_matches_the_convex_restatement(num_slots: int, num_tasks: int) -> None:
    """``max_norm: 0``: the coefficients are the paper's α (our reported weights are α / Σα · T)."""
    gen = torch.Generator().manual_seed(num_tasks)
    strategy = make_strategy("nash_mtl", {"max_norm": 0.0}, num_tasks, range(num_slots))
    for _ in range(2):
        grads = spread_gradients(num_slots, num_tasks, 2, gen)
        coeff, combined, weights = coefficient_step(strategy, grads)
        for k in range(num_slots):
            expected = _oracle(grads[k].numpy())
            np.testing.assert_allclose(coeff[k].numpy(), expected, rtol=1e-5)
            np.testing.assert_allclose(
                weights[k].numpy(), expected / expected.sum() * num_tasks, rtol=1e-5
            )
        # the bargaining conditions on the vectors: g_tᵀ d = 1 / α_t, hence ‖d‖² = T
        utilities = torch.einsum("ktp,kp->kt", grads, combined)
        torch.testing.assert_close(utilities * coeff, torch.ones_like(coeff), rtol=1e-8, atol=0)


def test_update_is_clipped_to_max_norm_and_keeps_its_direction() -> None:
    grads = torch.tensor(
        [[[3.0, 0.0, 1.0], [0.0, 2.0, -1.0], [1.0, 1.0, 1.0]]], dtype=torch.float64
    )
    _, free, _ = coefficient_step(make_strategy("nash_mtl", {"max_norm": 0.0}, 3), grads)
    torch.testing.assert_close(free.norm(), torch.tensor(3.0).sqrt().double())
    _, clipped, _ = coefficient_step(make_strategy("nash_mtl", {"max_norm": 0.5}, 3), grads)
    torch.testing.assert_close(clipped, free * 0.5 / free.norm())


def test_weights_are_reused_between_updates() -> None:
    strategy = make_strategy("nash_mtl", {"update_weights_every": 3, "max_norm": 0.0}, 2)
    gen = torch.Generator().manual_seed(0)
    first = torch.randn(1, 2, 4, generator=gen, dtype=torch.float64)
    coeffs = [coefficient_step(strategy, first)[0]]
    for _ in range(3):
        coeffs.append(
            coefficient_step(strategy, torch.randn(1, 2, 4, generator=gen, dtype=torch.float64))[0]
        )
    assert torch.equal(coeffs[1], coeffs[0]) and torch.equal(coeffs[2], coeffs[0])
    assert not torch.equal(coeffs[3], coeffs[0])  # step 3 solves again
    # a task becoming inactive, then active again, forces a solve
    coefficient_step(strategy, first, torch.tensor([[1.0, 0.0]]))
    coeff, _, _ = coefficient_step(strategy, first)
    torch.testing.assert_close(
        coeff[0], torch.from_numpy(_oracle(first[0].numpy())), rtol=1e-5, atol=0
    )


def test_each_task_scale_cancels_out_of_the_update() -> None:
    """Nash-MTL is invariant to each task's positive scale: α_t absorbs it."""
    gen = torch.Generator().manual_seed(1)
    grads = torch.randn(1, 3, 5, generator=gen, dtype=torch.float64)
    scales = torch.tensor([[1e-4, 1.0, 1e3]], dtype=torch.float64)
    strategy = make_strategy("nash_mtl", {"max_norm": 0.0}, 3)
    _, plain, _ = coefficient_step(strategy, grads)
    _, scaled, _ = coefficient_step(strategy, grads * scales.unsqueeze(-1))
    torch.testing.assert_close(scaled, plain, rtol=1e-8, atol=0)


def test_pareto_stationary_zero_and_inactive_rows() -> None:
    """No solution exists when the origin is in the hull: the ridge keeps α finite, the
    deadlocked tasks' utilities g_tᵀ d go to 0 and the others bargain on what is left (an
    update orthogonal to the opposite pair, 0 when every task is deadlocked); zero-gradient and
    inactive tasks get weight 0."""
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    e = torch.tensor([0.0, 1.0, 4.0], dtype=torch.float64)
    grads = torch.stack(
        [
            torch.stack([g, -g, e]),  # an opposite pair: g_3 alone can't stop the origin
            torch.stack([g, torch.zeros(3, dtype=torch.float64), e]),
            torch.stack([g, -3 * g, 2 * g]),  # rank 1 with both signs
            torch.stack([g, g, g]),
        ]
    )
    strategy = make_strategy("nash_mtl", {"max_norm": 0.0}, 3, range(4))
    coeff, combined, weights = coefficient_step(strategy, grads)
    assert torch.isfinite(coeff).all() and torch.isfinite(weights).all()
    assert (coeff >= 0).all()
    assert combined[2].norm() < 1e-3
    assert abs(combined[0] @ g) < 1e-3 * g.norm() and combined[0] @ e > 0.5 * e.norm()
    assert coeff[1, 1] == 0
    expected = _oracle(torch.stack([g, e]).numpy())
    np.testing.assert_allclose(coeff[1, [0, 2]].numpy(), expected, rtol=1e-5)
    torch.testing.assert_close(combined[3].norm() ** 2, torch.tensor(3.0, dtype=torch.float64))
    _, _, weights = coefficient_step(strategy, grads, torch.tensor([[1.0, 0.0, 1.0]] * 4))
    assert (weights[:, 1] == 0).all()


def test_solver_stops_at_its_stated_residual() -> None:
    gen = torch.Generator().manual_seed(2)
    grads = torch.randn(16, 5, 6, generator=gen, dtype=torch.float64)
    gram = gram64(grads)
    ones = torch.ones(16, dtype=torch.float64)
    w = solve_power_equations(gram, torch.ones(16, 5, dtype=torch.bool), ones)
    ridged = gram + 1e-10 * torch.diag_embed(torch.diagonal(gram, dim1=1, dim2=2))
    residual = (ridged @ w.unsqueeze(-1)).squeeze(-1) * w - 1
    # the stated bound: 1e-10 plus the rounding of M w (large where large weights cancel);
    # measured here in the unscaled variables, so with a little more rounding
    rounding = (ridged.abs() @ w.unsqueeze(-1)).squeeze(-1) * w
    assert (residual.abs() <= 2e-10 + 16 * 2**-53 * rounding).all()
    nan_gram = gram.clone()
    nan_gram[3, 0, 0] = torch.nan
    w = solve_power_equations(nan_gram, torch.ones(16, 5, dtype=torch.bool), ones)
    assert w[3].isnan().all() and torch.isfinite(w[torch.arange(16) != 3]).all()
