"""The min-norm solvers: exactness, the optimality conditions, degenerate hulls, and torchjd
and cvxpy as oracles."""

from __future__ import annotations

import itertools
import math

import cvxpy as cp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from torchjd.aggregation import MGDA

from mtl_core.weighting._min_norm import min_norm_weights, project_dual_cone, wolfe_min_norm
from mtl_core.weighting._solvers import project_simplex
from tests.mtl_core.weighting._toy import OPPOSITE_PAIR_SETS, FloatArray, gradient_batches

SOLVER_SETTINGS = settings(max_examples=30, deadline=None)
ORACLE_SETTINGS = settings(max_examples=15, deadline=None)


def _exact_min_norm(gram: FloatArray) -> FloatArray:
    """Min-norm weights by enumerating supports: the one whose affine optimum is feasible
    and satisfies ``(G alpha)_t >= alphaᵀ G alpha`` everywhere (the KKT conditions)."""
    n = gram.shape[0]
    for size in range(1, n + 1):
        for support in itertools.combinations(range(n), size):
            s = list(support)
            kkt = np.block([[gram[np.ix_(s, s)], np.ones((size, 1))], [np.ones((1, size)), 0]])
            try:
                mu = np.linalg.solve(kkt, np.r_[np.zeros(size), 1.0])[:size]
            except np.linalg.LinAlgError:
                continue
            if np.any(mu < -1e-12):
                continue
            alpha = np.zeros(n)
            alpha[s] = mu
            ga = gram @ alpha
            if np.all(ga >= alpha @ ga - 1e-12 * np.max(np.diag(gram))):
                return alpha
    raise AssertionError("no support satisfies the KKT conditions")


def _mgda(grads: FloatArray, active: FloatArray) -> FloatArray:
    g = torch.from_numpy(grads)
    return min_norm_weights(g @ g.transpose(1, 2), torch.from_numpy(active)).numpy()


# --- min-norm point ---------------------------------------------------------------------


@pytest.mark.parametrize("num_tasks", [3, 5, 8])
def test_min_norm_matches_the_exact_point(num_tasks: int) -> None:
    rng = np.random.default_rng(num_tasks)
    for trial in range(5):
        g = rng.standard_normal((num_tasks, num_tasks + 3))
        if trial % 2:  # a far-away task whose exact weight is 0
            g[-1] = 5.0 * g[:-1].mean(axis=0) + 3.0
        alpha = _mgda(g[None], np.ones((1, num_tasks), dtype=bool))[0]
        np.testing.assert_allclose(alpha, _exact_min_norm(g @ g.T), atol=1e-4)


def test_min_norm_gives_an_exact_zero_weight() -> None:
    # the last task lies beyond the face spanned by the others: its weight is exactly 0
    g = np.array(
        [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0], [3.0, 3.0, 3.0, 3.0]]
    )
    alpha = _mgda(g[None], np.ones((1, 5), dtype=bool))[0]
    np.testing.assert_allclose(alpha, [0.25, 0.25, 0.25, 0.25, 0.0], atol=1e-12)


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_min_norm_non_finite_row_is_nan_and_others_unaffected(num_tasks: int) -> None:
    gram = torch.eye(num_tasks).repeat(3, 1, 1)
    gram[1, 0, 0] = math.nan
    gram[2, 0, 1] = math.inf
    alpha = min_norm_weights(gram, torch.ones(3, num_tasks, dtype=torch.bool))
    assert torch.isnan(alpha[1:]).all()
    torch.testing.assert_close(alpha[0], torch.full((num_tasks,), 1.0 / num_tasks))


def test_min_norm_old_index_error_input() -> None:
    gram = torch.tensor([[[math.nan, 1.0], [0.0, 1.0]]])
    assert torch.isnan(min_norm_weights(gram, torch.ones(1, 2, dtype=torch.bool))).all()
    assert np.isnan(project_simplex(np.array([math.nan, 1.0]))).all()
    np.testing.assert_allclose(project_simplex(np.array([2.0, 0.0])), [1.0, 0.0])


def test_min_norm_keeps_dtype_and_the_active_conventions() -> None:
    gram = torch.eye(3, dtype=torch.float32).repeat(3, 1, 1)
    active = torch.tensor([[True, False, True], [False, True, False], [False, False, False]])
    alpha = min_norm_weights(gram, active)
    assert alpha.dtype == torch.float32
    torch.testing.assert_close(
        alpha, torch.tensor([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    )


@SOLVER_SETTINGS
@given(gradient_batches())
def test_min_norm_properties(batch: tuple[FloatArray, FloatArray]) -> None:
    grads, active = batch
    alpha = _mgda(grads, active)
    assert np.all(np.isfinite(alpha))
    for k in range(grads.shape[0]):
        single = _mgda(grads[k : k + 1], active[k : k + 1])[0]
        np.testing.assert_allclose(alpha[k], single, rtol=0, atol=1e-12)
        a, mask, g = alpha[k], active[k], grads[k]
        assert np.all(a >= 0) and np.all(a[~mask] == 0)
        assert math.isclose(a.sum(), 1.0 if mask.any() else 0.0, abs_tol=1e-12)
        d = a @ g
        d_sq = float(d @ d)
        # d ≠ 0 above rounding: ⟨g_t, d⟩ ≥ ‖d‖² for every active task
        if mask.any() and d_sq > 1e-6 * float(np.max(np.sum(g * g, axis=1))):
            assert float(np.min((g @ d)[mask])) / d_sq >= 1 - 1e-6


@ORACLE_SETTINGS
@given(gradient_batches(tasks=(2, 3, 5)))
def test_min_norm_matches_torchjd(batch: tuple[FloatArray, FloatArray]) -> None:
    # torchjd's MGDA takes the Jacobian [T, P] of the active tasks and returns Σ alpha_t g_t;
    # it runs Frank-Wolfe until a step is below its epsilon, so it stops short of the exact
    # point. Compare the steps d: ours has the smaller norm, and since the min-norm point d*
    # is the projection of 0 onto the hull, every x of the hull has
    # ‖x - d*‖² <= ‖x‖² - ‖d*‖²: theirs must lie within that distance of ours.
    grads, active = batch
    alpha = _mgda(grads, active)
    oracle = MGDA(epsilon=1e-6, max_iters=1000)
    for k in range(grads.shape[0]):
        g = grads[k][active[k]]
        if g.shape[0] < 2:
            continue
        ours = alpha[k] @ grads[k]
        theirs = oracle(torch.from_numpy(g)).numpy()
        scale = float(np.max(np.linalg.norm(g, axis=1)))
        slack = float(theirs @ theirs) - float(ours @ ours)
        assert slack >= -1e-9 * scale**2
        assert float((ours - theirs) @ (ours - theirs)) <= slack + 1e-9 * scale**2


@pytest.mark.parametrize("vectors", OPPOSITE_PAIR_SETS, ids=["set0", "set1", "set2"])
def test_min_norm_of_a_hull_holding_the_origin_is_the_origin(vectors: list[list[float]]) -> None:
    # g_0 = -g_1: Wolfe's algorithm once sat 1e-17 from the origin, unable to pass a gap test
    # relative to ‖d‖, let a vertex in with weight 0/0 and raised IndexError
    g = np.array(vectors)
    alpha = _mgda(g[None], np.ones((1, 4), dtype=bool))[0]
    np.testing.assert_allclose(alpha, [0.5, 0.5, 0.0, 0.0], atol=1e-12)


def test_wolfe_with_the_origin_inside_the_hull() -> None:
    # the origin is interior, not on a face: no support is forced, any weights reaching it do
    v = np.array([[1.0, 0.0], [-1.0, 1.0], [-1.0, -1.0], [0.5, 0.5], [1e-9, -2.0]])
    for start in (None, [0, 1], [3, 4]):
        alpha = wolfe_min_norm(v, 1e-10, start)
        assert np.all(alpha >= 0) and math.isclose(alpha.sum(), 1.0, rel_tol=1e-12)
        assert np.linalg.norm(alpha @ v) <= 1e-14


def _cvxpy_dual_cone(v: FloatArray, target: FloatArray) -> FloatArray:
    """The projection of ``target`` onto ``{d: ⟨v_t, d⟩ >= 0}``, from CLARABEL."""
    norms = np.linalg.norm(v, axis=1)
    if not np.any(norms > 0):
        return target
    scale = float(np.linalg.norm(target)) or 1.0  # CLARABEL's tolerances are absolute
    rows = v[norms > 0] / norms[norms > 0, None]
    d = cp.Variable(v.shape[1])
    problem = cp.Problem(cp.Minimize(cp.sum_squares(d - target / scale)), [rows @ d >= 0])
    problem.solve(cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    return np.asarray(d.value, dtype=np.float64) * scale


@ORACLE_SETTINGS
@given(gradient_batches(tasks=(2, 3, 5)))
def test_dual_cone_projection_matches_cvxpy(batch: tuple[FloatArray, FloatArray]) -> None:
    grads, _ = batch
    for g in grads:
        target = g.mean(axis=0) + np.random.default_rng(0).standard_normal(g.shape[1]) * (
            float(np.max(np.abs(g))) or 1.0
        )
        beta = project_dual_cone(g, target)
        assert np.all(beta >= 0)
        x = target + beta @ g
        scale = float(np.max(np.linalg.norm(g, axis=1))) + float(np.linalg.norm(target))
        assert float(np.min(g @ x, initial=0.0)) >= -1e-12 * scale**2
        np.testing.assert_allclose(x, _cvxpy_dual_cone(g, target), rtol=0, atol=1e-6 * scale)
