"""ConFIG (Liu, Chu & Thuerey 2025) against torchjd's `ConFIG` and the paper's Equation 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor
from torchjd.aggregation import ConFIG

from mtl_core.weighting import GradientWeighting
from tests.mtl_core.weighting._cone_oracle import KINDS, jacobian
from tests.mtl_core.weighting._gradient_sets import degenerate_slots, with_inactive_tasks
from tests.mtl_core.weighting._toy import make_strategy, step_inputs


def ours(grads: Tensor, scale: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(combined ``[K, P]``, weights ``[K, T]``, coefficients ``[K, T]``) on ``grads [K, T, P]``."""
    k, t, _ = grads.shape
    strategy = make_strategy("config", None, t, seeds=tuple(range(k)))
    assert isinstance(strategy, GradientWeighting)
    scale = torch.ones(k, t, dtype=grads.dtype) if scale is None else scale
    inputs = step_inputs(torch.ones(k, t, dtype=grads.dtype), scale)
    combined, weights = strategy.combine(grads, inputs)
    return combined, weights, strategy.coefficients(grads, inputs)


def paper_update(g: np.ndarray) -> np.ndarray:
    """Equation 2 on the vectors: g_u = U(pinv([u_1, ..., u_m]ᵀ) 1), d = (Σ_i g_iᵀ g_u) g_u."""
    units = g / np.linalg.norm(g, axis=1, keepdims=True)
    x = np.linalg.lstsq(units, np.ones(g.shape[0]), rcond=None)[0]
    unit_x = x / np.linalg.norm(x)
    return np.asarray((g @ unit_x).sum() * unit_x)


@pytest.mark.parametrize("num_slots", [1, 4])
@pytest.mark.parametrize("num_tasks", [2, 3, 5])
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "opposite"])
def test_matches_torchjd(kind: str, num_tasks: int, num_slots: int) -> None:
    grads = torch.stack([jacobian(kind, num_tasks, 7, 100 * s + num_tasks) for s in range(4)])
    grads = grads[:num_slots]
    combined, weights, coeff = ours(grads)
    for k in range(num_slots):
        j = grads[k]
        update = ConFIG()(j)
        # The same update (torchjd's preference: ones); torchjd gives no weights, ours are
        # |β| normalised to Σ = T with d = Σ β_t g_t.
        size = float(j.norm(dim=1).max())
        torch.testing.assert_close(weights[k].sum(), torch.tensor(float(num_tasks), dtype=j.dtype))
        units = torch.nan_to_num(j / j.norm(dim=1, keepdim=True), 0.0)
        if float((torch.linalg.pinv(units) @ torch.ones_like(j[:, 0])).norm()) <= 1e-12:
            # u and -u (rank 1, opposite signs): torchjd divides rounding by 1e-12; ours is 0
            assert (combined[k] == 0).all()
            continue
        torch.testing.assert_close(combined[k], update, rtol=1e-7, atol=1e-9 * size)
        torch.testing.assert_close(coeff[k] @ j, update, rtol=1e-7, atol=1e-9 * size)


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
    grads, scale = with_inactive_tasks(num_slots)
    combined, weights, _ = ours(grads, scale)
    for k in range(num_slots):
        # torchjd zeroes the unit rows of zero gradients: the same update, no rescaling
        torch.testing.assert_close(combined[k], ConFIG()(grads[k]), rtol=1e-8, atol=1e-10)
        assert (weights[k][scale[k] == 0] == 0).all()


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
    torch.testing.assert_close(combined[1], torch.tensor([1.0, 1.0]))
