"""Batched strategy pieces against their one-by-one counterparts."""

from __future__ import annotations

import numpy as np
import torch
from mtl_core.batched.strategies import (
    BATCHED,
    masked_softmax,
    min_norm_weights,
    normalise,
)

from mtl_core.weighting import STRATEGIES
from mtl_core.weighting._base import normalise_weights as one_normalise
from mtl_core.weighting._gradients import frank_wolfe_min_norm
from mtl_core.weighting._gradients import masked_softmax as one_softmax


def test_required_strategies_have_batched_forms() -> None:
    required = {"fixed", "uncertainty", "dwa", "rlw", "loss_balance", "pcgrad", "mgda"}
    assert required <= set(BATCHED)
    assert set(BATCHED) <= set(STRATEGIES.names())


def test_row_helpers_match_one_by_one() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g)
    active = torch.rand(5, 4, generator=g) > 0.3
    active[0] = False
    soft = masked_softmax(logits, active)
    norm = normalise(logits.abs(), active)
    for k in range(5):
        assert torch.allclose(soft[k], one_softmax(logits[k], active[k]))
        assert torch.allclose(norm[k], one_normalise(logits[k].abs(), active[k]))


def test_batched_frank_wolfe_matches_host_solver() -> None:
    g = torch.Generator().manual_seed(1)
    grads = torch.randn(6, 4, 20, generator=g, dtype=torch.float64)
    gram = grads @ grads.transpose(-1, -2)
    active = torch.ones(6, 4, dtype=torch.bool)
    active[1, 2] = False
    active[2, 1:] = False  # one active task
    max_iter = torch.full((6,), 250)
    alpha = min_norm_weights(gram, active, max_iter, max_iter_host=250)
    for k in range(6):
        expected = frank_wolfe_min_norm(gram[k].numpy(), active[k].numpy(), max_iter=250)
        np.testing.assert_allclose(alpha[k].numpy(), expected, atol=1e-10)
