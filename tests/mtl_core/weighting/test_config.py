"""ConFIG (Liu, Chu & Thuerey 2025) against torchjd's `ConFIG` and the paper's Equation 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor
from torchjd.aggregation import ConFIG

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


def ours(grads: Tensor, scale: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(combined ``[K, P]``, weights ``[K, T]``, coefficients ``[K, T]``) on ``grads [K, T, P]``."""
    return run_gradient("config", grads, scale)


def paper_update(g: np.ndarray) -> np.ndarray:
    """Equation 2 on the vectors: g_u = U(pinv([u_1, ..., u_m]ᵀ) 1), d = (Σ_i g_iᵀ g_u) g_u."""
    units = g / np.linalg.norm(g, axis=1, keepdims=True)
    x = np.linalg.lstsq(units, np.ones(g.shape[0]), rcond=None)[0]
    unit_x = x / np.linalg.norm(x)
    return np.asarray((g @ unit_x).sum() * unit_x)


def _reference(j: Tensor) -> Reference:
    """The same update (torchjd's preference: ones); torchjd gives no weights, ours are |β|
    normalised to Σ = T with d = Σ β_t g_t."""
    units = torch.nan_to_num(j / j.norm(dim=1, keepdim=True), 0.0)
    if float((torch.linalg.pinv(units) @ torch.ones_like(j[:, 0])).norm()) <= 1e-12:
        # u and -u (rank 1, opposite signs): torchjd divides rounding by 1e-12; ours is 0
        return Reference(None)
    return Reference(ConFIG()(j))


@pytest.mark.parametrize("num_slots", [1, 4])
@pytest.mark.parametrize("num_tasks", [2, 3, 5])
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "opposite"])
def test_matches_torchjd(kind: str, num_tasks: int, num_slots: int) -> None:
    assert_matches_torchjd(
        "config",
        kind_slots(kind, num_tasks, num_slots),
        _reference,
        rtol=1e-7,
        atol=1e-9,
        atol_per_norm=True,
    )


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_matches_equation_2_and_has_equal_cosines(num_tasks: int) -> None:
    rng = np.random.default_rng(num_tasks)
    g = rng.standard_normal((4, num_tasks, 8)) * 10.0 ** rng.uniform(-2, 2, (4, num_tasks, 1))
    combined, _, _ = ours(torch.tensor(g))
    for k in range(4):
        np.testing.assert_allclose(combined[k].numpy(), paper_update(g[k]), rtol=1e-8)
        cos = g[k] @ combined[k].numpy() / np.linalg.norm(g[k], axis=1)
        np.testing.assert_allclose(cos, cos[0], rtol=1e-8)
        assert cos[0] > 0


def test_an_opposite_pair_alone_gives_the_zero_step() -> None:
    g = torch.tensor([[[1.0, 2.0, 0.5], [-1.0, -2.0, -0.5]]], dtype=torch.float64)
    combined, weights, _ = ours(g)
    assert float(combined.abs().max()) <= 1e-12
    torch.testing.assert_close(combined[0], ConFIG()(g[0]), rtol=0, atol=1e-12)
    assert torch.isfinite(weights).all()


@pytest.mark.parametrize("num_slots", [1, 4])
def test_inactive_tasks_take_no_part(num_slots: int) -> None:
    # torchjd zeroes the unit rows of zero gradients: the same update, no rescaling
    assert_inactive_tasks_match_torchjd("config", num_slots, ConFIG(), mean_over_active=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_degenerate_sets_stay_finite(dtype: torch.dtype, scale: float) -> None:
    combined, _, _ = run_degenerate_slots("config", dtype, scale)
    assert (combined[4] == 0).all()


def test_one_active_task_is_used_as_is() -> None:
    assert_one_active_task_is_used_as_is("config")


def test_non_finite_input_gives_non_finite_output_without_raising() -> None:
    assert_non_finite_stays_in_its_slot("config", [1.0, 1.0])
