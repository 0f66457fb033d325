"""Aligned-MTL (Senushkin et al. 2023) against torchjd's `AlignedMTL`."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torchjd.aggregation import AlignedMTL, AlignedMTLWeighting

from tests.mtl_core.weighting._cone_oracle import KINDS
from tests.mtl_core.weighting._gradient_sets import (
    Reference,
    assert_inactive_tasks_match_torchjd,
    assert_matches_torchjd,
    assert_non_finite_stays_in_its_slot,
    assert_one_active_task_is_used_as_is,
    kind_slots,
    run_degenerate_slots,
    run_gradient,
)

MODES = ("min", "median", "rmse")


def ours(grads: Tensor, scale: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(combined ``[K, P]``, weights ``[K, T]``, coefficients ``[K, T]``) on ``grads [K, T, P]``."""
    return run_gradient("aligned_mtl", grads, scale)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_slots", [1, 4])
@pytest.mark.parametrize("num_tasks", [2, 3, 5])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_torchjd(kind: str, num_tasks: int, num_slots: int, mode: str) -> None:
    # All rows active: the same preference (1/T) and cutoff, so the same α.
    aggregator = AlignedMTL(scale_mode=mode)  # type: ignore[arg-type]
    weighting = AlignedMTLWeighting(scale_mode=mode)  # type: ignore[arg-type]
    assert_matches_torchjd(
        "aligned_mtl",
        kind_slots(kind, num_tasks, num_slots),
        lambda j: Reference(aggregator(j), weighting(j @ j.T)),
        params={"scale_mode": mode},
        rtol=1e-8,
        atol=1e-10,
        atol_per_norm=True,
    )


@pytest.mark.parametrize("num_slots", [1, 4])
def test_inactive_tasks_drop_out_of_the_preference(num_slots: int) -> None:
    # torchjd's preference is 1/4 on every row, ours 1/n on the active ones; zero rows add
    # only zero eigenvalues, which both drop
    assert_inactive_tasks_match_torchjd(
        "aligned_mtl", num_slots, AlignedMTL(), mean_over_active=True
    )


def test_the_aligned_system_is_orthogonal_with_equal_norms() -> None:
    gen = torch.Generator().manual_seed(8)
    j = torch.randn(4, 9, generator=gen, dtype=torch.float64) * torch.tensor(
        [[0.1], [1.0], [10.0], [3.0]], dtype=torch.float64
    )
    gram = j @ j.T
    values, vectors = torch.linalg.eigh(gram)
    # the paper: B = sqrt(λ_min) V Λ^(-1/2) Vᵀ makes Bᵀ J orthogonal with norms sqrt(λ_min)
    b = values[0].sqrt() * vectors @ torch.diag(values.rsqrt()) @ vectors.T
    aligned = b.T @ j
    torch.testing.assert_close(aligned @ aligned.T, values[0] * torch.eye(4, dtype=j.dtype))
    _, _, coeff = ours(j.unsqueeze(0))
    torch.testing.assert_close(coeff[0], b @ torch.full((4,), 0.25, dtype=j.dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_degenerate_sets_stay_finite(dtype: torch.dtype, scale: float) -> None:
    combined, _, _ = run_degenerate_slots("aligned_mtl", dtype, scale)
    assert (combined[4] == 0).all()


def test_one_active_task_is_used_as_is() -> None:
    assert_one_active_task_is_used_as_is("aligned_mtl")


def test_non_finite_input_gives_non_finite_output_without_raising() -> None:
    assert_non_finite_stays_in_its_slot("aligned_mtl", [0.5, 0.5])
