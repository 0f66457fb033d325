"""The small simplex helpers behind MGDA and CAGrad: masks, projection, two-task closed form."""

from __future__ import annotations

import numpy as np
import torch

from mtl_core.weighting._min_norm import min_norm_weights
from mtl_core.weighting._solvers import project_simplex


def test_project_simplex() -> None:
    np.testing.assert_allclose(project_simplex(np.array([0.2, 0.3, 0.5])), [0.2, 0.3, 0.5])
    np.testing.assert_allclose(project_simplex(np.array([2.0, 0.0])), [1.0, 0.0])
    np.testing.assert_allclose(project_simplex(np.array([1.0, 1.0])), [0.5, 0.5])


def _gram(vectors: list[list[float]]) -> torch.Tensor:
    g = torch.tensor([vectors], dtype=torch.float64)
    return g @ g.transpose(-1, -2)


def test_min_norm_respects_the_active_mask() -> None:
    gram = _gram([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    alpha = min_norm_weights(gram, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(alpha, torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64))
    alpha = min_norm_weights(gram, torch.tensor([[False, True, False]]))
    assert alpha.tolist() == [[0.0, 1.0, 0.0]]


def test_two_tasks_closed_form() -> None:
    # ‖γ g1 + (1-γ) g2‖² is least at γ = (g2·g2 - g1·g2) / ‖g1 - g2‖², clipped to [0, 1].
    gram = torch.cat([_gram([[1.0, 0.0], [0.0, 2.0]]), _gram([[1.0, 0.0], [2.0, 0.0]])])
    active = torch.ones(2, 2, dtype=torch.bool)
    alpha = min_norm_weights(gram, active)
    expected = torch.tensor([[0.8, 0.2], [1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(alpha, expected)


def test_two_tasks_one_active_or_equal_gradients() -> None:
    gram = torch.cat([_gram([[1.0, 0.0], [0.0, 2.0]]), _gram([[1.0, 1.0], [1.0, 1.0]])])
    active = torch.tensor([[False, True], [True, True]])
    alpha = min_norm_weights(gram, active)
    # Equal gradients: every point of the segment is optimal; the solver takes the middle.
    expected = torch.tensor([[0.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(alpha, expected)
