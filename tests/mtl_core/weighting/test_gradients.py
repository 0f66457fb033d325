"""The private helpers: normalisation, simplex projection and the small solvers."""

from __future__ import annotations

import numpy as np
import torch

from mtl_core.weighting._base import normalise_weights
from mtl_core.weighting._gradients import (
    cagrad_dual,
    frank_wolfe_min_norm,
    masked_softmax,
    project_simplex,
)


def test_normalise_weights_sums_to_the_active_count() -> None:
    active = torch.tensor([True, True, False])
    torch.testing.assert_close(
        normalise_weights(torch.tensor([1.0, 3.0, 2.0]), active), torch.tensor([0.5, 1.5, 0.0])
    )
    # a zero total falls back to one per active task
    torch.testing.assert_close(
        normalise_weights(torch.tensor([0.0, 0.0, 5.0]), active), torch.tensor([1.0, 1.0, 0.0])
    )
    none = normalise_weights(torch.full((3,), 2.0), torch.zeros(3, dtype=torch.bool))
    assert none.tolist() == [0.0, 0.0, 0.0]


def test_masked_softmax_zeroes_inactive_and_handles_none_active() -> None:
    out = masked_softmax(torch.tensor([0.0, 5.0, 0.0]), torch.tensor([True, False, True]))
    torch.testing.assert_close(out, torch.tensor([0.5, 0.0, 0.5]))
    none = masked_softmax(torch.zeros(2), torch.zeros(2, dtype=torch.bool))
    assert none.tolist() == [0.0, 0.0]


def test_project_simplex() -> None:
    np.testing.assert_allclose(project_simplex(np.array([0.2, 0.3, 0.5])), [0.2, 0.3, 0.5])
    np.testing.assert_allclose(project_simplex(np.array([2.0, 0.0])), [1.0, 0.0])
    np.testing.assert_allclose(project_simplex(np.array([1.0, 1.0])), [0.5, 0.5])


def test_frank_wolfe_respects_the_active_mask() -> None:
    g = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    gram = g @ g.T
    alpha = frank_wolfe_min_norm(gram, np.array([True, True, False]))
    np.testing.assert_allclose(alpha, [0.5, 0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(
        frank_wolfe_min_norm(gram, np.array([False, True, False])), [0, 1, 0]
    )


def test_cagrad_dual_is_on_the_simplex_and_optimal_on_a_grid() -> None:
    g = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [-0.5, 0.5, 1.0]])
    gram = g @ g.T
    c = 0.5
    w = cagrad_dual(gram, c)
    assert abs(w.sum() - 1) < 1e-9 and (w >= 0).all()
    g0 = g.mean(0)

    def objective(v: np.ndarray) -> float:
        gw = v @ g
        return float(gw @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(gw))

    grid = [
        np.array([a, b, 1 - a - b]) / 1.0
        for a in np.linspace(0, 1, 101)
        for b in np.linspace(0, 1, 101)
        if a + b <= 1
    ]
    assert objective(w) <= min(objective(v) for v in grid) + 1e-6
