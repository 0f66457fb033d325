"""Aligned-MTL (Senushkin et al. 2023) against torchjd's `AlignedMTL`."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor
from torchjd.aggregation import AlignedMTL, AlignedMTLWeighting

from mtl_core.weighting import GradientWeighting
from tests.mtl_core.weighting._cone_oracle import KINDS, jacobian
from tests.mtl_core.weighting._gradient_sets import degenerate_slots, with_inactive_tasks
from tests.mtl_core.weighting._toy import make_strategy, step_inputs

MODES = ("min", "median", "rmse")


def ours(
    grads: Tensor, scale: Tensor | None = None, params: dict[str, Any] | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(combined ``[K, P]``, weights ``[K, T]``, coefficients ``[K, T]``) on ``grads [K, T, P]``."""
    k, t, _ = grads.shape
    strategy = make_strategy("aligned_mtl", params, t, seeds=tuple(range(k)))
    assert isinstance(strategy, GradientWeighting)
    scale = torch.ones(k, t, dtype=grads.dtype) if scale is None else scale
    inputs = step_inputs(torch.ones(k, t, dtype=grads.dtype), scale)
    combined, weights = strategy.combine(grads, inputs)
    return combined, weights, strategy.coefficients(grads, inputs)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_slots", [1, 4])
@pytest.mark.parametrize("num_tasks", [2, 3, 5])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_torchjd(kind: str, num_tasks: int, num_slots: int, mode: str) -> None:
    grads = torch.stack([jacobian(kind, num_tasks, 7, 100 * s + num_tasks) for s in range(4)])
    grads = grads[:num_slots]
    combined, weights, coeff = ours(grads, params={"scale_mode": mode})
    for k in range(num_slots):
        j = grads[k]
        update = AlignedMTL(scale_mode=mode)(j)  # type: ignore[arg-type]
        w = AlignedMTLWeighting(scale_mode=mode)(j @ j.T)  # type: ignore[arg-type]
        # All rows active: the same preference (1/T) and cutoff, so the same α; our reported
        # weights are |α| normalised to Σ = T.
        size = float(j.norm(dim=1).max())
        torch.testing.assert_close(combined[k], update, rtol=1e-8, atol=1e-10 * size)
        torch.testing.assert_close(coeff[k], w, rtol=1e-8, atol=1e-10)
        total = w.abs().sum()
        expected = w.abs() / total * num_tasks if total > 0 else torch.ones_like(w)
        torch.testing.assert_close(weights[k], expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("num_slots", [1, 4])
def test_inactive_tasks_drop_out_of_the_preference(num_slots: int) -> None:
    grads, scale = with_inactive_tasks(num_slots)
    combined, weights, _ = ours(grads, scale)
    for k in range(num_slots):
        n = int((scale[k] > 0).sum())
        # torchjd's preference is 1/4 on every row, ours 1/n on the active ones; zero rows
        # add only zero eigenvalues, which both drop
        torch.testing.assert_close(
            combined[k], AlignedMTL()(grads[k]) * 4 / n, rtol=1e-8, atol=1e-10
        )
        assert (weights[k][scale[k] == 0] == 0).all()


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
    grads = degenerate_slots()
    combined, weights, _ = ours((grads * scale).to(dtype))
    assert torch.isfinite(combined).all() and torch.isfinite(weights).all()
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.full((5,), 5.0, dtype=dtype))
    assert (combined[4] == 0).all()


def test_one_active_task_is_used_as_is() -> None:
    grads = torch.tensor([[[0.0, 0.0], [3.0, -4.0]]])
    combined, weights, _ = ours(grads, torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(combined, torch.tensor([[3.0, -4.0]]))
    assert weights.tolist() == [[0.0, 1.0]]


def test_non_finite_input_gives_non_finite_output_without_raising() -> None:
    grads = torch.tensor([[[1.0, float("nan")], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    combined, _, _ = ours(grads)
    assert not torch.isfinite(combined[0]).all()
    torch.testing.assert_close(combined[1], torch.tensor([0.5, 0.5]))
