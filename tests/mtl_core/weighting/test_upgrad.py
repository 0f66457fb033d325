"""UPGrad (Quinton & Rey 2024) against torchjd's `UPGrad` with an exact projector."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor
from torchjd.aggregation import UPGrad as TorchjdUPGrad
from torchjd.aggregation import UPGradWeighting

from mtl_core.weighting import GradientWeighting
from mtl_core.weighting._dual_cone import dual_cone_weights
from tests.mtl_core.weighting._cone_oracle import (
    KINDS,
    EnumerationProjector,
    enumerate_bounded_qp,
    jacobian,
)
from tests.mtl_core.weighting._gradient_sets import (
    Reference,
    assert_inactive_tasks_match_torchjd,
    assert_matches_torchjd,
    assert_non_finite_stays_in_its_slot,
    assert_one_active_task_is_used_as_is,
    degenerate_slots,
    kind_slots,
    projected_reference,
    run_gradient,
)
from tests.mtl_core.weighting._toy import make_strategy, step_inputs


def ours(
    grads: Tensor, scale: Tensor | None = None, params: dict[str, Any] | None = None
) -> tuple[Tensor, Tensor]:
    """(combined ``[K, P]``, weights ``[K, T]``) of our UPGrad on ``grads [K, T, P]``."""
    combined, weights, _ = run_gradient("upgrad", grads, scale, params)
    return combined, weights


def oracle(j: Tensor, reg_eps: float = 1e-4) -> Reference:
    """torchjd's (update ``[P]``, weights ``[T]``) on one ``[T, P]`` Jacobian."""
    return projected_reference(TorchjdUPGrad, UPGradWeighting, j, reg_eps)


@pytest.mark.parametrize("num_slots", [1, 4])
@pytest.mark.parametrize("num_tasks", [2, 3, 5])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_torchjd(kind: str, num_tasks: int, num_slots: int) -> None:
    # Same rows, all active: torchjd's mean of projections is ours.
    grads = kind_slots(kind, num_tasks, num_slots)
    assert_matches_torchjd("upgrad", grads, oracle, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("num_slots", [1, 4])
def test_inactive_tasks_drop_out_of_the_mean(num_slots: int) -> None:
    # torchjd averages over all 4 rows (zero rows project to 0): ours over the n active.
    assert_inactive_tasks_match_torchjd(
        "upgrad", num_slots, TorchjdUPGrad(projector=EnumerationProjector()), mean_over_active=True
    )


def test_ridge_is_a_parameter() -> None:
    grads = jacobian("conflicting", 3, 5, 11).unsqueeze(0)
    combined, _ = ours(grads, params={"reg_eps": 1e-2})
    update, _ = oracle(grads[0], reg_eps=1e-2)
    torch.testing.assert_close(combined[0], update, rtol=1e-8, atol=1e-10)
    default, _ = ours(grads)
    assert not torch.allclose(default, combined, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_no_task_is_hurt_at_any_scale(dtype: torch.dtype, scale: float) -> None:
    grads = degenerate_slots()[:4]  # no all-zero slot
    g = (grads * scale).to(dtype)
    combined, weights = ours(g)
    assert torch.isfinite(combined).all() and torch.isfinite(weights).all()
    assert (weights >= 0).all()
    strategy = make_strategy("upgrad", None, 5, seeds=(0, 1, 2, 3))
    assert isinstance(strategy, GradientWeighting)
    coeff = strategy.coefficients(g, step_inputs(torch.ones(4, 5, dtype=dtype))).double()
    g64 = g.double()
    gain = torch.einsum("ktp,kp->kt", g64, combined.double())
    norms = g64.norm(dim=-1)
    trace = (norms * norms).sum(-1, keepdim=True)
    # (G W)_t >= -reg_eps tr(G) W_t: the ridge lets constraint t slip by that much; forming
    # Σ W_s g_s in the dtype adds its rounding
    rounding = 8 * torch.finfo(dtype).eps * (coeff.abs() * norms).sum(-1, keepdim=True) * norms
    bound = 1e-4 * trace * coeff * (1 + 1e-6) + rounding
    assert (gain >= -bound).all(), (gain, bound)


def test_one_active_task_is_used_as_is() -> None:
    assert_one_active_task_is_used_as_is("upgrad")


def test_solver_matches_enumeration_on_random_problems() -> None:
    rng = np.random.default_rng(0)
    mats, prefs = [], []
    for _ in range(50):
        t = 6
        j = rng.standard_normal((t, rng.integers(2, 9)))
        a = j @ j.T
        mats.append(a / np.trace(a) + 1e-4 * np.eye(t))
        prefs.append(rng.uniform(-0.5, 1.0, (3, t)))
    a64, u64 = torch.tensor(np.stack(mats)), torch.tensor(np.stack(prefs))
    got = dual_cone_weights(a64, u64).numpy()
    for n in range(50):
        for m in range(3):
            expected = enumerate_bounded_qp(mats[n], prefs[n][m])
            np.testing.assert_allclose(got[n, m], expected, rtol=1e-8, atol=1e-10)


def test_non_finite_input_gives_non_finite_output_without_raising() -> None:
    assert_non_finite_stays_in_its_slot("upgrad", [0.5, 0.5])
