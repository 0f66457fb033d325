"""IMTL-G (Liu et al. 2021) against torchjd's `IMTLG` and the paper's closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor
from torchjd.aggregation import IMTLG, IMTLGWeighting

from tests.mtl_core.weighting._cone_oracle import KINDS
from tests.mtl_core.weighting._gradient_sets import (
    Reference,
    assert_inactive_tasks_match_torchjd,
    assert_matches_torchjd,
    assert_non_finite_stays_in_its_slot,
    assert_one_active_task_is_used_as_is,
    degenerate_slots,
    kind_slots,
    run_degenerate_slots,
    run_gradient,
)


def ours(grads: Tensor, scale: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(combined ``[K, P]``, weights ``[K, T]``, coefficients ``[K, T]``) on ``grads [K, T, P]``."""
    return run_gradient("imtl_g", grads, scale)


def paper_alpha(g: np.ndarray) -> np.ndarray:
    """The paper's α_{2:} = g_1 Uᵀ (D Uᵀ)⁻¹, α_1 = 1 - Σ α_{2:}, in float64."""
    u = g / np.linalg.norm(g, axis=1, keepdims=True)
    d = g[0] - g[1:]
    big_u = u[0] - u[1:]
    rest = g[0] @ big_u.T @ np.linalg.inv(d @ big_u.T)
    return np.concatenate([[1.0 - rest.sum()], rest])


@pytest.mark.parametrize("num_slots", [1, 4])
@pytest.mark.parametrize("num_tasks", [2, 3, 5])
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "zero_row"])
def test_matches_torchjd(kind: str, num_tasks: int, num_slots: int) -> None:
    # Same convention (Σ α = 1); where no α has Σ α = 1 (e.g. g, -g) both give the zero step,
    # ours reported as uniform weights.
    assert_matches_torchjd(
        "imtl_g",
        kind_slots(kind, num_tasks, num_slots),
        lambda j: Reference(IMTLG()(j), IMTLGWeighting()(j @ j.T)),
        rtol=1e-7,
        atol=1e-9,
        atol_per_norm=True,
    )


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_matches_the_papers_closed_form_on_independent_gradients(num_tasks: int) -> None:
    rng = np.random.default_rng(num_tasks)
    g = rng.standard_normal((4, num_tasks, 8)) * 10.0 ** rng.uniform(-2, 2, (4, num_tasks, 1))
    combined, _, coeff = ours(torch.tensor(g))
    for k in range(4):
        alpha = paper_alpha(g[k])
        np.testing.assert_allclose(coeff[k].numpy(), alpha, rtol=1e-8, atol=1e-10)
        # the property: equal projections of d on every unit gradient
        unit = g[k] / np.linalg.norm(g[k], axis=1, keepdims=True)
        proj = unit @ combined[k].numpy()
        np.testing.assert_allclose(proj, proj[0], rtol=1e-8)


@pytest.mark.parametrize("num_slots", [1, 4])
def test_inactive_tasks_get_nothing(num_slots: int) -> None:
    # torchjd on the rows with zero gradients: G⁺ gives them 0, the same α as ours
    assert_inactive_tasks_match_torchjd("imtl_g", num_slots, IMTLG(), mean_over_active=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_degenerate_sets_stay_finite_and_scale_free(dtype: torch.dtype, scale: float) -> None:
    _, _, coeff = run_degenerate_slots("imtl_g", dtype, scale)
    _, _, at_one = ours(degenerate_slots().to(dtype))
    torch.testing.assert_close(coeff, at_one, rtol=1e-4, atol=1e-5)


def test_one_active_task_is_used_as_is() -> None:
    assert_one_active_task_is_used_as_is("imtl_g")


def test_non_finite_input_gives_non_finite_output_without_raising() -> None:
    assert_non_finite_stays_in_its_slot("imtl_g", [0.5, 0.5])
