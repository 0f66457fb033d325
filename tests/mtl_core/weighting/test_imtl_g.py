"""IMTL-G (Liu et al. 2021) against torchjd's `IMTLG` and the paper's closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor
from torchjd.aggregation import IMTLG, IMTLGWeighting

from mtl_core.weighting import GradientWeighting
from tests.mtl_core.weighting._cone_oracle import KINDS, jacobian
from tests.mtl_core.weighting._gradient_sets import degenerate_slots, with_inactive_tasks
from tests.mtl_core.weighting._toy import make_strategy, step_inputs


def ours(grads: Tensor, scale: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(combined ``[K, P]``, weights ``[K, T]``, coefficients ``[K, T]``) on ``grads [K, T, P]``."""
    k, t, _ = grads.shape
    strategy = make_strategy("imtl_g", None, t, seeds=tuple(range(k)))
    assert isinstance(strategy, GradientWeighting)
    scale = torch.ones(k, t, dtype=grads.dtype) if scale is None else scale
    inputs = step_inputs(torch.ones(k, t, dtype=grads.dtype), scale)
    combined, weights = strategy.combine(grads, inputs)
    return combined, weights, strategy.coefficients(grads, inputs)


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
    grads = torch.stack([jacobian(kind, num_tasks, 7, 100 * s + num_tasks) for s in range(4)])
    grads = grads[:num_slots]
    combined, weights, coeff = ours(grads)
    for k in range(num_slots):
        j = grads[k]
        update, w = IMTLG()(j), IMTLGWeighting()(j @ j.T)
        # Same convention (Σ α = 1); our reported weights are |α| normalised to Σ = T.
        scale = float(j.norm(dim=1).max())
        torch.testing.assert_close(combined[k], update, rtol=1e-7, atol=1e-9 * scale)
        torch.testing.assert_close(coeff[k], w, rtol=1e-7, atol=1e-9)
        total = w.abs().sum()
        # no α with Σ α = 1 (e.g. g, -g): a zero step, reported as uniform weights
        expected = w.abs() / total * num_tasks if total > 0 else torch.ones_like(w)
        torch.testing.assert_close(weights[k], expected, rtol=1e-7, atol=1e-9)


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
    grads, scale = with_inactive_tasks(num_slots)
    combined, weights, coeff = ours(grads, scale)
    for k in range(num_slots):
        # torchjd on the rows with zero gradients: G⁺ gives them 0, the same α as ours
        torch.testing.assert_close(combined[k], IMTLG()(grads[k]), rtol=1e-8, atol=1e-10)
        assert (weights[k][scale[k] == 0] == 0).all()
        assert (coeff[k][scale[k] == 0] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_degenerate_sets_stay_finite_and_scale_free(dtype: torch.dtype, scale: float) -> None:
    grads = degenerate_slots()
    combined, weights, coeff = ours((grads * scale).to(dtype))
    assert torch.isfinite(combined).all() and torch.isfinite(weights).all()
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.full((5,), 5.0, dtype=dtype))
    _, _, at_one = ours(grads.to(dtype))
    torch.testing.assert_close(coeff, at_one, rtol=1e-4, atol=1e-5)


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
