"""CAGrad's dual solver: the ball, the optimum against cvxpy and torchjd, the conventions."""

from __future__ import annotations

import math

import cvxpy as cp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchjd.aggregation import CAGrad

from mtl_core.weighting import _solvers as solvers
from mtl_core.weighting._solvers import cagrad_weights
from tests.mtl_core.weighting._toy import FloatArray, gradient_batches

SOLVER_SETTINGS = settings(max_examples=30, deadline=None)
ORACLE_SETTINGS = settings(max_examples=15, deadline=None)


def _cagrad(grads: FloatArray, active: FloatArray, c: float, rescale: int = 0) -> FloatArray:
    k = grads.shape[0]
    return cagrad_weights(
        torch.from_numpy(grads),
        torch.from_numpy(active),
        torch.full((k,), c, dtype=torch.float64),
        torch.full((k,), rescale, dtype=torch.long),
    ).numpy()


def _cvxpy_cagrad(g: FloatArray, c: float) -> tuple[FloatArray, float]:
    """Unrescaled CAGrad step and optimal value ``max_d min_t ⟨g_t, d⟩``, from the vectors."""
    scale = float(np.max(np.linalg.norm(g, axis=1)))
    g = g / scale  # CLARABEL's tolerances are absolute
    g0 = g.mean(axis=0)
    w = cp.Variable(g.shape[0])
    cost = (g @ g0) @ w + c * np.linalg.norm(g0) * cp.norm(g.T @ w)
    problem = cp.Problem(cp.Minimize(cost), [w >= 0, cp.sum(w) == 1])
    problem.solve(cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    gw = g.T @ np.asarray(w.value)
    d = g0 + c * np.linalg.norm(g0) / np.linalg.norm(gw) * gw
    return d * scale, float(problem.value) * scale**2


# float64 and float32 steps that once left their ball: by 6.7e-7 of its radius in float64, by
# 39 radii in float32 (coefficients near 1e7 that nearly cancel, rounded to the dtype)
BALL_CASES = [
    (
        torch.float64,
        [
            [0.011995251754313601, 0.00693382403834962],
            [-0.019073859597240943, -0.011025594867727124],
            [0.04679621844674825, -0.06608782093046442],
        ],
    ),
    (
        torch.float32,
        [
            [0.4475138485431671, 0.14463581144809723],
            [-0.21698276698589325, -0.07012850791215897],
            [-1.1422497034072876, 7.367248058319092],
        ],
    ),
]


@pytest.mark.parametrize(("dtype", "vectors"), BALL_CASES, ids=["float64", "float32"])
def test_cagrad_step_stays_in_its_ball_after_rounding(
    dtype: torch.dtype, vectors: list[list[float]]
) -> None:
    grads = torch.tensor([vectors], dtype=dtype)
    for rescale, r in ((0, 1.0), (1, 1.16)):
        coeff = cagrad_weights(
            grads,
            torch.ones(1, 3, dtype=torch.bool),
            torch.tensor([0.4], dtype=torch.float64),
            torch.tensor([rescale]),
        )
        g = grads[0].double().numpy()
        # the returned coefficients, exactly: ‖Σ_t (r coeff_t - 1/3) g_t‖ <= 0.4 ‖g0‖
        step = (r * coeff[0].double().numpy() - 1.0 / 3) @ g
        assert np.linalg.norm(step) <= 0.4 * np.linalg.norm(g.mean(axis=0)) * (1 + 1e-12)


# --- CAGrad -----------------------------------------------------------------------------


def test_cagrad_near_cancelling_three_tasks() -> None:
    # g1 + g2 cancels to (0, 0, 2e-3): a float32 Gram matrix rounds that combination to 0.
    # By the mirror symmetry g1 <-> g2 the exact step has d_x = 0.
    grads = torch.tensor([[[10.0, 0.0, 1e-3], [-10.0, 0.0, 1e-3], [0.0, 5.0, 0.0]]])
    coeff = cagrad_weights(
        grads, torch.ones(1, 3, dtype=torch.bool), torch.tensor([0.4]), torch.tensor([1])
    )
    d = (coeff[0] @ grads[0]).double().numpy()
    expected, _ = _cvxpy_cagrad(grads[0].double().numpy(), 0.4)
    np.testing.assert_allclose(d, expected / 1.16, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(d, [0.0, 1.43678, 0.575287], rtol=1e-4, atol=1e-5)


def test_cagrad_near_cancelling_two_tasks() -> None:
    grads = torch.tensor([[[10.0, 1e-3], [-10.0, 1e-3]]])
    coeff = cagrad_weights(
        grads, torch.ones(1, 2, dtype=torch.bool), torch.tensor([0.4]), torch.tensor([1])
    )
    d = (coeff[0] @ grads[0]).double().numpy()
    # The first component cancels two float32 terms of size ~5: zero up to their rounding
    # (which differs between CPUs' vector units), not exactly.
    assert abs(d[0]) <= 4 * 10.0 * float(torch.finfo(torch.float32).eps)
    np.testing.assert_allclose(d[1], 1.2069e-3, rtol=1e-4)


@pytest.mark.parametrize("c", [0.4, 0.9])
def test_cagrad_objective_matches_cvxpy_on_near_singular_grams(c: float) -> None:
    rng = np.random.default_rng(7)
    for _ in range(4):
        g = rng.standard_normal((3, 6))
        g[2] = 0.5 * (g[0] + g[1]) + 1e-6 * rng.standard_normal(6)  # rank ~2
        d = _cagrad(g[None], np.ones((1, 3), dtype=bool), c)[0] @ g
        _, optimum = _cvxpy_cagrad(g, c)
        # the primal objective max_d min_t ⟨g_t, d⟩ equals the dual optimum (strong duality)
        assert math.isclose(float(np.min(g @ d)), optimum, rel_tol=1e-6)


@pytest.mark.parametrize("c", [0.4, 0.9])
def test_cagrad_objective_on_nearly_cancelling_gradients(c: float) -> None:
    # g1 + g2 nearly cancel (1e-3 of their norm): the step hinges on the tiny g_w, whose
    # digits a Gram matrix loses; the objective is near 0, so compare on the scale ‖g0‖²
    rng = np.random.default_rng(7)
    for _ in range(4):
        b = rng.standard_normal(6)
        g = np.stack([10 * b, -10 * b + 1e-3 * rng.standard_normal(6), rng.standard_normal(6)])
        d = _cagrad(g[None], np.ones((1, 3), dtype=bool), c)[0] @ g
        _, optimum = _cvxpy_cagrad(g, c)
        g0 = g.mean(axis=0)
        assert abs(float(np.min(g @ d)) - optimum) <= 1e-8 * float(g0 @ g0)


def test_cagrad_origin_inside_the_hull() -> None:
    # g = (b, -b, b): the hull is the segment [-b, b] and g0 = b / 3, so the dual
    # min_s (s/3 + c/3 |s|) ‖b‖² over s ∈ [-1, 1] picks g_w = -b and d = (1 - c) b / 3
    b = np.array([1.0, -2.0, 0.5, 3.0])
    g = np.stack([b, -b, b])
    d = _cagrad(g[None], np.ones((1, 3), dtype=bool), 0.2)[0] @ g
    np.testing.assert_allclose(d, 0.8 * b / 3, rtol=1e-10, atol=1e-12)


def test_cagrad_conventions() -> None:
    grads = torch.tensor(
        [
            [[1.0, 0.0], [0.0, 1.0]],
            [[1.0, 2.0], [3.0, 4.0]],
            [[1.0, 2.0], [3.0, 4.0]],
            [[math.nan, 0.0], [0.0, 1.0]],
            [[1.0, 2.0], [3.0, 4.0]],
        ]
    )
    active = torch.tensor([[True, True], [False, True], [False, False], [True, True], [True, True]])
    c = torch.tensor([0.0, 0.5, 0.5, 0.5, math.inf])
    coeff = cagrad_weights(grads, active, c, torch.tensor([1, 1, 1, 1, 1]))
    torch.testing.assert_close(coeff[:3], torch.tensor([[0.5, 0.5], [0.0, 1.0], [0.0, 0.0]]))
    assert torch.isnan(coeff[3:]).all()


def test_cagrad_rejects_bad_arguments() -> None:
    grads, active = torch.ones(1, 2, 3), torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="rescale"):
        cagrad_weights(grads, active, torch.tensor([0.4]), torch.tensor([3]))
    with pytest.raises(ValueError, match="c must be"):
        cagrad_weights(grads, active, torch.tensor([-0.1]), torch.tensor([0]))


@SOLVER_SETTINGS
@given(gradient_batches(), st.sampled_from((0.1, 0.4, 0.9)), st.sampled_from((0, 1, 2)))
def test_cagrad_properties(batch: tuple[FloatArray, FloatArray], c: float, rescale: int) -> None:
    grads, active = batch
    coeff = _cagrad(grads, active, c, rescale)
    assert np.all(np.isfinite(coeff))
    r = {0: 1.0, 1: 1.0 + c * c, 2: 1.0 + c}[rescale]
    for k in range(grads.shape[0]):
        single = _cagrad(grads[k : k + 1], active[k : k + 1], c, rescale)[0]
        np.testing.assert_allclose(coeff[k], single, rtol=0, atol=1e-12)
        mask, g = active[k], grads[k]
        assert np.all(coeff[k][~mask] == 0)
        if mask.sum() < 2:
            continue
        g0 = g[mask].mean(axis=0)
        d = r * coeff[k] @ g  # unrescaled
        scale = float(np.max(np.linalg.norm(g, axis=1)))
        assert np.linalg.norm(d - g0) <= c * np.linalg.norm(g0) * (1 + 1e-6) + 1e-12 * scale


@ORACLE_SETTINGS
@given(gradient_batches(tasks=(2, 3, 5)), st.sampled_from((0.2, 0.4, 0.9)))
def test_cagrad_matches_torchjd(batch: tuple[FloatArray, FloatArray], c: float) -> None:
    # torchjd's CAGrad takes the Jacobian [T, P] and returns Σ_t (1/T + c‖g0‖/‖g_w‖ w_t) g_t:
    # the mean g0 (as ours, not the sum) and no rescaling, i.e. our rescale = 0. It solves
    # the dual with CLARABEL on a trace-normalised Gram matrix and returns 0 when ‖g_w‖ falls
    # below its norm_eps, so only non-degenerate rows (a clearly non-zero g_w) are compared.
    grads, active = batch
    coeff = _cagrad(grads, active, c)
    oracle = CAGrad(c=c, norm_eps=0.0)
    for k in range(grads.shape[0]):
        mask, g = active[k], grads[k]
        scale = float(np.max(np.linalg.norm(g, axis=1)))
        g0 = g[mask].mean(axis=0) if mask.any() else np.zeros(g.shape[1])
        if mask.sum() < 2 or np.linalg.norm(g0) <= 1e-3 * scale:
            continue
        ours = coeff[k] @ g
        if abs(float(np.min(g[mask] @ ours))) < 1e-3 * c * float(np.linalg.norm(g0)) ** 2:
            continue  # near-Pareto-stationary: the direction of g_w is ill-determined
        theirs = oracle(torch.from_numpy(g[mask])).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-4 * scale)


def test_cagrad_chunked_reductions_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    # the R factor and the norms are reduced over P in chunks; small chunks change nothing
    grads = torch.randn(3, 4, 50, generator=torch.Generator().manual_seed(0))
    active = torch.ones(3, 4, dtype=torch.bool)
    args = (torch.tensor([0.2, 0.4, 0.9]), torch.tensor([0, 1, 2]))
    whole = cagrad_weights(grads, active, *args)
    monkeypatch.setattr(solvers, "_CHUNK_ELEMENTS", 64)
    torch.testing.assert_close(cagrad_weights(grads, active, *args), whole, rtol=1e-5, atol=1e-6)
