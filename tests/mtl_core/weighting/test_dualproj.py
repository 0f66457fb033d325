"""DualProj (Quinton & Rey 2024) against torchjd's `DualProj` with an exact projector."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor
from torchjd.aggregation import DualProj as TorchjdDualProj
from torchjd.aggregation import DualProjWeighting

from tests.mtl_core.weighting._cone_oracle import KINDS, EnumerationProjector, jacobian
from tests.mtl_core.weighting._gradient_sets import (
    Reference,
    assert_inactive_tasks_match_torchjd,
    assert_matches_torchjd,
    assert_one_active_task_is_used_as_is,
    degenerate_slots,
    kind_slots,
    projected_reference,
    run_gradient,
)


def ours(
    grads: Tensor, scale: Tensor | None = None, params: dict[str, Any] | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(combined ``[K, P]``, weights ``[K, T]``, coefficients ``[K, T]``) on ``grads [K, T, P]``."""
    return run_gradient("dualproj", grads, scale, params)


def oracle(j: Tensor, reg_eps: float = 1e-4) -> Reference:
    """torchjd's (update ``[P]``, weights ``[T]``) on one ``[T, P]`` Jacobian."""
    return projected_reference(TorchjdDualProj, DualProjWeighting, j, reg_eps)


@pytest.mark.parametrize("num_slots", [1, 4])
@pytest.mark.parametrize("num_tasks", [2, 3, 5])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_torchjd(kind: str, num_tasks: int, num_slots: int) -> None:
    # All rows active: the same problem, so the same update and coefficients.
    grads = kind_slots(kind, num_tasks, num_slots)
    assert_matches_torchjd("dualproj", grads, oracle, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("num_slots", [1, 4])
def test_inactive_tasks_drop_out_of_the_mean(num_slots: int) -> None:
    # torchjd projects the mean over all 4 rows, ours the mean over the n active ones; the
    # projection is positively homogeneous.
    assert_inactive_tasks_match_torchjd(
        "dualproj",
        num_slots,
        TorchjdDualProj(projector=EnumerationProjector()),
        mean_over_active=True,
    )


def test_ridge_is_a_parameter() -> None:
    grads = jacobian("conflicting", 3, 5, 11).unsqueeze(0)
    combined, _, _ = ours(grads, params={"reg_eps": 1e-2})
    update, _ = oracle(grads[0], reg_eps=1e-2)
    torch.testing.assert_close(combined[0], update, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_no_task_is_hurt_at_any_scale(dtype: torch.dtype, scale: float) -> None:
    grads = degenerate_slots()[:4]  # no all-zero slot
    g = (grads * scale).to(dtype)
    combined, weights, coeff = ours(g)
    assert torch.isfinite(combined).all() and torch.isfinite(weights).all()
    assert (weights >= 0).all()
    g64, v = g.double(), coeff.double()
    assert (v >= 0.2 * (1 - 1e-6)).all()  # v >= u = 1/5
    gain = torch.einsum("ktp,kp->kt", g64, combined.double())
    norms = g64.norm(dim=-1)
    trace = (norms * norms).sum(-1, keepdim=True)
    # (G v)_t >= -reg_eps tr(G) v_t (the ridge), plus the rounding of Σ v_s g_s in the dtype
    rounding = 8 * torch.finfo(dtype).eps * (v.abs() * norms).sum(-1, keepdim=True) * norms
    assert (gain >= -(1e-4 * trace * v * (1 + 1e-6) + rounding)).all(), gain


def test_without_conflict_the_mean_is_kept() -> None:
    grads = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]], dtype=torch.float64)
    combined, weights, _ = ours(grads)
    torch.testing.assert_close(combined[0], grads[0].mean(0))
    torch.testing.assert_close(weights[0], torch.ones(3, dtype=torch.float64))


def test_one_active_task_is_used_as_is() -> None:
    assert_one_active_task_is_used_as_is("dualproj")
