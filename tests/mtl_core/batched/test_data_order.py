"""`EpochOrder`: one seeded shuffle per epoch, split into steps of n batches."""

from __future__ import annotations

import pytest
import torch

from mtl_core.batched.data_order import EpochOrder


@pytest.mark.parametrize(
    ("n_train", "batch_size", "per_step", "steps"),
    [(128, 16, 1, 8), (130, 16, 1, 9), (128, 16, 3, 3), (96, 16, 3, 2), (98, 16, 3, 2)],
)
def test_steps_cover_the_permutation_once(
    n_train: int, batch_size: int, per_step: int, steps: int
) -> None:
    order = EpochOrder(n_train, batch_size, per_step, seed=3, device=torch.device("cpu"))
    assert order.steps_per_epoch == steps
    rows = order.epoch_rows([0, 0])
    batches = [b for s in range(steps) for b in order.step_batches(rows, s)]
    assert all(len(b) > 0 for b in batches)
    seen = torch.cat(batches)
    # Every row at most once, in the permutation's order; only a tail too short for n
    # batches (here 2 rows for 3 batches) is left out.
    assert torch.equal(seen, order.permutation(0)[: len(seen)])
    assert n_train - len(seen) < per_step


def test_slots_at_different_epochs_read_their_own_epoch_and_reruns_repeat() -> None:
    order = EpochOrder(64, 8, 1, seed=9, device=torch.device("cpu"))
    rows = order.epoch_rows([1, 0, 1])
    assert rows.shape == (3, 64)
    assert torch.equal(rows[0], order.permutation(1)) and torch.equal(rows[1], order.permutation(0))
    assert not torch.equal(order.permutation(0), order.permutation(1))
    again = EpochOrder(64, 8, 1, seed=9, device=torch.device("cpu"))
    assert torch.equal(again.permutation(1), order.permutation(1))
    assert [b.shape for b in order.step_batches(rows, 2)] == [(3, 8)]
