"""FairGrad (Ban & Ji 2024) against torchjd's `FairGrad`, and its α-fair conditions."""

from __future__ import annotations

import pytest
import torch
from torchjd.aggregation import FairGrad as TorchJDFairGrad

from mtl_core.weighting._gram import gram64
from tests.mtl_core.weighting._gradient_sets import coefficient_step, spread_gradients
from tests.mtl_core.weighting._toy import make_strategy


@pytest.mark.parametrize("num_slots", [1, 4])
@pytest.mark.parametrize("num_tasks", [2, 3, 5])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_matches_torchjd(num_slots: int, num_tasks: int, alpha: float) -> None:
    """torchjd's aggregate is Gᵀ w with the same unnormalised w: compare the updates.

    torchjd solves with ``least_squares`` from scipy, which can stop early on badly scaled
    problems: the inputs here have task norms within 10^±0.5, and ours is also checked
    against its own residual on the vectors.
    """
    gen = torch.Generator().manual_seed(num_tasks)
    strategy = make_strategy("fairgrad", {"alpha": alpha}, num_tasks, range(num_slots))
    oracle = TorchJDFairGrad(alpha=alpha)
    grads = spread_gradients(num_slots, num_tasks, 0.5, gen)
    coeff, combined, weights = coefficient_step(strategy, grads)
    for k in range(num_slots):
        torch.testing.assert_close(combined[k], oracle(grads[k]), rtol=1e-5, atol=1e-7)
    total = torch.full((num_slots,), float(num_tasks), dtype=torch.float64)
    torch.testing.assert_close(weights.sum(1), total)
    # α-fair conditions on the vectors: g_tᵀ d = w_t^(-1/α)
    utilities = torch.einsum("ktp,kp->kt", grads, combined)
    torch.testing.assert_close(utilities, coeff ** (-1 / alpha), rtol=1e-8, atol=0)


def test_alpha_one_is_nash_mtl_and_alpha_zero_the_mean() -> None:
    gen = torch.Generator().manual_seed(3)
    grads = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)
    fair, _, _ = coefficient_step(make_strategy("fairgrad", {"alpha": 1.0}, 3, range(2)), grads)
    nash, _, _ = coefficient_step(make_strategy("nash_mtl", {"max_norm": 0.0}, 3, range(2)), grads)
    torch.testing.assert_close(fair, nash, rtol=1e-12, atol=0)
    _, combined, _ = coefficient_step(make_strategy("fairgrad", {"alpha": 0.0}, 3, range(2)), grads)
    torch.testing.assert_close(combined, grads.mean(dim=1))
    assert oracle_mean_matches(grads)


def oracle_mean_matches(grads: torch.Tensor) -> bool:
    """torchjd at α = 0 is the mean too (uniform 1/T weights)."""
    return all(
        torch.allclose(TorchJDFairGrad(alpha=0.0)(g), g.mean(dim=0), rtol=1e-12) for g in grads
    )


def test_badly_scaled_and_degenerate_sets_meet_the_equations_or_stay_finite() -> None:
    """Task norms 10^±2 (where a least-squares solve may stop early) meet the equations the
    solver states, on M + 1e-10 diag(M); at 10^±4 and α = 10 the exact weights of the
    best-served tasks are far below what a float64 Gram matrix resolves: finite and >= 0.
    The degenerate sets stay finite with zero and inactive tasks at weight 0."""
    gen = torch.Generator().manual_seed(5)
    grads = torch.randn(4, 5, 6, generator=gen, dtype=torch.float64)
    spread = 10.0 ** torch.empty(4, 5, 1).uniform_(-1, 1, generator=gen)
    for alpha in (0.5, 2.0):
        strategy = make_strategy("fairgrad", {"alpha": alpha}, 5, range(4))
        coeff, _, _ = coefficient_step(strategy, grads * spread**2)
        gram = gram64(grads * spread**2)
        ridged = gram + 1e-10 * torch.diag_embed(torch.diagonal(gram, dim1=1, dim2=2))
        lhs = (ridged @ coeff.unsqueeze(-1)).squeeze(-1) * coeff ** (1 / alpha)
        torch.testing.assert_close(lhs, torch.ones_like(lhs), rtol=0, atol=1e-8)
    coeff, combined, _ = coefficient_step(
        make_strategy("fairgrad", {"alpha": 10.0}, 5, range(4)), grads * spread**4
    )
    assert torch.isfinite(combined).all() and (coeff >= 0).all()
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    e = torch.tensor([0.0, 1.0, 4.0], dtype=torch.float64)
    zero = torch.zeros(3, dtype=torch.float64)
    sets = torch.stack([torch.stack([g, -g, e]), torch.stack([g, zero, e]), torch.stack([g, g, g])])
    coeff, combined, weights = coefficient_step(
        make_strategy("fairgrad", {"alpha": 2.0}, 3, range(3)), sets
    )
    assert torch.isfinite(coeff).all() and torch.isfinite(weights).all() and (coeff >= 0).all()
    assert coeff[1, 1] == 0
    _, _, weights = coefficient_step(
        make_strategy("fairgrad", {"alpha": 2.0}, 3, range(3)),
        sets,
        torch.tensor([[1.0, 0.0, 1.0]] * 3),
    )
    assert (weights[:, 1] == 0).all()
