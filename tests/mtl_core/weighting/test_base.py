"""The row-wise helpers every strategy shares: softmax over active tasks, normalisation."""

from __future__ import annotations

import torch

from mtl_core.weighting import masked_softmax, normalise


def test_normalise_sums_to_the_active_count_per_row() -> None:
    active = torch.tensor([[True, True, False], [True, True, False], [False, False, False]])
    weights = torch.tensor([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0], [2.0, 2.0, 2.0]])
    torch.testing.assert_close(
        normalise(weights, active),
        # a zero total falls back to one per active task; no active task gives zeros
        torch.tensor([[0.5, 1.5, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]),
    )


def test_normalise_does_not_overflow_near_the_float_maximum() -> None:
    big = torch.finfo(torch.float32).max / 2
    weights = torch.tensor([[big, big]])
    torch.testing.assert_close(
        normalise(weights, torch.ones(1, 2, dtype=torch.bool)), torch.ones(1, 2)
    )


def test_normalise_keeps_the_ratios_of_weights_whose_sum_overflows() -> None:
    # Each weight is finite, only their float32 sum is not: dividing first keeps 3 : 1.
    weights = torch.tensor([[3e38, 1e38, 0.0]])
    active = torch.ones(1, 3, dtype=torch.bool)
    torch.testing.assert_close(normalise(weights, active), torch.tensor([[2.25, 0.75, 0.0]]))


def test_normalise_detaches() -> None:
    weights = torch.tensor([[1.0, 2.0]], requires_grad=True)
    assert not normalise(weights, torch.ones(1, 2, dtype=torch.bool)).requires_grad


def test_masked_softmax_zeroes_inactive_and_handles_none_active() -> None:
    logits = torch.tensor([[0.0, 5.0, 0.0], [1.0, 2.0, 3.0]])
    active = torch.tensor([[True, False, True], [False, False, False]])
    torch.testing.assert_close(
        masked_softmax(logits, active), torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.0, 0.0]])
    )


def test_rows_are_independent() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g)
    active = torch.rand(5, 4, generator=g) > 0.3
    active[0] = False
    soft = masked_softmax(logits, active)
    norm = normalise(logits.abs(), active)
    for k in range(5):
        torch.testing.assert_close(
            soft[k : k + 1], masked_softmax(logits[k : k + 1], active[k : k + 1])
        )
        torch.testing.assert_close(
            norm[k : k + 1], normalise(logits[k : k + 1].abs(), active[k : k + 1])
        )
        expected = torch.zeros(4)
        if active[k].any():
            expected[active[k]] = torch.softmax(logits[k][active[k]], 0)
        torch.testing.assert_close(soft[k], expected)
