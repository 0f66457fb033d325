"""Degenerate task gradients through every gradient strategy, in bulk.

At least 10,000 gradient sets with opposite pairs, duplicates, zero rows or rank 1, at scales
1e-6 to 1e6 in float32 and float64, drawn from one seeded generator and passed through every
registered strategy whose class `uses_task_gradients`, in batches of K = 4 trials and one by
one (K = 1). Every step must be finite, and the linear methods must meet their optimality
conditions within the tolerances their docstrings state:

* MGDA (`_min_norm.min_norm_weights`): ``⟨g_t, d⟩ ≥ ‖d‖² - tol`` for every task, equality
  where ``alpha_t > 0``, and ``‖d‖²`` no more than the exact min-norm point's (by enumerating
  the supports) plus ``tol``;
* CAGrad (`_solvers.cagrad_weights`): the step inside its ball, and its worst task change
  ``min_t ⟨g_t, d⟩`` at least the dual objective of a certificate minus ``tol``: the dual is an
  upper bound at any ``w`` of the simplex (weak duality), taken at CAGrad's own ``w`` and at
  the exact min-norm weights (0 when the origin is in the hull).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl_core.weighting import (
    STRATEGIES,
    GradientWeighting,
    StepInputs,
    parse_strategy_config,
)
from mtl_core.weighting.cagrad import CAGradConfig
from tests.mtl_core.weighting._toy import make_strategy, step_inputs, with_other_batches

FloatArray = npt.NDArray[np.float64]

FAMILIES = ("opposite", "scaled_opposite", "duplicate", "zero", "rank1", "mixed")
SCALES = (1e-6, 1e-3, 1.0, 1e3, 1e6)
DTYPES = (torch.float32, torch.float64)
#: (tasks, shared parameters): fewer parameters than tasks puts the origin in many hulls.
SHAPES = ((2, 3), (3, 2), (3, 5), (4, 3), (5, 3), (5, 7))
PER_CELL = 28
#: Every how many sets the iterating solvers (Nash-MTL, FairGrad) take in the bulk test.
SOLVER_STRIDE = 4
GRADIENT_STRATEGIES = [n for n in STRATEGIES.names() if STRATEGIES.get(n).uses_task_gradients]


def _degenerate(rng: np.random.Generator, family: str, num_tasks: int, dim: int) -> FloatArray:
    """One ``[T, P]`` set of ``family``, task norms spread over 10^±1, before scaling."""
    g = rng.standard_normal((num_tasks, dim)) * 10.0 ** rng.uniform(-1, 1, (num_tasks, 1))
    a, b = rng.choice(num_tasks, 2, replace=False)
    if family == "opposite":
        g[b] = -g[a]
    elif family == "scaled_opposite":
        g[b] = -(10.0 ** rng.uniform(-2, 2)) * g[a]
    elif family == "duplicate":
        g[b] = g[a]
    elif family == "zero":
        g[rng.random(num_tasks) < 0.5] = 0.0
        g[a] = 0.0
    elif family == "rank1":
        signs = rng.choice([-1.0, 1.0], num_tasks) if rng.random() < 0.7 else np.ones(num_tasks)
        g = np.outer(signs * 10.0 ** rng.uniform(-2, 2, num_tasks), rng.standard_normal(dim))
    else:  # two of the above at once
        first, second = rng.choice(FAMILIES[:-1], 2, replace=False)
        g = _degenerate(rng, str(first), num_tasks, dim)
        return _degenerate_on(rng, str(second), g)
    return g


def _degenerate_on(rng: np.random.Generator, family: str, g: FloatArray) -> FloatArray:
    """``family``'s degeneracy applied again to ``g`` (for the mixed family)."""
    a, b = rng.choice(g.shape[0], 2, replace=False)
    if family in ("opposite", "scaled_opposite"):
        g[b] = -g[a]
    elif family == "duplicate":
        g[b] = g[a]
    elif family == "zero":
        g[a] = 0.0
    else:
        g[b] = 10.0 ** rng.uniform(-2, 2) * rng.choice([-1.0, 1.0]) * g[a]
    return g


@dataclass
class Group:
    """Sets of one dtype and shape: ``grads [N, T, P]`` as the strategies get them."""

    dtype: torch.dtype
    grads: torch.Tensor

    @property
    def exact(self) -> FloatArray:
        """The same values in float64 (exact), for the checks."""
        return self.grads.double().numpy()


def draw_groups(seed: int, per_cell: int) -> list[Group]:
    """Every family × scale × dtype × shape, ``per_cell`` sets each, grouped for batching."""
    rng = np.random.default_rng(seed)
    groups = []
    for dtype, (num_tasks, dim) in itertools.product(DTYPES, SHAPES):
        sets = [
            _degenerate(rng, family, num_tasks, dim) * scale
            for family, scale in itertools.product(FAMILIES, SCALES)
            for _ in range(per_cell)
        ]
        order = rng.permutation(len(sets))  # mix families and scales within each K-batch
        groups.append(Group(dtype, torch.tensor(np.stack(sets)[order], dtype=dtype)))
    return groups


@dataclass
class Outputs:
    """One strategy's answers on a group: steps ``[N, P]``, weights and coefficients ``[N, T]``."""

    combined: torch.Tensor
    weights: torch.Tensor
    coefficients: torch.Tensor | None


def run(name: str, params: dict[str, Any], grads: torch.Tensor, num_slots: int) -> Outputs:
    """``grads [N, T, P]`` through strategy ``name``'s ``combine``, ``num_slots`` trials at once.

    A linear strategy's coefficients are recorded as ``combine`` asks for them (one solve).
    """
    n, num_tasks, _ = grads.shape
    strategy = make_strategy(name, params, num_tasks, seeds=tuple(range(num_slots)))
    assert isinstance(strategy, GradientWeighting)
    recorded: list[torch.Tensor] = []
    if type(strategy).coefficients is not GradientWeighting.coefficients:
        solve = strategy.coefficients

        def recording(grads: torch.Tensor, inputs: StepInputs) -> torch.Tensor:
            recorded.append(solve(grads, inputs))
            return recorded[-1]

        setattr(strategy, "coefficients", recording)  # noqa: B010 - an instance's method
    combined, weights = [], []
    inputs = step_inputs(torch.ones(num_slots, num_tasks, dtype=grads.dtype))
    for start in range(0, n - n % num_slots, num_slots):
        chunk = grads[start : start + num_slots]
        step, weight = strategy.combine(chunk, with_other_batches(strategy, chunk, inputs))
        combined.append(step)
        weights.append(weight)
    coefficients = torch.cat(recorded) if recorded else None
    return Outputs(torch.cat(combined), torch.cat(weights), coefficients)


def exact_min_norm(g: FloatArray) -> FloatArray:
    """Min-norm weights ``[N, T]`` of the hulls of ``g [N, T, P]``, by trying every support.

    The affine min-norm point of a support with weights >= 0 lies in the hull; the optimum's
    support gives the optimum, so the least such point over all supports is the min-norm point.
    """
    n, num_tasks, _ = g.shape
    best = np.full(n, np.inf)
    alpha = np.zeros((n, num_tasks))
    for size in range(1, num_tasks + 1):
        for support in itertools.combinations(range(num_tasks), size):
            v = g[:, list(support)]
            mu = np.ones((n, 1))
            if size > 1:
                diffs = np.swapaxes(v[:, 1:] - v[:, :1], 1, 2)  # [N, P, size - 1]
                z = (np.linalg.pinv(diffs) @ -v[:, 0, :, None])[..., 0]
                mu = np.concatenate([1.0 - z.sum(1, keepdims=True), z], axis=1)
            x = np.einsum("ns,nsp->np", mu, v)
            value = np.einsum("np,np->n", x, x)
            better = (mu.min(axis=1) >= -1e-12) & (value < best)
            best = np.where(better, value, best)
            alpha[np.ix_(better, list(support))] = mu[better]
            alpha[np.ix_(better, [t for t in range(num_tasks) if t not in support])] = 0.0
    return alpha


def unit_roundoff(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps) / 2


def check_mgda(g: FloatArray, alpha: FloatArray, dtype: torch.dtype, exact: FloatArray) -> None:
    """MGDA's conditions on the vectors: ``tol = 1e-10 ‖d‖² + (2P + 3T + 8) u max_t ‖g_t‖²``."""
    _, num_tasks, dim = g.shape
    d = np.einsum("nt,ntp->np", alpha, g)
    sq = np.einsum("np,np->n", d, d)
    top = np.max(np.einsum("ntp,ntp->nt", g, g), axis=1)
    tol = 1e-10 * sq + ((2 * dim + 3 * num_tasks + 8) * unit_roundoff(dtype) + 1e-14) * top
    assert np.all(alpha >= 0)
    np.testing.assert_allclose(alpha.sum(1), 1.0, atol=4 * num_tasks * unit_roundoff(dtype))
    excess = np.einsum("ntp,np->nt", g, d) - sq[:, None]
    assert np.all(excess >= -tol[:, None]), _worst(-excess / top[:, None])
    on_support = np.where(alpha > 0, np.abs(excess), 0.0)
    assert np.all(on_support <= tol[:, None]), _worst(on_support / top[:, None])
    reference = np.einsum("nt,ntp->np", exact, g)
    assert np.all(sq <= np.einsum("np,np->n", reference, reference) + tol)


def check_cagrad(
    g: FloatArray,
    coeff: FloatArray,
    combined: FloatArray,
    dtype: torch.dtype,
    c: float,
    exact: FloatArray,
) -> None:
    """CAGrad (rescale 1) on the vectors: inside the ball, and optimal within
    ``tol = 1e-7 max_t ‖g_t‖ ‖g0‖ + 4 u max_t ‖g_t‖ Σ_t |r coeff_t| ‖g_t‖``."""
    num_tasks = g.shape[1]
    r = 1.0 + c * c
    g0 = g.mean(axis=1)
    g0_norm = np.linalg.norm(g0, axis=1)
    task_norms = np.linalg.norm(g, axis=2)
    moved = r * coeff - 1.0 / num_tasks
    step = np.einsum("nt,ntp->np", moved, g)
    d = g0 + step
    radius = c * g0_norm
    # the coefficients as returned: inside, up to the float64 rounding of this check
    size = r * np.sum(np.abs(coeff) * task_norms, axis=1)
    outside = np.linalg.norm(step, axis=1) - radius
    slack = 1e-12 * radius + 8 * unit_roundoff(torch.float64) * (size + np.max(task_norms, 1))
    assert np.all(outside <= slack), _worst(outside / (radius + 1e-300))
    # the step as formed in the dtype: inside up to that dtype's rounding of the sum
    formed = np.linalg.norm(r * combined - g0, axis=1) - radius
    assert np.all(formed <= (num_tasks + 2) * unit_roundoff(dtype) * size + 1e-12 * radius)
    worst = np.min(np.einsum("ntp,np->nt", g, d), axis=1)

    def dual(w: FloatArray) -> FloatArray:
        gw = np.einsum("nt,ntp->np", w, g)
        return np.asarray(
            np.einsum("np,np->n", gw, g0) + radius * np.linalg.norm(gw, axis=1), dtype=np.float64
        )

    # CAGrad's own w: its step's deviation from g0 is ∝ g_w* (rounding aside, which only
    # moves this w elsewhere on the simplex, where the bound still holds)
    part = np.maximum(moved, 0.0)
    total = part.sum(axis=1, keepdims=True)
    w_own = np.where(total > 0, part / np.where(total > 0, total, 1.0), 1.0 / num_tasks)
    bound = np.minimum(dual(w_own), dual(exact))
    top = np.max(task_norms, axis=1)
    tol = 1e-7 * top * g0_norm + 4 * unit_roundoff(dtype) * top * size + 1e-12 * top**2
    assert np.all(worst <= bound + tol), "weak duality: the test's bound is wrong"
    assert np.all(worst >= bound - tol), _worst((bound - worst) / (top * g0_norm + 1e-300))


def _worst(values: FloatArray) -> str:
    flat = np.asarray(values).ravel()
    i = int(np.nanargmax(flat))
    return f"worst {flat[i]:.3g} at flat index {i}"


def check_group(group: Group, num_slots: int, names: list[str] = GRADIENT_STRATEGIES) -> int:
    """Each strategy of ``names`` on ``group`` at ``num_slots``; returns the sets checked."""
    n = group.grads.shape[0] - group.grads.shape[0] % num_slots
    g = group.exact[:n]
    # The exact min-norm points certify MGDA and CAGrad (enumerating supports: costly).
    exact = exact_min_norm(g) if {"mgda", "cagrad"} & set(names) else None
    c = CAGradConfig().c
    for name in names:
        out = run(name, {}, group.grads[:n], num_slots)
        assert out.combined.dtype == group.dtype
        assert torch.isfinite(out.combined).all(), name
        assert torch.isfinite(out.weights).all(), name
        assert (out.weights >= 0).all(), name
        total = out.weights.sum(1).double()
        torch.testing.assert_close(total, torch.full_like(total, g.shape[1]), rtol=1e-5, atol=0)
        if name == "mgda":
            assert out.coefficients is not None and exact is not None
            check_mgda(g, out.coefficients.double().numpy(), group.dtype, exact)
        if name == "cagrad":
            assert out.coefficients is not None and exact is not None
            coeff = out.coefficients.double().numpy()
            check_cagrad(g, coeff, out.combined.double().numpy(), group.dtype, c, exact)
    return n


@functools.cache
def _bulk_groups() -> list[Group]:
    """The bulk test's sets, drawn once for every strategy."""
    return draw_groups(2024, PER_CELL)


def test_the_walk_covers_the_linear_methods_it_checks() -> None:
    assert {"mgda", "cagrad", "pcgrad"} <= set(GRADIENT_STRATEGIES)
    assert parse_strategy_config("cagrad", {}) == CAGradConfig(c=0.4, rescale=1)


@pytest.mark.parametrize("name", GRADIENT_STRATEGIES)
def test_ten_thousand_degenerate_sets_through_every_gradient_strategy(name: str) -> None:
    """All sets in K-batches of 4; one set of each batch (its slot rotating) alone, K = 1.

    Nash-MTL and FairGrad iterate to their tolerance on every set, up to 100 Newton steps on
    the many sets with no solution (the origin in the hull): they take every `SOLVER_STRIDE`-th
    set of each group (still over 2,400, every family, scale, dtype and shape), which keeps
    the suite's time; each takes about as long as all the others together then.
    """
    stride = SOLVER_STRIDE if name in ("nash_mtl", "fairgrad") else 1
    groups = [Group(group.dtype, group.grads[::stride]) for group in _bulk_groups()]
    batched = sum(check_group(group, 4, [name]) for group in groups)
    alone = 0
    for group in groups:
        pick = [4 * b + b % 4 for b in range(group.grads.shape[0] // 4)]
        alone += check_group(Group(group.dtype, group.grads[pick]), 1, [name])
    assert batched >= (10_000 if stride == 1 else 2_400)
    assert alone >= batched // 4


@settings(max_examples=40, deadline=None, database=None)
@given(
    family=st.sampled_from(FAMILIES),
    scale=st.sampled_from(SCALES),
    dtype=st.sampled_from(DTYPES),
    shape=st.sampled_from(SHAPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_degenerate_set_through_every_gradient_strategy(
    family: str, scale: float, dtype: torch.dtype, shape: tuple[int, int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    sets = np.stack([_degenerate(rng, family, *shape) * scale for _ in range(4)])
    group = Group(dtype, torch.tensor(sets, dtype=dtype))
    check_group(group, 4)
    check_group(Group(dtype, group.grads[:1]), 1)
